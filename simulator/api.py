"""The few REST calls the simulator makes (through Envoy), with urllib: log in, register, rotate.

Blocking on purpose and small: the fleet runs them in threads (asyncio.to_thread) before any
device connects, so the event loop never waits on HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class RestApi:
    def __init__(self, base: str, token: str | None = None, timeout: float = 15.0) -> None:
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"--api must be an http(s) URL, not {base!r}")
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One call; the parsed JSON answer, or ApiError with the server's message."""
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)  # noqa: S310 (scheme checked)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (scheme checked)
                payload = response.read()
        except urllib.error.HTTPError as exc:
            with exc:  # an HTTPError holds its connection open until closed
                raw = exc.read()
            try:
                message = str(json.loads(raw).get("message") or raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:200]
            raise ApiError(exc.code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"cannot reach {self.base}: {exc}") from None
        return json.loads(payload) if payload else {}

    def login(self, email: str, password: str) -> str:
        token = str(self.call("POST", "/api/auth/login", {"email": email, "password": password}).get("token", ""))
        if not token:
            raise ApiError(0, "the login answer carried no token")
        self.token = token
        return token

    def register_user(self, username: str, email: str, password: str) -> bool:
        """Create the account; False when it already exists (409), so re-runs are harmless."""
        try:
            self.call("POST", "/api/auth/register", {"username": username, "email": email, "password": password})
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def register_device(self, device_id: str, name: str) -> dict[str, Any] | None:
        """The device's MQTT credentials, or None when the id is already registered (409)."""
        try:
            answer = self.call("POST", "/api/device/register", {"deviceId": device_id, "name": name})
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise
        mqtt: dict[str, Any] = answer["mqtt"]
        return mqtt

    def rotate_credentials(self, device_id: str) -> dict[str, Any]:
        answer = self.call("POST", f"/api/device/{device_id}/credentials", {})
        mqtt: dict[str, Any] = answer["mqtt"]
        return mqtt
