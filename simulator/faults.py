"""Fault injection: which faults, how often, and a reproducible dice per device.

Every device rolls its own `random.Random` seeded from the run's seed and its id, so a run
with the same `--seed`, devices and flags injects the same faults on the same devices whatever
order the event loop happens to schedule them in (timing still varies; the dice do not).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    DROP_HEARTBEAT = "drop_heartbeat"
    UNCLEAN_DISCONNECT = "unclean_disconnect"
    MALFORMED_PAYLOAD = "malformed_payload"
    SLOW_DOWNLOAD = "slow_download"
    FAILED_DOWNLOAD = "failed_download"
    BAD_CHECKSUM = "bad_checksum"
    BAD_SIGNATURE = "bad_signature"
    OTA_CRASH = "ota_crash"
    SELF_CHECK_FAIL = "self_check_fail"
    RECONNECT_STORM = "reconnect_storm"


# What each probability applies to, for --help and docs/simulator.md.
FAULT_HELP: dict[Fault, str] = {
    Fault.DROP_HEARTBEAT: "probability that a heartbeat is silently skipped",
    Fault.UNCLEAN_DISCONNECT: "probability per heartbeat that the socket dies without DISCONNECT (Last Will)",
    Fault.MALFORMED_PAYLOAD: "probability per heartbeat of also sending a malformed payload",
    Fault.SLOW_DOWNLOAD: "probability that a firmware download is throttled (see --slow-download-bps)",
    Fault.FAILED_DOWNLOAD: "probability that a firmware download breaks off halfway",
    Fault.BAD_CHECKSUM: "probability that the downloaded image is corrupted (SHA-256 mismatch)",
    Fault.BAD_SIGNATURE: "probability that the job's signature is treated as tampered",
    Fault.OTA_CRASH: "probability that the new image crashes before confirming itself (rollback)",
    Fault.SELF_CHECK_FAIL: "probability that the new image fails its self-check (rollback)",
    Fault.RECONNECT_STORM: "probability per heartbeat of a burst of rapid reconnects",
}


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities in 0..1, one per fault kind (all zero: a well-behaved fleet)."""

    drop_heartbeat: float = 0.0
    unclean_disconnect: float = 0.0
    malformed_payload: float = 0.0
    slow_download: float = 0.0
    failed_download: float = 0.0
    bad_checksum: float = 0.0
    bad_signature: float = 0.0
    ota_crash: float = 0.0
    self_check_fail: float = 0.0
    reconnect_storm: float = 0.0
    slow_download_bps: int = 64 * 1024
    storm_reconnects: int = 5

    def __post_init__(self) -> None:
        for kind in Fault:
            value = getattr(self, kind.value)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--fault-{kind.value.replace('_', '-')} must be in 0..1, not {value}")
        if self.slow_download_bps <= 0 or self.storm_reconnects <= 0:
            raise ValueError("--slow-download-bps and --storm-reconnects must be positive")

    def probability(self, kind: Fault) -> float:
        value: float = getattr(self, kind.value)
        return value

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("fault injection (probabilities 0..1, default 0)")
        for kind in Fault:
            group.add_argument(
                f"--fault-{kind.value.replace('_', '-')}",
                dest=f"fault_{kind.value}",
                type=float,
                default=0.0,
                metavar="P",
                help=FAULT_HELP[kind],
            )
        group.add_argument("--slow-download-bps", type=int, default=64 * 1024, help="throttled download speed")
        group.add_argument("--storm-reconnects", type=int, default=5, help="reconnects in one storm")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FaultConfig:
        values: dict[str, float | int] = {kind.value: getattr(args, f"fault_{kind.value}") for kind in Fault}
        return cls(
            **values,
            slow_download_bps=args.slow_download_bps,
            storm_reconnects=args.storm_reconnects,
        )


class FaultDice:
    """One device's dice: `roll(kind)` is True when the fault fires, and is counted then."""

    def __init__(self, config: FaultConfig, seed: int | None, device_id: str) -> None:
        self.config = config
        # A str seed hashes with SHA-512 (random's version 2): stable across runs and machines.
        # Simulation dice, not cryptography (S311).
        self.rng = random.Random(f"{seed}:{device_id}") if seed is not None else random.Random()  # noqa: S311
        self.injected: Counter[str] = Counter()

    def roll(self, kind: Fault) -> bool:
        p = self.config.probability(kind)
        if p <= 0.0:
            return False
        fired = self.rng.random() < p
        if fired:
            self.injected[kind.value] += 1
        return fired

    def force(self, kind: Fault) -> None:
        """Count a fault injected on request (tests, the demo) rather than by chance."""
        self.injected[kind.value] += 1


MALFORMED_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    # (topic suffix, payload): each is refused by server.mqtt.payloads with a distinct reason.
    ("health", b"{not json"),  # malformed_json
    ("health", b"[1, 2, 3]"),  # not_object
    ("health", b'{"heap": 1000}'),  # missing_field (fw)
    ("health", b'{"fw": "1.0.0", "heap": "lots"}'),  # wrong_type
    ("health", b'{"fw": "1.0.0", "rssi": 12}'),  # out_of_range
    ("status", b'{"led": "BLUE"}'),  # bad_value
)


def malformed_payload(rng: random.Random) -> tuple[str, bytes]:
    return MALFORMED_PAYLOADS[rng.randrange(len(MALFORMED_PAYLOADS))]
