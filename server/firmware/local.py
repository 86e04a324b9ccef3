"""The local firmware store: a folder in the SPEC section 6 layout, with its own signed URLs.

`python -m firmware_tools build/promote/publish --root DIR` writes the folder (default
`DATA_DIR/firmware`); this adapter reads it with firmware_tools' own LocalStore (atomic writes,
read-back checks) and serves downloads itself.

Download URLs are `{FIRMWARE_PUBLIC_URL}/firmware/<key>?expires=<unix>&sig=<hex>`, where `sig`
is HMAC-SHA256 over "<key>\\n<expires>" with a key derived from JWT_SECRET (or FIRMWARE_URL_KEY):
anyone holding the URL may download that one object until it expires, and nothing else. They
are checked and streamed by `FirmwareHttpServer`, a standard-library HTTP server in a thread
of the control plane process. Why a thread and its own port rather than the metrics endpoint:
metrics are optional and usually internal, while devices must reach the download port; and a
thread keeps multi-megabyte downloads off the event loop that serves gRPC and MQTT.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import shutil
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_tools.storage import LocalStore, StoreError, check_key
from server.firmware.catalog import DEFAULT_CACHE_SECONDS, ObjectCatalog
from server.ports.catalog import DownloadUrl

log = logging.getLogger("server.firmware.local")

URL_PREFIX = "/firmware/"
# Only release firmware is ever served: never metadata, version.txt or the block list.
_SERVABLE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/releases/v[0-9A-Za-z.+-]{1,40}/firmware\.bin$")
CHUNK = 64 * 1024


def derive_url_key(secret: str) -> bytes:
    """A key for URL signatures only, so a URL signature can never double as a JWT signature."""
    return hmac.new(secret.encode(), b"iot-firmware-download-url-v1", hashlib.sha256).digest()


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def signature(self, object_key: str, expires: int) -> str:
        return hmac.new(self._key, f"{object_key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def path(self, object_key: str, expires: int) -> str:
        return f"{URL_PREFIX}{quote(object_key)}?expires={expires}&sig={self.signature(object_key, expires)}"

    def check(self, object_key: str, expires_text: str, sig: str, now: float) -> bool:
        """True when the signature is right and the URL has not expired."""
        if not expires_text.isdigit():
            return False
        expected = self.signature(object_key, int(expires_text))
        return hmac.compare_digest(expected, sig) and int(expires_text) > now


class LocalCatalog(ObjectCatalog):
    def __init__(
        self,
        root: Path,
        signer: UrlSigner,
        public_base_url: str,
        *,
        public_key: Ed25519PublicKey | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        super().__init__(LocalStore(root), public_key, cache_seconds)
        self.root = root
        self.signer = signer
        self.public_base_url = public_base_url.rstrip("/")

    def signed_url(self, object_key: str, expires: int) -> str:
        return self.public_base_url + self.signer.path(object_key, expires)

    async def download_url(self, platform: str, version: str, ttl_seconds: int) -> DownloadUrl:
        key = await self.firmware_key(platform, version)
        expires = int(time.time()) + ttl_seconds
        return DownloadUrl(self.signed_url(key, expires), datetime.fromtimestamp(expires, UTC))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse(self, status: int, message: str) -> None:
        payload = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _serve(self, *, body: bool) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith(URL_PREFIX):
            self._refuse(404, "not found")
            return
        key = unquote(parts.path[len(URL_PREFIX) :])
        query = parse_qs(parts.query)
        expires, sig = query.get("expires", [""])[0], query.get("sig", [""])[0]
        if not _SERVABLE.fullmatch(key) or not self.server.signer.check(key, expires, sig, time.time()):
            # One answer for bad, tampered and expired URLs: nothing to learn from probing.
            self._refuse(403, "invalid or expired download URL")
            return
        try:
            path = self.server.root / check_key(key)
            handle = path.open("rb")
        except (OSError, StoreError):
            self._refuse(404, "not found")
            return
        with handle:
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "private, max-age=0")
            self.end_headers()
            if body:
                with contextlib.suppress(ConnectionError):  # a device that hangs up mid-download
                    shutil.copyfileobj(handle, self.wfile, CHUNK)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("firmware http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, signer: UrlSigner) -> None:
        self.root = root
        self.signer = signer
        super().__init__(address, _Handler)


class FirmwareHttpServer:
    """Serves signed firmware URLs of a LocalCatalog; `start()` returns the bound port."""

    def __init__(self, host: str, port: int, root: Path, signer: UrlSigner) -> None:
        self._address = (host, port)
        self._root = root
        self._signer = signer
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server is not None else 0

    def start(self) -> int:
        self._server = _Server(self._address, self._root, self._signer)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="firmware-http", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
