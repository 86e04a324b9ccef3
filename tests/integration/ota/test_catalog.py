"""The firmware catalog adapters on real release folders made by firmware_tools: the local
folder with its signed-URL download endpoint over real HTTP, and S3 against moto's server."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from firmware_tools.release import parse_blocked
from firmware_tools.signing import verify_digest
from server.core.errors import InvalidArgument, NotFound, Unavailable
from server.firmware.local import FirmwareHttpServer, LocalCatalog, UrlSigner, derive_url_key
from server.firmware.s3 import S3Catalog, make_client
from server.ports.store import PageRequest
from tests.support.releases import PLATFORM, ReleaseRoot, release_root
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server, moto_s3_server

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def fetch(url: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> ReleaseRoot:
    rr = release_root(tmp_path_factory.mktemp("catalog"), ("1.0.0", "1.1.0", "1.2.0", "1.10.0-rc.1"), "1.1.0")
    return rr


@pytest.fixture
async def local(releases: ReleaseRoot) -> AsyncIterator[tuple[LocalCatalog, FirmwareHttpServer]]:
    signer = UrlSigner(derive_url_key("x" * 40))
    server = FirmwareHttpServer("127.0.0.1", 0, releases.root, signer)
    port = server.start()
    catalog = LocalCatalog(
        releases.root, signer, f"http://127.0.0.1:{port}", public_key=releases.verifier(), cache_seconds=0
    )
    try:
        yield catalog, server
    finally:
        await catalog.close()
        await asyncio.to_thread(server.stop)


async def test_local_lists_newest_first_by_semver_with_pages(local: tuple[LocalCatalog, FirmwareHttpServer]) -> None:
    catalog, _ = local
    first = await catalog.list_releases(PLATFORM, PageRequest(size=2))
    assert [r.version for r in first.items] == ["1.10.0-rc.1", "1.2.0"]
    second = await catalog.list_releases(PLATFORM, PageRequest(size=2, token=first.next_page_token))
    assert [r.version for r in second.items] == ["1.1.0", "1.0.0"] and second.next_page_token == ""
    assert [r.production for r in second.items] == [True, False]
    with pytest.raises(InvalidArgument):
        await catalog.list_releases(PLATFORM, PageRequest(token="!!"))
    with pytest.raises(InvalidArgument):
        await catalog.list_releases("../etc", PageRequest())
    assert (await catalog.list_releases("esp32c3", PageRequest())).items == []


async def test_local_get_release_and_production(
    local: tuple[LocalCatalog, FirmwareHttpServer], releases: ReleaseRoot
) -> None:
    catalog, _ = local
    release = await catalog.get_release(PLATFORM, "v1.2.0")
    firmware = (releases.root / PLATFORM / "releases" / "v1.2.0" / "firmware.bin").read_bytes()
    assert (release.version, release.size, release.sha256) == (
        "1.2.0",
        len(firmware),
        hashlib.sha256(firmware).hexdigest(),
    )
    assert verify_digest(releases.verifier(), release.sha256, release.signature)
    assert not release.production and not release.blocked and release.project_name == "fleet-demo"
    assert await catalog.production_version(PLATFORM) == "1.1.0"
    with pytest.raises(NotFound):
        await catalog.get_release(PLATFORM, "9.9.9")


async def test_block_writes_the_tools_format_and_unblock_removes_it(
    local: tuple[LocalCatalog, FirmwareHttpServer], releases: ReleaseRoot
) -> None:
    catalog, _ = local
    blocked = await catalog.set_blocked(PLATFORM, "1.0.0", True, "boot loop", NOW)
    assert blocked.blocked and blocked.blocked_reason == "boot loop"
    path = releases.root / PLATFORM / "rollback" / "blocked_versions.json"
    entries = parse_blocked(path.read_bytes())
    assert [(e.version, e.reason, e.time) for e in entries] == [("1.0.0", "boot loop", "2025-01-02T03:04:05Z")]
    assert [b.version for b in await catalog.blocked(PLATFORM)] == ["1.0.0"]
    again = await catalog.set_blocked(PLATFORM, "1.0.0", True, "other", NOW)
    assert again.blocked_reason == "boot loop"  # idempotent: the first reason stands
    assert not (await catalog.set_blocked(PLATFORM, "1.0.0", False, "", NOW)).blocked
    assert parse_blocked(path.read_bytes()) == []


async def test_malformed_or_badly_signed_releases_are_never_offered(tmp_path: Path) -> None:
    rr = release_root(tmp_path, ("2.0.0", "2.1.0", "2.2.0"))
    (rr.root / PLATFORM / "releases" / "v2.1.0" / "metadata.json").write_text('{"version": "2.1.0"}')
    other = release_root(tmp_path / "other")  # a different signing key
    other.build("2.3.0")
    src = other.root / PLATFORM / "releases" / "v2.3.0"
    dst = rr.root / PLATFORM / "releases" / "v2.3.0"
    dst.mkdir(parents=True)
    for name in ("firmware.bin", "metadata.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    (rr.root / PLATFORM / "releases" / "v2.2.0" / "firmware.bin").unlink()
    signer = UrlSigner(derive_url_key("y" * 40))
    catalog = LocalCatalog(rr.root, signer, "http://127.0.0.1:1", public_key=rr.verifier(), cache_seconds=0)
    assert [r.version for r in (await catalog.list_releases(PLATFORM, PageRequest())).items] == ["2.0.0"]
    for version in ("2.1.0", "2.2.0", "2.3.0"):
        with pytest.raises(NotFound):
            await catalog.get_release(PLATFORM, version)
    unchecked = LocalCatalog(rr.root, signer, "http://127.0.0.1:1", cache_seconds=0)
    assert [r.version for r in (await unchecked.list_releases(PLATFORM, PageRequest())).items] == ["2.3.0", "2.0.0"]


async def test_reads_are_cached_briefly(tmp_path: Path) -> None:
    rr = release_root(tmp_path, ("3.0.0",), "3.0.0")
    catalog = LocalCatalog(rr.root, UrlSigner(b"k" * 32), "http://127.0.0.1:1", cache_seconds=60)
    assert await catalog.production_version(PLATFORM) == "3.0.0"
    rr.build("3.1.0")
    rr.promote("3.1.0")
    assert await catalog.production_version(PLATFORM) == "3.0.0"  # served from the snapshot
    catalog.invalidate(PLATFORM)
    assert await catalog.production_version(PLATFORM) == "3.1.0"


async def test_signed_url_downloads_and_tampered_or_expired_urls_are_refused(
    local: tuple[LocalCatalog, FirmwareHttpServer], releases: ReleaseRoot
) -> None:
    catalog, _ = local
    download = await catalog.download_url(PLATFORM, "1.2.0", 120)
    assert "/esp32s3/releases/v1.2.0/firmware.bin?" in download.url  # never production/
    assert abs((download.expires_at - datetime.now(UTC)).total_seconds() - 120) < 5
    status, body, headers = await asyncio.to_thread(fetch, download.url)
    firmware = (releases.root / PLATFORM / "releases" / "v1.2.0" / "firmware.bin").read_bytes()
    assert status == 200 and body == firmware and headers["Content-Length"] == str(len(firmware))
    head = await asyncio.to_thread(fetch, download.url, "HEAD")
    assert head[0] == 200 and head[1] == b"" and head[2]["Content-Length"] == str(len(firmware))

    query = parse_qs(urlsplit(download.url).query)
    expires, sig = query["expires"][0], query["sig"][0]
    base = download.url.split("?")[0]
    tampered = [
        f"{base}?expires={int(expires) + 3600}&sig={sig}",  # a longer life
        f"{base}?expires={expires}&sig={'0' * 64}",
        f"{base}?expires={expires}",
        base.replace("v1.2.0", "v1.1.0") + f"?expires={expires}&sig={sig}",  # another object
    ]
    for url in tampered:
        assert (await asyncio.to_thread(fetch, url))[0] == 403, url
    key = f"{PLATFORM}/releases/v1.2.0/firmware.bin"
    expired = catalog.signed_url(key, int(time.time()) - 1)
    assert (await asyncio.to_thread(fetch, expired))[0] == 403
    # Only release firmware is servable, even with a valid signature.
    meta = catalog.signed_url(f"{PLATFORM}/releases/v1.2.0/metadata.json", int(time.time()) + 60)
    assert (await asyncio.to_thread(fetch, meta))[0] == 403


# ---- S3 against moto's server over HTTP -------------------------------------------------------

_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def published(s3: S3Server, releases: ReleaseRoot) -> str:
    """The same release root, published to a bucket under a prefix by firmware_tools publish."""
    bucket = f"firmware-{next(_buckets)}"
    s3.create_bucket(bucket)
    releases.publish(f"s3://{bucket}/fleet", s3.env())
    return bucket


def s3_catalog(s3: S3Server, bucket: str, releases: ReleaseRoot, endpoint: str | None = None) -> S3Catalog:
    client = make_client(s3.region, endpoint or s3.endpoint_url, ACCESS_KEY, SECRET_KEY)
    return S3Catalog(client, bucket, "fleet", public_key=releases.verifier(), cache_seconds=0)


async def test_s3_lists_gets_blocks_and_presigns(s3: S3Server, published: str, releases: ReleaseRoot) -> None:
    catalog = s3_catalog(s3, published, releases)
    try:
        page = await catalog.list_releases(PLATFORM, PageRequest())
        assert [r.version for r in page.items] == ["1.10.0-rc.1", "1.2.0", "1.1.0", "1.0.0"]
        assert await catalog.production_version(PLATFORM) == "1.1.0"
        release = await catalog.get_release(PLATFORM, "1.2.0")
        assert verify_digest(releases.verifier(), release.sha256, release.signature)

        await catalog.set_blocked(PLATFORM, "1.2.0", True, "brownout", NOW)
        raw = s3.client().get_object(Bucket=published, Key="fleet/esp32s3/rollback/blocked_versions.json")
        entries = parse_blocked(raw["Body"].read())
        assert [(e.version, e.reason) for e in entries] == [("1.2.0", "brownout")]
        assert (await catalog.get_release(PLATFORM, "1.2.0")).blocked

        download = await catalog.download_url(PLATFORM, "1.1.0", 300)
        parts = urlsplit(download.url)
        query = parse_qs(parts.query)
        # moto does not check presigned signatures or expiry, so the URL itself is asserted.
        assert parts.path == f"/{published}/fleet/esp32s3/releases/v1.1.0/firmware.bin"
        assert query["X-Amz-Expires"] == ["300"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
        assert len(query["X-Amz-Signature"][0]) == 64
        status, body, _ = await asyncio.to_thread(fetch, download.url)
        assert (
            status == 200 and hashlib.sha256(body).hexdigest() == (await catalog.get_release(PLATFORM, "1.1.0")).sha256
        )
    finally:
        await catalog.close()


async def test_s3_errors_become_domain_errors(s3: S3Server, releases: ReleaseRoot) -> None:
    missing_bucket = s3_catalog(s3, "no-such-bucket", releases)
    with pytest.raises(Unavailable):
        await missing_bucket.list_releases(PLATFORM, PageRequest())
    await missing_bucket.close()
    down = s3_catalog(s3, "any", releases, endpoint="http://127.0.0.1:9")  # nothing listens on 9
    with pytest.raises(Unavailable):
        await down.production_version(PLATFORM)
    await down.close()
