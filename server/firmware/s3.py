"""The S3 firmware catalog: the release folders in `S3_BUCKET` (under an optional key prefix),
read through firmware_tools' S3Store and handed to devices as presigned GET URLs.

boto3 blocks, so every call runs in a worker thread (asyncio.to_thread, via ObjectCatalog).
S3Store translates botocore's errors where they enter: a missing key is "absent" (the catalog
turns it into NotFound), anything else (no connection, timeouts, access denied, no such bucket)
is a StoreError that the catalog answers as Unavailable with the reason, so callers answer 503
and may retry. Timeouts are short and retries few, so an unreachable store costs seconds, not
minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_tools import s3
from server.firmware.catalog import DEFAULT_CACHE_SECONDS, ObjectCatalog
from server.ports.catalog import DownloadUrl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def make_client(region: str, endpoint_url: str, access_key: str = "", secret_key: str = "") -> S3Client:
    """The control plane's S3 client: fail fast, a device's CheckUpdate must not hang on S3."""
    return s3.make_client(
        region=region,
        endpoint_url=endpoint_url,
        access_key=access_key,
        secret_key=secret_key,
        connect_timeout=3,
        read_timeout=10,
        max_attempts=2,
    )


class S3Catalog(ObjectCatalog):
    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        public_key: Ed25519PublicKey | None = None,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> None:
        self._s3 = s3.S3Store(bucket, prefix, client)
        super().__init__(self._s3, public_key, cache_seconds)

    async def download_url(self, platform: str, version: str, ttl_seconds: int) -> DownloadUrl:
        key = await self.firmware_key(platform, version)
        issued = time.time()
        url = await self._io(self._s3.presign, key, ttl_seconds)
        return DownloadUrl(url, datetime.fromtimestamp(int(issued) + ttl_seconds, UTC))

    async def close(self) -> None:
        self._s3.client.close()
