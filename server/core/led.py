"""LED commands: publish one to a device and wait a bounded time for its acknowledgement.

A command carries an id; the device answers on devices/{id}/status. The answer counts when it
echoes the command's id, or, for firmware that doesn't echo ids (the seed's), when it reports the
requested LED state after the command was published. Waiters are registered before publishing,
so an answer that beats the PUBACK back to us is not missed. The inbound handler hands every
status report to `acknowledge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from server.core.activity import ActivityLog
from server.core.caller import Caller
from server.core.errors import DomainError, FailedPrecondition, InvalidArgument, Unavailable
from server.core.model import LedState
from server.core.registry import NO_BROKER, DeviceRegistry
from server.ports.broker import DevicePublisher, StatusReport
from server.ports.clock import Clock
from server.ports.store import DeviceStore

MAX_COMMAND_TIMEOUT = 30.0
# While a command waits, the store is also polled: with several replicas the device's answer
# may be ingested by another one (shared subscriptions), which records the LED state.
ACK_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class LedResult:
    command_id: str
    acknowledged: bool
    state: LedState


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


class LedCommands:
    def __init__(
        self,
        store: DeviceStore,
        registry: DeviceRegistry,
        activity: ActivityLog,
        clock: Clock,
        *,
        publisher: DevicePublisher | None = None,
        command_timeout: float = 5.0,
    ) -> None:
        self._store = store
        self._registry = registry
        self._activity = activity
        self._clock = clock
        self._publisher = publisher
        self._command_timeout = command_timeout
        self._pending = PendingCommands()

    async def set_led(self, caller: Caller, device_id: str, state: LedState, wait: float | None = None) -> LedResult:
        """Publish an LED command and wait up to `wait` s for the device to acknowledge it.
        No acknowledgement is not an error: the result says whether it came."""
        if state not in (LedState.ON, LedState.OFF):
            raise InvalidArgument('state must be "ON" or "OFF"')
        device = await self._registry.get(caller, device_id)
        if self._publisher is None:
            raise Unavailable(NO_BROKER)
        if device.blocked:
            raise FailedPrecondition("device is blocked")
        if not device.online:
            raise FailedPrecondition("device is offline")
        wait = self._command_timeout if wait is None or wait <= 0 else min(wait, MAX_COMMAND_TIMEOUT)
        command_id = uuid.uuid4().hex
        pending = self._pending.expect(device_id, command_id, state)
        try:
            published_at = self._clock.now()
            await self._publisher.publish_command(device_id, {"id": command_id, "cmd": "led", "state": state.value})
            pending.published = True
            acknowledged = await self._await_ack(pending, published_at, wait)
        finally:
            self._pending.forget(pending)
        await self._activity.record_quietly(
            caller.actor, "device.led", device_id, state=state.value, command=command_id, acknowledged=acknowledged
        )
        return LedResult(command_id, acknowledged, state)

    def acknowledge(self, device_id: str, report: StatusReport) -> None:
        """A status report from a known, unblocked device: it may answer a waiting command."""
        self._pending.resolve(device_id, report)

    async def _await_ack(self, pending: PendingCommand, published_at: datetime, wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return pending.done.is_set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, ACK_POLL_SECONDS)):
                    await pending.done.wait()
            if pending.done.is_set():
                return True
            with contextlib.suppress(DomainError):
                stored = await self._store.get(pending.device_id)
                if stored.led is pending.state and stored.updated_at >= published_at:
                    return True
