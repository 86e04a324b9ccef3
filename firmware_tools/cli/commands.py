"""The CLI's command handlers: arguments in, a workflow call, text or JSON out."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from firmware_tools import testimage, workflow
from firmware_tools.checks import VerifyReport, verify_tree
from firmware_tools.chips import chip_by_name
from firmware_tools.cli.context import Context
from firmware_tools.cli.progress import ProgressBar, human_size
from firmware_tools.image import (
    APP_DESC_OFFSET,
    FirmwareImage,
    ImageError,
    check_image,
    parse_image,
)
from firmware_tools.publish import publish as publish_tree
from firmware_tools.release import ReleaseError, check_platform, check_version
from firmware_tools.roots import open_store
from firmware_tools.signing import (
    ENV_PUBLIC_KEY_FILE,
    SigningError,
    generate_key_pair,
    resolve_private_key,
    resolve_public_key,
)
from firmware_tools.storage import ProgressCallback, StoreError


def read_input(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


def _rev(full: int) -> str:
    return "any" if full == 0xFFFF else f"v{full // 100}.{full % 100}"


def format_image(path: str, image: FirmwareImage, problem: ImageError | None) -> str:
    flash_mode = (image.flash_mode_name or "unknown").upper()
    lines = [
        f"Image {path}: {image.size} bytes, SHA-256 {image.sha256}",
        "Header",
        f"  magic              0xE9, {image.segment_count} segments",
        f"  flash mode         {flash_mode} ({image.flash_mode})",
        f"  flash size         {image.flash_size or 'unknown'} (0x{image.flash_size_freq >> 4:x})",
        f"  flash frequency    {image.flash_freq or 'unknown'} (0x{image.flash_size_freq & 0xF:x})",
        f"  entry point        0x{image.entry_point:08x}",
        "Extended header",
        f"  WP pin             0x{image.wp_pin:02x}" + (" (disabled)" if image.wp_pin == 0xEE else ""),
        f"  SPI pin drive      0x{image.spi_drive:06x}",
        f"  chip id            {image.chip_id} ({image.chip or 'unknown chip'})",
        f"  min chip revision  {_rev(image.min_rev_full)} (legacy min_rev {image.min_rev})",
        f"  max chip revision  {_rev(image.max_rev_full)}",
        f"  hash appended      {'yes' if image.hash_appended else 'no'}",
        "Segments",
        "  #   load address  length      file offset  memory",
    ]
    for seg in image.segments:
        lines.append(
            f"  {seg.index:<3} 0x{seg.load_address:08x}    {seg.length:<10}  "
            f"0x{seg.header_offset:08x}   {seg.memory_type}"
        )
    valid = "valid" if image.checksum_valid else f"INVALID, computed 0x{image.checksum_computed:02x}"
    lines += [
        "Footer",
        f"  checksum           0x{image.checksum_stored:02x} at 0x{image.checksum_offset:x} ({valid})",
    ]
    if image.hash_appended:
        state = "valid" if image.digest_valid else f"INVALID, computed {image.digest_computed}"
        lines.append(f"  appended SHA-256   {image.digest_stored} ({state})")
    if image.trailing_bytes:
        lines.append(f"  trailing bytes     {image.trailing_bytes} (e.g. a signature block)")
    desc = image.app_descriptor
    lines.append(f"App descriptor (esp_app_desc_t at 0x{APP_DESC_OFFSET:x})")
    if desc is None:
        lines.append("  missing")
    else:
        lines += [
            f"  project name       {desc.project_name}",
            f"  version            {desc.version}",
            f"  secure version     {desc.secure_version}",
            f"  compile time       {desc.date} {desc.time}",
            f"  IDF version        {desc.idf_version}",
            f"  ELF SHA-256        {desc.app_elf_sha256}",
            f"  eFuse block rev    {_rev(desc.min_efuse_blk_rev_full)} - {_rev(desc.max_efuse_blk_rev_full)}",
            "  MMU page size      " + (human_size(2**desc.mmu_page_size) if 0 < desc.mmu_page_size < 32 else "not set"),
        ]
    lines.append(f"Result: {'valid' if problem is None else 'INVALID: ' + problem.reason}")
    return "\n".join(lines)


def inspect(ctx: Context) -> int:
    image = parse_image(read_input(ctx.args.image))
    problem: ImageError | None = None
    try:
        check_image(image)
    except ImageError as exc:
        problem = exc
    data = {"image": image.to_dict(), "valid": problem is None}
    if problem is not None:
        data.update(ok=False, error=problem.code, reason=problem.reason)
        ctx.err.write(f"error: {problem.reason}\n")
    ctx.emit(data, format_image(ctx.args.image, image, problem))
    return 0 if problem is None else 1


def validate(ctx: Context) -> int:
    check_platform(ctx.platform)
    chip = ctx.chip(required=True)
    version = str(check_version(ctx.args.version)) if ctx.args.version else None
    image = parse_image(read_input(ctx.args.image))
    check_image(image, chip=chip, version=version)
    assert image.app_descriptor is not None
    text = (
        f"OK: {ctx.args.image} is a valid {image.chip} app image, version "
        f"{image.app_descriptor.version}, secure_version {image.app_descriptor.secure_version}"
    )
    ctx.emit({"image": image.to_dict(), "valid": True}, text)
    return 0


def _build_time(text: str | None, env: Mapping[str, str]) -> datetime:
    try:
        if text:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return when if when.tzinfo else when.replace(tzinfo=UTC)
        if env.get("SOURCE_DATE_EPOCH"):
            return datetime.fromtimestamp(int(env["SOURCE_DATE_EPOCH"]), UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"invalid build time {text or env.get('SOURCE_DATE_EPOCH')!r}") from None
    return testimage.DEFAULT_BUILD_TIME


def make_test_image(ctx: Context) -> int:
    chip = chip_by_name(ctx.args.chip or ctx.platform)
    version = str(check_version(ctx.args.version))
    data = testimage.make_test_image(
        chip,
        version,
        size=testimage.parse_size(ctx.args.size),
        secure_version=ctx.args.secure_version,
        project_name=ctx.args.project_name,
        idf_version=ctx.args.idf_version,
        build_time=_build_time(ctx.args.build_time, ctx.env),
        hash_appended=not ctx.args.no_hash,
    )
    try:
        Path(ctx.args.out).write_bytes(data)
    except OSError as exc:
        raise StoreError(f"cannot write {ctx.args.out}: {exc.strerror or exc}") from None
    image = parse_image(data)
    text = f"wrote {ctx.args.out}: {chip.name} image {version}, {len(data)} bytes, {image.sha256}"
    ctx.emit(
        {
            "path": ctx.args.out,
            "chip": chip.name,
            "version": version,
            "size": len(data),
            "sha256": image.sha256,
        },
        text,
    )
    return 0


def keygen(ctx: Context) -> int:
    private, public = Path(ctx.args.key), Path(ctx.args.public_key)
    for path in (private, public):
        if path.exists() and not ctx.args.force:
            raise SigningError(f"{path} exists; pass --force to overwrite it")
    private_pem, public_pem = generate_key_pair()
    try:
        # Created 0600 from the start: the private key is never world-readable, even briefly.
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        public.write_bytes(public_pem)
    except OSError as exc:
        raise SigningError(f"cannot write the key pair: {exc.strerror or exc}") from None
    text = (
        f"wrote private key {private} (keep it secret; CI: FIRMWARE_SIGNING_KEY) and public key "
        f"{public} (ship it with devices and the server; FIRMWARE_PUBLIC_KEY_FILE)"
    )
    ctx.emit({"private_key": str(private), "public_key": str(public)}, text)
    return 0


def build(ctx: Context) -> int:
    chip = ctx.chip(required=True)
    assert chip is not None
    key = resolve_private_key(ctx.args.key, ctx.env)
    data = read_input(ctx.args.image)
    store = open_store(ctx.root, ctx.env)
    result = workflow.build_release(
        store,
        data,
        platform=ctx.platform,
        chip=chip,
        version_text=ctx.args.version,
        key=key,
        env=ctx.env,
    )
    meta = result.metadata
    verb = "already built (identical)" if result.unchanged else "built"
    text = (
        f"{verb} {ctx.platform} v{meta.version} in {store.describe()}: {meta.size} bytes, "
        f"sha256 {meta.sha256}, secure_version {meta.secure_version}, signed by key "
        f"{meta.key_id}"
    )
    ctx.emit({"metadata": asdict(meta), "files": result.keys, "unchanged": result.unchanged}, text)
    return 0


def promote(ctx: Context) -> int:
    if ctx.args.force and not (ctx.args.reason or "").strip():
        raise ReleaseError("missing_reason", "--force needs --reason TEXT (it is recorded)")
    store = open_store(ctx.root, ctx.env)
    result = workflow.promote(
        store,
        ctx.platform,
        ctx.args.version,
        allow_downgrade=ctx.args.allow_downgrade,
        force_reason=ctx.args.reason if ctx.args.force else None,
    )
    for warning in result.warnings:
        ctx.warn(warning)
    new = result.metadata.version
    text = (
        f"{new} is already production"
        if result.unchanged
        else f"promoted {new} to production ({result.previous or 'none'} before)"
    )
    ctx.emit(
        {
            "production": new,
            "previous": result.previous,
            "warnings": result.warnings,
            "unchanged": result.unchanged,
        },
        text,
    )
    return 0


def block(ctx: Context) -> int:
    store = open_store(ctx.root, ctx.env)
    result = workflow.block(
        store,
        ctx.platform,
        ctx.args.version,
        reason=ctx.args.reason,
        replacement_text=ctx.args.promote,
        force_reason=ctx.args.reason if ctx.args.force else None,
    )
    lines = [
        f"{result.entry.version} was already blocked ({result.entry.reason})"
        if result.unchanged
        else f"blocked {result.entry.version}: {result.entry.reason}"
    ]
    if not result.known_release:
        ctx.warn(f"{result.entry.version} is not a release under {store.describe()}")
    if result.promoted is not None:
        for warning in result.promoted.warnings:
            ctx.warn(warning)
        lines.append(f"promoted {result.promoted.metadata.version} to production")
    ctx.emit(
        {
            "blocked": asdict(result.entry),
            "known_release": result.known_release,
            "production": result.promoted.metadata.version if result.promoted else None,
        },
        "\n".join(lines),
    )
    return 0


def unblock(ctx: Context) -> int:
    entry = workflow.unblock(open_store(ctx.root, ctx.env), ctx.platform, ctx.args.version)
    ctx.emit({"unblocked": asdict(entry)}, f"unblocked {entry.version}")
    return 0


def _report_text(report: VerifyReport) -> str:
    lines = [
        f"{report.root} / {report.platform}: {len(report.releases)} releases "
        f"({', '.join(report.releases) or 'none'}), production {report.production or 'none'}, "
        f"blocked {', '.join(report.blocked) or 'none'}",
    ]
    lines += [f"  problem: {problem}" for problem in report.problems]
    lines.append(
        "OK: consistent" + (", signatures valid" if report.signatures_checked else "")
        if report.ok
        else f"FAILED: {len(report.problems)} problem(s)"
    )
    return "\n".join(lines)


def verify(ctx: Context) -> int:
    public_key = resolve_public_key(getattr(ctx.args, "public_key", None), ctx.env)
    if public_key is None and not ctx.args.no_signatures:
        raise SigningError(
            f"no public key: pass --public-key FILE or set {ENV_PUBLIC_KEY_FILE} "
            "(or --no-signatures to check only hashes and layout)"
        )
    store = open_store(ctx.root, ctx.env)
    report = verify_tree(store, ctx.platform, chip=ctx.chip(required=False), public_key=public_key)
    return _finish_report(ctx, report)


def _finish_report(ctx: Context, report: VerifyReport) -> int:
    for warning in report.warnings:
        ctx.warn(warning)
    if not report.ok:
        ctx.err.write(f"error: {report.root} is inconsistent: {report.problems[0]}\n")
    data = asdict(report)
    data["ok"] = report.ok
    if ctx.args.json:
        ctx.emit(data, "")
    else:
        ctx.out.write(_report_text(report) + "\n")
    return 0 if report.ok else 1


def _progress_factory(
    ctx: Context,
) -> Callable[[str, int], tuple[ProgressCallback, Callable[[], None]]] | None:
    if ctx.args.no_progress:
        return None
    enabled = ctx.err.isatty()

    def factory(key: str, total: int) -> tuple[ProgressCallback, Callable[[], None]]:
        bar = ProgressBar(key, total, ctx.err, enabled=enabled)
        return bar, bar.finish

    return factory


def publish(ctx: Context) -> int:
    destination = ctx.args.destination or (f"s3://{ctx.env['S3_BUCKET']}" if ctx.env.get("S3_BUCKET") else None)
    if not destination:
        raise ReleaseError("no_destination", "nowhere to publish: pass --to or set S3_BUCKET")
    if destination.rstrip("/") == ctx.root.rstrip("/"):
        raise ReleaseError("same_root", "--to names the release root itself")
    source = open_store(ctx.root, ctx.env)
    target = open_store(destination, ctx.env)
    chip = ctx.chip(required=False)
    public_key = resolve_public_key(ctx.args.public_key, ctx.env)
    # Never publish what verify would reject: a reader must never see a bad release.
    report = verify_tree(source, ctx.platform, chip=chip, public_key=public_key)
    if not report.ok:
        raise ReleaseError(
            "source_inconsistent",
            f"not publishing: {source.describe()} fails verification: {report.problems[0]}",
        )
    if public_key is None:
        ctx.warn(f"signatures not checked before publishing (no --public-key / {ENV_PUBLIC_KEY_FILE})")
    result = publish_tree(
        source,
        target,
        ctx.platform,
        allow_downgrade=ctx.args.allow_downgrade,
        progress=_progress_factory(ctx),
    )
    after = verify_tree(target, ctx.platform, chip=chip, public_key=public_key)
    if not after.ok:
        return _finish_report(ctx, after)
    text = (
        f"published {ctx.platform} to {result.destination}: {len(result.uploaded)} uploaded, "
        f"{len(result.skipped)} already there; production {after.production or 'none'}"
    )
    ctx.emit(
        {
            "source": result.source,
            "destination": result.destination,
            "uploaded": result.uploaded,
            "skipped": result.skipped,
            "production": after.production,
        },
        text,
    )
    return 0
