"""moto's S3 server as a real HTTP endpoint for tests (``python -m moto.server`` in a child process).

A child process rather than moto's in-process decorators: the code under test then talks
to S3 exactly as in production (boto3 over HTTP to ``AWS_ENDPOINT_URL``), and nothing in
the test process is monkey-patched. Fake credentials live only in the ``env()`` mapping
this hands out; nothing here touches ``os.environ``.

    with moto_s3_server() as s3:
        s3.create_bucket("firmware")
        run_tool(env=s3.env(bucket="firmware"))
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY = "testing"
# moto accepts any credentials; these are fake by design.
SECRET_KEY = "testing"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    region: str = REGION

    def env(self, bucket: str | None = None) -> dict[str, str]:
        """The variables the product reads (seed names plus AWS_ENDPOINT_URL)."""
        env = {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }
        if bucket is not None:
            env["S3_BUCKET"] = bucket
        return env

    def client(self) -> S3Client:
        import boto3  # only the tests that use S3 pay for importing boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API), for test isolation."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1) as response:
                response.read()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {url} did not answer within {timeout:.0f}s")


@contextmanager
def moto_s3_server(timeout: float = 30.0) -> Iterator[S3Server]:
    """Start moto's server on a free 127.0.0.1 port; stop it on exit."""
    port = _free_port()
    env = dict(os.environ)
    # The child must not inherit a developer's real AWS setup or proxy settings.
    for key in list(env):
        if key.startswith("AWS_") or key.lower() in ("http_proxy", "https_proxy"):
            del env[key]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, timeout)
        yield S3Server(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
