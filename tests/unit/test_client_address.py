import ipaddress

from server.api.interceptors import client_address

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1"))


def test_the_last_forwarded_hop_is_believed_from_a_trusted_front_only() -> None:
    forwarded = {"x-forwarded-for": "6.6.6.6, 203.0.113.9"}
    assert client_address(forwarded, "ipv4:127.0.0.1:5555", LOOPBACK) == "203.0.113.9"
    assert client_address(forwarded, "ipv6:[::1]:5555", LOOPBACK) == "203.0.113.9"
    assert client_address(forwarded, "ipv4:198.51.100.4:5555", LOOPBACK) == "198.51.100.4"
    assert client_address(forwarded, "ipv4:127.0.0.1:5555", ()) == "127.0.0.1"


def test_a_peer_without_a_header_or_with_garbage_is_itself() -> None:
    assert client_address({}, "ipv6:[2001:db8::1]:443", LOOPBACK) == "2001:db8::1"
    assert client_address({"x-forwarded-for": "not-an-ip"}, "ipv4:127.0.0.1:1", LOOPBACK) == "127.0.0.1"
    assert client_address({}, "unix:/tmp/sock", LOOPBACK) == "unix:/tmp/sock"
