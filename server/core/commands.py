"""LED commands waiting for the device's acknowledgement.

A command carries an id; the device answers on devices/{id}/status. The answer counts when it
echoes the command's id, or, for firmware that doesn't echo ids (the seed's), when it reports the
requested LED state after the command was published. Waiters are registered before publishing,
so an answer that beats the PUBACK back to us is not missed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from server.core.model import LedState
from server.ports.broker import StatusReport


@dataclass(eq=False)
class PendingCommand:
    device_id: str
    command_id: str
    state: LedState
    published: bool = False  # state-only matches count from here on
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, report: StatusReport) -> bool:
        if report.command_id is not None:
            return report.command_id == self.command_id
        return self.published and report.led is not None and report.led == self.state.value


class PendingCommands:
    def __init__(self) -> None:
        self._by_device: dict[str, list[PendingCommand]] = {}

    def expect(self, device_id: str, command_id: str, state: LedState) -> PendingCommand:
        pending = PendingCommand(device_id, command_id, state)
        self._by_device.setdefault(device_id, []).append(pending)
        return pending

    def forget(self, pending: PendingCommand) -> None:
        waiting = self._by_device.get(pending.device_id)
        if waiting is None:
            return
        if pending in waiting:
            waiting.remove(pending)
        if not waiting:
            del self._by_device[pending.device_id]

    def resolve(self, device_id: str, report: StatusReport) -> int:
        """Mark every waiter this report acknowledges; returns how many."""
        resolved = 0
        for pending in self._by_device.get(device_id, ()):
            if not pending.done.is_set() and pending.matches(report):
                pending.done.set()
                resolved += 1
        return resolved

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_device.values())
