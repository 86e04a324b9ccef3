"""The S3 (or S3-compatible: MinIO, R2, moto) ReleaseStore adapter, on boto3.

The one S3 implementation: the release tool publishes through it and the control plane's
catalog (server/firmware/s3.py) reads, writes the block list and presigns through it.
botocore's exceptions are translated into StoreError here, where they enter, so nothing
above the store knows boto3 exists. Uploads are single PUTs (an object is atomic for
readers) read back and hashed afterwards.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from firmware_tools.storage import (
    ProgressCallback,
    StoreError,
    check_key,
    content_type,
    verify_written,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# GetObject answers NoSuchKey; HEAD-style and some S3-compatible stores answer 404/NotFound.
_MISSING = ("NoSuchKey", "404", "NotFound")


class S3Store:
    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    @classmethod
    def from_env(cls, bucket: str, prefix: str, env: Mapping[str, str]) -> S3Store:
        return cls(bucket, prefix, make_s3_client(env))

    def describe(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}" if key else f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(check_key(key)))
            return response["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise StoreError(f"cannot read {self.describe(key)}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read {self.describe(key)}: {exc}") from None

    def write(self, key: str, data: bytes, *, progress: ProgressCallback | None = None) -> None:
        try:
            # upload_fileobj reports progress per chunk; a single PUT (no threads) keeps
            # the object atomic for readers and the progress bar on one line.
            self.client.upload_fileobj(
                io.BytesIO(data),
                self.bucket,
                self._key(check_key(key)),
                ExtraArgs={"ContentType": content_type(key)},
                Callback=progress,
                Config=TransferConfig(multipart_threshold=1 << 30, use_threads=False),
            )
        except ClientError as exc:
            raise StoreError(f"cannot upload {self.describe(key)}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot upload {self.describe(key)}: {exc}") from None
        verify_written(self, key, data)

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []) if "Key" in obj)
        except ClientError as exc:
            raise StoreError(f"cannot list {self.describe(prefix)}: {_reason(exc)}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot list {self.describe(prefix)}: {exc}") from None
        return sorted(keys)

    def presign(self, key: str, ttl_seconds: int) -> str:
        """A GET URL for one object that S3 honours for ``ttl_seconds`` (SigV4: X-Amz-Expires)."""
        try:
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(check_key(key))}, ExpiresIn=ttl_seconds
            )
        except (ClientError, BotoCoreError) as exc:  # signing is local; only missing credentials fail
            raise StoreError(f"cannot presign {self.describe(key)}: {exc}") from None
        return url


def _reason(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'error')}: {error.get('Message', str(exc))}"


def make_client(
    *,
    region: str = "",
    endpoint_url: str = "",
    access_key: str = "",
    secret_key: str = "",
    session_token: str = "",
    connect_timeout: float = 60,
    read_timeout: float = 60,
    max_attempts: int = 3,
) -> S3Client:
    """An S3 client; credentials left empty come from boto3's usual chain (env, profile, role).

    The defaults suit the release tool (a slow upload may wait); the control plane passes
    short timeouts so an unreachable store costs a device seconds, not minutes.
    """
    session = boto3.session.Session(
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        aws_session_token=session_token or None,
        region_name=region or "us-east-1",
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        # SigV4 presigning puts the lifetime in the URL (X-Amz-Expires), which S3 enforces.
        config=Config(
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        ),
    )


def make_s3_client(env: Mapping[str, str]) -> S3Client:
    """An S3 client configured from the seed's variables, honouring AWS_ENDPOINT_URL."""
    return make_client(
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "",
        endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "",
        access_key=env.get("AWS_ACCESS_KEY_ID") or "",
        secret_key=env.get("AWS_SECRET_ACCESS_KEY") or "",
        session_token=env.get("AWS_SESSION_TOKEN") or "",
    )
