"""Small network helpers for tests: free ports and HTTP calls that return status + JSON."""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.request
from typing import Any

# Ports handed out below the kernel's ephemeral range (32768+ on Linux): a port picked with
# bind(0) comes from that range, and any outgoing connection made before the service binds it
# may take it as its source port (the demo test lost Envoy's listener that way). Never the same
# port twice in one process, either.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # the range is crowded: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: Any = None, token: str | None = None, raw: bytes | None = None, timeout: float = 10
) -> tuple[int, Any]:
    """One HTTP call; returns (status, parsed JSON body or None). Never raises on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the connection open until closed
            status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")
