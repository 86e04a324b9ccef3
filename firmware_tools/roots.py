"""A release root named by a string: ``s3://BUCKET/PREFIX`` or a folder, opened as a ReleaseStore.

Apart from storage.py so that the protocol and its adapters never import each other: this
module knows both, they know only the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from firmware_tools.storage import LocalStore, ReleaseStore, StoreError

DEFAULT_ROOT = "./dist"
ENV_ROOT = "FIRMWARE_ROOT"


def open_store(root: str, env: Mapping[str, str] = os.environ) -> ReleaseStore:
    """``s3://bucket/prefix`` or a local directory path."""
    if root.startswith("s3://"):
        bucket, _, prefix = root[len("s3://") :].partition("/")
        if not bucket:
            raise StoreError(f"invalid S3 root {root!r}: expected s3://BUCKET[/PREFIX]")
        if ".." in prefix.split("/"):
            raise StoreError(f"invalid S3 root {root!r}: '..' is not allowed in the prefix")
        # boto3 is loaded only for s3:// roots: inspect/validate/build stay quick and local.
        from firmware_tools.s3 import S3Store

        return S3Store.from_env(bucket, prefix, env)
    if "://" in root:
        raise StoreError(f"unsupported release root {root!r}: use a folder or s3://BUCKET/PREFIX")
    return LocalStore(root)


def default_root(env: Mapping[str, str] = os.environ) -> str:
    return env.get(ENV_ROOT) or DEFAULT_ROOT
