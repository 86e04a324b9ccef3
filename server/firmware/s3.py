"""The S3 firmware catalog: the release folders in `S3_BUCKET` (under an optional key prefix),
read with boto3 and handed to devices as presigned GET URLs.

boto3 blocks, so every call runs in a worker thread (asyncio.to_thread, via ObjectCatalog).
botocore's errors are translated here, where they enter: a missing key is "absent" (the
catalog turns it into NotFound), anything else (no connection, timeouts, access denied, no
such bucket) is Unavailable with the reason, so callers answer 503 and may retry. Timeouts are
short and retries few, so an unreachable store costs seconds, not minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.core.errors import Unavailable
from server.firmware.catalog import DEFAULT_CACHE_SECONDS, ObjectCatalog
from server.ports.catalog import DownloadUrl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = ("NoSuchKey", "404", "NotFound")


def make_client(region: str, endpoint_url: str, access_key: str = "", secret_key: str = "") -> S3Client:
    """Credentials from the arguments when given, else boto3's usual chain (env, profile, role)."""
    session = boto3.session.Session(
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        region_name=region or "us-east-1",
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        # SigV4 presigning puts the lifetime in the URL (X-Amz-Expires), which S3 enforces.
        config=Config(
            signature_version="s3v4",
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc)


class _S3Objects:
    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unavailable(self, what: str, exc: Exception) -> Unavailable:
        return Unavailable(f"firmware store s3://{self.bucket}/{self.key(what)}: {_reason(exc)}")

    def read(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
            return response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise self._unavailable(key, exc) from None
        except BotoCoreError as exc:
            raise self._unavailable(key, exc) from None

    def list(self, prefix: str) -> list[str]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(prefix)):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []) if "Key" in obj)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable(prefix, exc) from None
        return keys

    def write(self, key: str, data: bytes) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        try:
            # One PUT: S3 objects are atomic for readers (old or new, never a mix).
            self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable(key, exc) from None

    def presign(self, key: str, ttl_seconds: int) -> str:
        try:
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self.key(key)}, ExpiresIn=ttl_seconds
            )
        except (ClientError, BotoCoreError) as exc:  # signing is local; only missing credentials fail
            raise self._unavailable(key, exc) from None
        return url


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
        self._s3 = _S3Objects(client, bucket, prefix)
        super().__init__(self._s3, public_key, cache_seconds)

    async def download_url(self, platform: str, version: str, ttl_seconds: int) -> DownloadUrl:
        key = await self.firmware_key(platform, version)
        issued = time.time()
        url = await self._io(self._s3.presign, key, ttl_seconds)
        return DownloadUrl(url, datetime.fromtimestamp(int(issued) + ttl_seconds, UTC))

    async def close(self) -> None:
        self._s3.client.close()
