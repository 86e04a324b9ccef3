"""`make run`'s supervisor (python -m tools.stack) as a child process, on free ports, for e2e tests."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.net import free_port


class Stack:
    def __init__(self, data_dir: Path, **extra_env: str) -> None:
        self.ports = {
            "PORT": free_port(),
            "GRPC_PORT": free_port(),
            "MQTT_PORT": free_port(),
            "FIRMWARE_HTTP_PORT": free_port(),
        }
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "MONGO_"))}
        env.update({k: str(v) for k, v in self.ports.items()}, DATA_DIR=str(data_dir), LOG_LEVEL="WARNING")
        env.update(extra_env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.stack"], env=env, stderr=subprocess.PIPE, text=True
        )
        self.rest = f"http://127.0.0.1:{self.ports['PORT']}"
        # The last lines the stack printed, for failure messages; read continuously so a chatty
        # child can never block on a full pipe.
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.output.append(line)
            if "ready;" in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("stack did not become ready:\n" + "".join(self.output))

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def running_stack(data_dir: Path, **extra_env: str) -> Iterator[Stack]:
    """A ready stack; stopped with Ctrl-C (SIGINT) at the end unless the test already stopped it."""
    stack = Stack(data_dir, **extra_env)
    try:
        stack.wait_ready()
        yield stack
        if stack.process.poll() is None:
            stack.stop()
    finally:
        stack.close()
