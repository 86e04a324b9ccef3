"""The end-of-run report: what the fleet did and which faults it injected."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from simulator.mqtt_device import SimulatedDevice

MAX_ERRORS = 20


@dataclass
class Report:
    devices: int = 0
    connected: int = 0  # connected when the report was taken
    ever_connected: int = 0
    connects: int = 0
    reconnects: int = 0
    heartbeats: int = 0
    malformed_sent: int = 0
    commands_received: int = 0
    commands_acknowledged: int = 0
    ota_received: int = 0
    ota_succeeded: int = 0
    ota_failed: int = 0
    ota_rolled_back: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    firmware: dict[str, int] = field(default_factory=dict)
    duration_seconds: float = 0.0
    seed: int | None = None
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, devices: Iterable[SimulatedDevice], *, duration: float = 0.0, seed: int | None = None) -> Report:
        report = cls(duration_seconds=round(duration, 2), seed=seed)
        faults: Counter[str] = Counter()
        firmware: Counter[str] = Counter()
        for d in devices:
            s = d.stats
            report.devices += 1
            report.connected += d.connected.is_set()
            report.ever_connected += s.connects > 0
            report.connects += s.connects
            report.reconnects += s.reconnects
            report.heartbeats += s.heartbeats
            report.malformed_sent += s.malformed_sent
            report.commands_received += s.commands_received
            report.commands_acknowledged += s.commands_acknowledged
            report.ota_received += s.ota_received
            report.ota_succeeded += s.ota_succeeded
            report.ota_failed += s.ota_failed
            report.ota_rolled_back += s.ota_rolled_back
            faults.update(d.faults.injected)
            firmware[d.model.version] += 1
            if s.connects == 0 and d.last_error:
                report.errors.append(f"{d.device_id}: {d.last_error}")
            report.errors += [f"{d.device_id}: {e}" for e in d.errors]
        report.faults = dict(sorted(faults.items()))
        report.firmware = dict(sorted(firmware.items()))
        if len(report.errors) > MAX_ERRORS:  # a sample, and how many more there were
            report.errors[MAX_ERRORS:] = [f"... and {len(report.errors) - MAX_ERRORS} more"]
        return report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in self.faults.items()) or "none"
        firmware = ", ".join(f"{k}: {v}" for k, v in self.firmware.items()) or "none"
        lines = [
            f"simulated fleet report ({self.duration_seconds:g} s, seed {self.seed})",
            f"  devices            {self.devices} ({self.ever_connected} connected at least once, "
            f"{self.connected} connected at the end)",
            f"  connects           {self.connects} ({self.reconnects} reconnects)",
            f"  heartbeats sent    {self.heartbeats} (+ {self.malformed_sent} malformed payloads)",
            f"  commands           {self.commands_received} received, {self.commands_acknowledged} acknowledged",
            f"  OTA jobs           {self.ota_received} received, {self.ota_succeeded} succeeded, "
            f"{self.ota_failed} failed ({self.ota_rolled_back} rolled back)",
            f"  firmware running   {firmware}",
            f"  faults injected    {faults}",
        ]
        lines += [f"  error              {e}" for e in self.errors]
        return "\n".join(lines)
