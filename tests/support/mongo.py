"""A SecantusDB server (MongoDB wire protocol, from PyPI) for the tests: started once per
session on a free port in a temporary directory, stopped at the end."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pymongo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _secantusd() -> str:
    exe = pathlib.Path(sys.executable).with_name("secantusd-py")
    if exe.exists():
        return str(exe)
    found = shutil.which("secantusd-py")
    if found is None:
        raise RuntimeError("secantusd-py not found: install the dev extras (secantusdb)")
    return found


@contextmanager
def secantus_server(startup_timeout: float = 30.0) -> Iterator[str]:
    """Yields a mongodb:// URI of a fresh SecantusDB; the process and its files are removed
    afterwards."""
    with tempfile.TemporaryDirectory(prefix="secantus-") as tmp:
        port = free_port()
        log = pathlib.Path(tmp, "secantusd.log").open("wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [
                _secantusd(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                os.path.join(tmp, "data"),
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,  # keep it from picking up a secantusd.toml from the repo
        )
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        try:
            _wait_ready(uri, proc, startup_timeout, pathlib.Path(tmp, "secantusd.log"))
            yield uri
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def _wait_ready(uri: str, proc: subprocess.Popen[bytes], timeout: float, log: pathlib.Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"secantusd exited with {proc.returncode}: {log.read_text()}")
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=300)
        try:
            client.admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            time.sleep(0.2)
        finally:
            client.close()
    raise RuntimeError(f"secantusd did not answer within {timeout}s")
