"""The activity (audit) log: an append-only record of who did what to what, and when."""

from __future__ import annotations

import logging
import uuid

from server.core.errors import DomainError
from server.core.model import ActivityEntry
from server.ports.clock import Clock
from server.ports.store import ActivityFilter, ActivityStore, Page, PageRequest

log = logging.getLogger("server.activity")

SYSTEM = "system"
MAX_DETAIL_CHARS = 512


class ActivityLog:
    def __init__(self, store: ActivityStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(self, actor: str, action: str, target: str, **details: object) -> ActivityEntry:
        """Append one entry. Details are stringified and truncated: the log is for people."""
        entry = ActivityEntry(
            entry_id=uuid.uuid4().hex,
            time=self._clock.now(),
            actor=actor,
            action=action,
            target=target[:MAX_DETAIL_CHARS],
            details={k: str(v)[:MAX_DETAIL_CHARS] for k, v in details.items() if v is not None},
        )
        await self._store.append(entry)
        return entry

    async def record_quietly(self, actor: str, action: str, target: str, **details: object) -> None:
        """For events observed rather than requested (a failed login, a device going offline):
        the log failing must not turn the observed event into an error for the caller."""
        try:
            await self.record(actor, action, target, **details)
        except DomainError as exc:
            log.warning("activity entry not written", extra={"action": action, "target": target, "error": exc.message})

    async def list(self, flt: ActivityFilter, page: PageRequest) -> Page[ActivityEntry]:
        return await self._store.list(flt, page)
