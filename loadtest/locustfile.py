"""Locust load test of the REST API, through Envoy, as the seed's clients use it.

Run it against a running stack (`make run`), never from the server or the pytest process
(Locust monkey-patches the interpreter with gevent); `make load` does it in its own venv:

    make load                                  # 20 users, 30 s, against http://127.0.0.1:$PORT
    .venv-load/bin/locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 2m --host http://127.0.0.1:3000

Each simulated user registers an account, logs in, registers a few devices (the control plane
provisions a broker account for each, so this also loads Mosquitto's dynamic security), then
reads its fleet the way an app's dashboard does. Devices stay offline (no MQTT here: the
simulator, `python -m simulator`, drives device traffic), so LED commands expect the documented
400 "device is offline". Responses are checked, not just timed: an unexpected status is a failure.
"""

from __future__ import annotations

import random
import uuid

from locust import HttpUser, between, task

DEVICES_PER_USER = 3
PASSWORD = "load test password"


class AppUser(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.name_ = f"load{uuid.uuid4().hex[:12]}"
        email = f"{self.name_}@example.com"
        self.client.post(
            "/api/auth/register",
            json={"username": self.name_, "email": email, "password": PASSWORD},
            name="/api/auth/register",
        )
        with self.client.post(
            "/api/auth/login", json={"email": email, "password": PASSWORD}, catch_response=True
        ) as response:
            token = response.json().get("token") if response.ok else None
            if not token:
                response.failure(f"login failed: {response.status_code} {response.text[:200]}")
                self.stop()
                return
        self.client.headers["Authorization"] = f"Bearer {token}"
        self.devices: list[str] = []
        for i in range(DEVICES_PER_USER):
            device_id = f"{self.name_}-{i}"
            with self.client.post(
                "/api/device/register",
                json={"deviceId": device_id, "name": f"Load device {i}"},
                name="/api/device/register",
                catch_response=True,
            ) as response:
                if response.ok and response.json().get("mqtt", {}).get("password"):
                    self.devices.append(device_id)
                else:
                    response.failure(f"register device: {response.status_code} {response.text[:200]}")

    @task(5)
    def list_devices(self) -> None:
        with self.client.get("/api/device?pageSize=50", catch_response=True) as response:
            if response.ok and len(response.json().get("devices", [])) != len(self.devices):
                response.failure("the list does not show exactly this user's devices")

    @task(3)
    def dashboard(self) -> None:
        with self.client.get("/api/dashboard", catch_response=True) as response:
            if response.ok and response.json().get("totals", {}).get("devices") != len(self.devices):
                response.failure("dashboard totals do not match this user's devices")

    @task(2)
    def get_device(self) -> None:
        if self.devices:
            self.client.get(f"/api/device/{random.choice(self.devices)}", name="/api/device/{deviceId}")

    @task(1)
    def led_on_offline_device(self) -> None:
        if not self.devices:
            return
        device_id = random.choice(self.devices)
        with self.client.post(
            f"/api/device/{device_id}/led",
            json={"state": "ON"},
            name="/api/device/{deviceId}/led",
            catch_response=True,
        ) as response:
            if response.status_code == 400 and "offline" in response.text:
                response.success()  # the documented answer for a device with no connection

    @task(1)
    def whoami(self) -> None:
        self.client.get("/api/auth/me")

    @task(1)
    def someone_elses_device(self) -> None:
        # Tenant isolation under load: another user's (or no one's) device is always 404.
        with self.client.get(
            f"/api/device/not-mine-{uuid.uuid4().hex[:8]}", name="/api/device/{other}", catch_response=True
        ) as response:
            if response.status_code == 404:
                response.success()
            else:
                response.failure(f"expected 404, got {response.status_code}")
