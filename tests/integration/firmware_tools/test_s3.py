"""Publishing to S3 and working on an s3:// root, against moto's S3 server over real HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_tools.release import ReleaseMetadata
from firmware_tools.s3 import S3Store, make_s3_client
from firmware_tools.storage import StoreError
from tests.support.s3 import S3Server, moto_s3_server
from tests.unit.firmware_tools.helpers import image, run, write_keys

_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"firmware-{next(_buckets)}"
    s3.create_bucket(name)
    return name


def _local_release(work: Path, *versions: str) -> tuple[str, Path, Path]:
    key, pub = write_keys(work)
    root = str(work / "dist")
    for version in versions:
        app = work / f"{version}.bin"
        app.write_bytes(image(version))
        built = run("build", str(app), "--version", version, "--key", str(key), "--root", root)
        assert built.code == 0, built.err
    return root, key, pub


def test_publish_to_the_bucket_named_by_s3_bucket(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    root, _, pub = _local_release(tmp_path, "1.1.0", "1.2.0")
    assert run("promote", "1.2.0", "--root", root).code == 0
    env = s3.env(bucket=bucket)
    result = run("publish", "--root", root, "--public-key", str(pub), "--json", env=env)
    assert result.code == 0, result.err
    assert result.json["destination"] == f"s3://{bucket}/"
    assert result.json["uploaded"][-1] == "esp32s3/production/version.txt"
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {
        "esp32s3/releases/v1.1.0/firmware.bin",
        "esp32s3/releases/v1.1.0/metadata.json",
        "esp32s3/releases/v1.2.0/firmware.bin",
        "esp32s3/releases/v1.2.0/metadata.json",
        "esp32s3/production/firmware.bin",
        "esp32s3/production/metadata.json",
        "esp32s3/production/version.txt",
    }
    body = s3.client().get_object(Bucket=bucket, Key="esp32s3/production/version.txt")["Body"]
    assert body.read() == b"1.2.0\n"
    verified = run("verify", "--root", f"s3://{bucket}", "--public-key", str(pub), env=env)
    assert verified.code == 0, verified.err
    again = run("publish", "--root", root, "--public-key", str(pub), "--json", env=env)
    assert again.json["uploaded"] == [] and len(again.json["skipped"]) == 7


def test_build_promote_block_directly_on_an_s3_prefix(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    key, pub = write_keys(tmp_path)
    env = s3.env()
    root = f"s3://{bucket}/fleet-a"
    for version in ("1.1.0", "1.2.0"):
        app = tmp_path / f"{version}.bin"
        app.write_bytes(image(version))
        built = run("build", str(app), "--version", version, "--key", str(key), "--root", root, env=env)
        assert built.code == 0, built.err
    assert run("promote", "1.2.0", "--root", root, env=env).code == 0
    blocked = run("block", "1.2.0", "--reason", "crash loop", "--promote", "1.1.0", "--root", root, env=env)
    assert blocked.code == 0, blocked.err
    store = S3Store(bucket, "fleet-a", make_s3_client(env))
    production = store.read("esp32s3/production/metadata.json")
    assert production is not None
    assert ReleaseMetadata.from_json(production).version == "1.1.0"
    assert b"crash loop" in (store.read("esp32s3/rollback/blocked_versions.json") or b"")
    assert run("verify", "--root", root, "--public-key", str(pub), env=env).code == 0


def test_progress_bar_is_drawn_for_each_upload(s3: S3Server, bucket: str, tmp_path: Path) -> None:
    root, _, _ = _local_release(tmp_path, "1.0.0")
    result = run("publish", "--root", root, "--to", f"s3://{bucket}/p", env=s3.env())
    assert result.code == 0, result.err
    line = next(x for x in result.err.splitlines() if "v1.0.0/firmware.bin" in x)
    assert "[##############################] 100%" in line
    assert "8.0 KB/8.0 KB" in line


def test_s3_errors_become_the_tools_reasons(s3: S3Server, tmp_path: Path) -> None:
    root, _, _ = _local_release(tmp_path, "1.0.0")
    result = run("publish", "--root", root, "--to", "s3://no-such-bucket", env=s3.env())
    assert result.code == 1
    assert "NoSuchBucket" in result.err
    assert "Traceback" not in result.err
    store = S3Store("no-such-bucket", "", make_s3_client(s3.env()))
    with pytest.raises(StoreError, match="cannot upload s3://no-such-bucket/x"):
        store.write("x", b"data")
