from pathlib import Path

import pytest

from server.settings import Settings, SettingsError


def test_defaults_follow_the_seed() -> None:
    s = Settings.from_env({})
    assert (s.port, s.grpc_port, s.data_dir, s.mongo_uri, s.s3_bucket) == (3000, 50051, Path("data"), "", "")
    assert not s.production
    # Development without JWT_SECRET: a random secret, flagged so start-up can warn loudly.
    assert s.jwt_secret_generated and len(s.jwt_secret) >= 32
    assert Settings.from_env({}).jwt_secret != s.jwt_secret


@pytest.mark.parametrize("mode_var", ["ENV", "NODE_ENV"])
@pytest.mark.parametrize("secret", [None, "", "supersecret", "changeme"])
def test_production_refuses_missing_or_default_jwt_secret(mode_var: str, secret: str | None) -> None:
    env = {mode_var: "production"}
    if secret is not None:
        env["JWT_SECRET"] = secret
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_env(env)


def test_production_refuses_short_secret_and_accepts_strong_one() -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({"ENV": "production", "JWT_SECRET": "x" * 16})
    strong = "q8Vt3mZpL0xR7cWn2bJy5kHd9sFg4aTe"
    s = Settings.from_env({"NODE_ENV": "production", "JWT_SECRET": strong})
    assert s.production and s.jwt_secret == strong and not s.jwt_secret_generated


@pytest.mark.parametrize(
    "secret",
    [
        "a" * 32,
        "k" * 40,
        "ab" * 16,
        "password1234password1234password",
        "abcdefghijklmnopqrstuvwxyz012345",
        "0123456789" * 4,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
        "aaaabbbbaaaabbbbccccaaaabbbbddddaaaa",
    ],
)
def test_production_refuses_low_entropy_secrets(secret: str) -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET is too predictable") as info:
        Settings.from_env({"ENV": "production", "JWT_SECRET": secret})
    assert secret not in str(info.value)  # the message never echoes the secret


def test_production_accepts_what_the_usual_generators_make() -> None:
    import base64
    import secrets

    for _ in range(2000):
        for secret in (
            secrets.token_hex(16),
            secrets.token_urlsafe(32),
            base64.b64encode(secrets.token_bytes(32)).decode(),
        ):
            assert Settings.from_env({"ENV": "production", "JWT_SECRET": secret}).jwt_secret == secret


def test_every_problem_is_reported_at_once_with_its_variable() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"PORT": "http", "GRPC_PORT": "70000", "MQTT_URL": "localhost:1883", "ADMIN_EMAIL": "a@b.c"})
    text = str(info.value)
    for expected in ("PORT='http'", "GRPC_PORT=70000", "MQTT_URL", "ADMIN_PASSWORD"):
        assert expected in text


def test_seed_mqtt_ws_url_is_honoured_and_mqtt_url_wins() -> None:
    assert Settings.from_env({"MQTT_WS_URL": "ws://broker:9001"}).mqtt_url == "ws://broker:9001"
    both = {"MQTT_WS_URL": "ws://broker:9001", "MQTT_URL": "mqtt://other:1883"}
    assert Settings.from_env(both).mqtt_url == "mqtt://other:1883"


def test_offline_timeout_defaults_to_three_heartbeats() -> None:
    assert Settings.from_env({"HEARTBEAT_INTERVAL_SECONDS": "10"}).offline_after_seconds == 30


def test_secrets_stay_out_of_repr() -> None:
    s = Settings.from_env({"JWT_SECRET": "very-secret-value", "MQTT_PASS": "broker-pass"})
    assert "very-secret-value" not in repr(s) and "broker-pass" not in repr(s)


def test_trusted_proxies_default_to_loopback_and_parse_addresses_and_blocks() -> None:
    default = Settings.from_env({}).trusted_proxies
    assert [str(n) for n in default] == ["127.0.0.0/8", "::1/128"]
    custom = Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7 ,fd00::/8"}).trusted_proxies
    assert [str(n) for n in custom] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
    assert Settings.from_env({"TRUSTED_PROXIES": "none"}).trusted_proxies == ()
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES entry 'envoy'"):
        Settings.from_env({"TRUSTED_PROXIES": "127.0.0.1,envoy"})


def test_password_min_length_has_a_floor_of_eight() -> None:
    # The README promises 8 as the floor: a weaker policy stops the server with the variable named.
    with pytest.raises(SettingsError, match=r"PASSWORD_MIN_LENGTH.*\[8, 1024\]"):
        Settings.from_env({"PASSWORD_MIN_LENGTH": "7"})
    assert Settings.from_env({"PASSWORD_MIN_LENGTH": "8"}).password_min_length == 8
