"""One simulated ESP32 as plain state: partitions, OTA image states, reboot, rollback.

No I/O and no clock: the MQTT layer (mqtt_device.py) feeds it bytes and elapsed seconds, and
faults decide when it crashes. The OTA rules follow ESP-IDF's app rollback
(CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) and anti-rollback (CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK):

* a new image is written to the partition that is not running and marked NEW in otadata;
* the bootloader boots a NEW image once, as PENDING_VERIFY;
* the app confirms it (VALID) after its self-check, or marks it INVALID and reboots back;
* a reboot while still PENDING_VERIFY (the app crashed before confirming) makes the
  bootloader mark it ABORTED and boot the previous VALID partition;
* an image whose secure_version is below the eFuse counter is refused, and confirming an
  image with a higher secure_version burns the counter up to it (it never goes down).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_tools.image import IMAGE_MAGIC, ImageError, parse_image
from firmware_tools.signing import verify_digest

HEAP_TOTAL = 320 * 1024  # an ESP32-S3's internal DRAM, roughly
HEAP_MIN = 40 * 1024
_VERSION_MAX = 32
_ID_MAX = 64


class ImageState(StrEnum):
    """esp_ota_img_states_t; UNDEFINED is a partition that was never written."""

    NEW = "NEW"
    PENDING_VERIFY = "PENDING_VERIFY"
    VALID = "VALID"
    INVALID = "INVALID"
    ABORTED = "ABORTED"
    UNDEFINED = "UNDEFINED"


class OtaError(Exception):
    """An OTA job the device refuses or fails; `code` is short and stable, str() is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass
class Partition:
    label: str
    version: str | None = None
    state: ImageState = ImageState.UNDEFINED
    secure_version: int = 0
    sha256: str | None = None


@dataclass(frozen=True)
class OtaJob:
    """The job a device receives on devices/{id}/ota (SPEC section 5)."""

    job_id: str
    version: str
    url: str
    size: int
    sha256: str
    signature: str | None

    @classmethod
    def from_payload(cls, obj: Any) -> OtaJob:
        """Validate the job as strictly as firmware would; OtaError('bad_job') otherwise."""
        if not isinstance(obj, dict):
            raise OtaError("bad_job", "the OTA job is not a JSON object")

        def text(key: str, limit: int, *, required: bool = True) -> str | None:
            value = obj.get(key)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not 0 < len(value) <= limit:
                raise OtaError("bad_job", f"the OTA job's {key!r} is missing or not a string")
            return value

        size = obj.get("size")
        if type(size) is not int or size <= 0:
            raise OtaError("bad_job", "the OTA job's 'size' is not a positive integer")
        sha = text("sha256", 64)
        assert sha is not None
        try:
            if len(bytes.fromhex(sha)) != 32:
                raise ValueError
        except ValueError:
            raise OtaError("bad_job", "the OTA job's 'sha256' is not 64 hex digits") from None
        url = text("url", 4096)
        assert url is not None
        if not url.startswith(("http://", "https://")):
            raise OtaError("bad_job", "the OTA job's 'url' is not http(s)")
        return cls(
            job_id=str(text("jobId", _ID_MAX)),
            version=str(text("version", _VERSION_MAX)),
            url=url,
            size=size,
            sha256=sha.lower(),
            signature=text("signature", 512, required=False),
        )


@dataclass
class PendingOta:
    """An OTA in flight across reboots (what real firmware keeps in NVS)."""

    job: OtaJob
    previous: int
    outcome: str | None = None  # "SUCCESS" / "FAILED" once decided
    error: str | None = None


@dataclass
class DeviceModel:
    device_id: str
    initial_version: str = "1.0.0"
    secure_version: int = 0
    rng: random.Random = field(default_factory=random.Random)
    partitions: list[Partition] = field(init=False)
    running: int = field(init=False, default=0)
    next_boot: int = field(init=False, default=0)
    efuse_secure_version: int = field(init=False, default=0)
    led: str = "OFF"
    uptime: float = 0.0
    heap: int = HEAP_TOTAL - 120 * 1024
    rssi: int = -60
    boots: int = 1
    pending: PendingOta | None = None

    def __post_init__(self) -> None:
        self.partitions = [
            Partition("ota_0", self.initial_version, ImageState.VALID, self.secure_version),
            Partition("ota_1"),
        ]
        self.efuse_secure_version = self.secure_version

    # -- observable state ------------------------------------------------------------------

    @property
    def running_partition(self) -> Partition:
        return self.partitions[self.running]

    @property
    def version(self) -> str:
        version = self.running_partition.version
        assert version is not None  # the running partition always holds an image
        return version

    @property
    def inactive(self) -> int:
        return 1 - self.running

    def health(self) -> dict[str, Any]:
        """The heartbeat payload of docs/mqtt.md."""
        return {"heap": self.heap, "uptime": int(self.uptime), "fw": self.version, "rssi": self.rssi}

    def tick(self, seconds: float) -> None:
        """Let time pass: uptime grows, heap wanders (slow leak, occasional free), RSSI drifts."""
        self.uptime += max(0.0, seconds)
        delta = self.rng.randint(-2048, 1536)
        self.heap = max(HEAP_MIN, min(HEAP_TOTAL, self.heap + delta))
        self.rssi = max(-95, min(-30, self.rssi + self.rng.randint(-3, 3)))

    def set_led(self, state: str) -> str:
        if state not in ("ON", "OFF"):
            raise ValueError(f"LED state must be ON or OFF, not {state!r}")
        self.led = state
        return self.led

    # -- OTA -------------------------------------------------------------------------------

    def verify_image(self, job: OtaJob, data: bytes, public_key: Ed25519PublicKey | None = None) -> int:
        """Check a downloaded image against its job; return its secure_version or raise OtaError."""
        if len(data) != job.size:
            raise OtaError("size_mismatch", f"downloaded {len(data)} bytes, the job says {job.size}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != job.sha256:
            raise OtaError("sha256_mismatch", f"SHA-256 {digest} does not match the job's {job.sha256}")
        if public_key is not None:
            if not job.signature:
                raise OtaError("unsigned", "the job carries no signature and this device requires one")
            if not _signature_ok(public_key, job.sha256, job.signature):
                raise OtaError("bad_signature", "the Ed25519 signature over the SHA-256 does not verify")
        secure_version = 0
        if data[:1] == bytes([IMAGE_MAGIC]):
            # A real ESP32 image: check what esp_https_ota and the bootloader would check.
            try:
                image = parse_image(data)
            except ImageError as exc:
                raise OtaError("bad_image", f"not a valid app image: {exc.reason}") from None
            if not image.checksum_valid or image.digest_valid is False:
                raise OtaError("bad_image", "the image's checksum or appended SHA-256 is wrong")
            desc = image.app_descriptor
            if desc is not None:
                secure_version = desc.secure_version
                if desc.version != job.version:
                    raise OtaError(
                        "version_mismatch", f"the image is version {desc.version!r}, the job says {job.version!r}"
                    )
        if secure_version < self.efuse_secure_version:
            raise OtaError(
                "anti_rollback",
                f"secure_version {secure_version} is below the device's eFuse counter {self.efuse_secure_version}",
            )
        return secure_version

    def install(self, job: OtaJob, secure_version: int) -> Partition:
        """Write the verified image to the inactive partition and select it for the next boot."""
        target = self.partitions[self.inactive]
        target.version = job.version
        target.state = ImageState.NEW
        target.secure_version = secure_version
        target.sha256 = job.sha256
        self.next_boot = self.inactive
        self.pending = PendingOta(job, previous=self.running)
        return target

    def reboot(self) -> None:
        """What the 2nd-stage bootloader does: pick the partition to run and fix its state."""
        current = self.running_partition
        if current.state is ImageState.PENDING_VERIFY:
            # Rebooted before the app confirmed itself: the bootloader gives up on it.
            current.state = ImageState.ABORTED
            self.next_boot = self._fallback()
            self._decide("FAILED", "rolled back: the new image rebooted before confirming itself")
        candidate = self.partitions[self.next_boot]
        if candidate.state is ImageState.NEW:
            if candidate.secure_version < self.efuse_secure_version:
                candidate.state = ImageState.INVALID
                self.next_boot = self._fallback()
            else:
                candidate.state = ImageState.PENDING_VERIFY
        elif candidate.state not in (ImageState.VALID, ImageState.UNDEFINED, ImageState.PENDING_VERIFY):
            self.next_boot = self._fallback()
        self.running = self.next_boot
        self.uptime = 0.0
        self.heap = HEAP_TOTAL - 120 * 1024 + self.rng.randint(-4096, 4096)
        self.boots += 1

    def _fallback(self) -> int:
        """The other partition if it holds a valid image, else this one (a real board would brick)."""
        other = self.partitions[1 - self.running]
        return 1 - self.running if other.state is ImageState.VALID else self.running

    @property
    def pending_verify(self) -> bool:
        return self.running_partition.state is ImageState.PENDING_VERIFY

    def confirm(self) -> None:
        """esp_ota_mark_app_valid_cancel_rollback(): the self-check passed."""
        part = self.running_partition
        if part.state is not ImageState.PENDING_VERIFY:
            return
        part.state = ImageState.VALID
        # Anti-rollback: the eFuse counter only ever rises, and only for a confirmed image.
        self.efuse_secure_version = max(self.efuse_secure_version, part.secure_version)
        self._decide("SUCCESS", None)

    def reject(self, reason: str = "self-check failed") -> None:
        """esp_ota_mark_app_invalid_rollback_and_reboot(): back to the previous image."""
        part = self.running_partition
        if part.state is not ImageState.PENDING_VERIFY:
            return
        part.state = ImageState.INVALID
        self.next_boot = self._fallback()
        self._decide("FAILED", f"rolled back: {reason}")
        self.reboot()

    def _decide(self, outcome: str, error: str | None) -> None:
        if self.pending is not None and self.pending.outcome is None:
            self.pending.outcome = outcome
            self.pending.error = error

    def take_outcome(self) -> PendingOta | None:
        """The decided OTA job, once: the MQTT layer reports it after reconnecting."""
        pending = self.pending
        if pending is None or pending.outcome is None:
            return None
        self.pending = None
        return pending


def _signature_ok(public_key: Ed25519PublicKey, sha256_hex: str, signature: str) -> bool:
    try:
        base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    return verify_digest(public_key, sha256_hex, signature)
