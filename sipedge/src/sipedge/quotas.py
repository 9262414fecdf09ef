"""Per-tenant call quotas that every edge process shares: concurrent-call slots and a
trial's seconds of calls per day (issue 5.3).

A tenant with ``limits.max_concurrent_calls`` N holds at most N calls at once, counted
from the INVITE (a call ringing counts) to its end, across every edge process. Each call
holds a *slot* that lapses at a time given by the edge unless renewed — the ring time
during set-up, the call's cut-off or the dialog's lifetime once answered — so a slot
whose edge process died frees itself instead of blocking the tenant forever.

A trial tenant may call ``billing.daily_minutes`` a day (UTC days): :meth:`used_s`
before a call, :meth:`add_s` after it. The clock is the caller's (``now``, epoch
seconds): edge processes share it through NTP, as they share Redis.

Two implementations with the same tests: :class:`MemoryQuotas` (``cloudpbx dev``) and
``sipedge.adapters.redis_quotas.RedisQuotas``.
"""

from __future__ import annotations

import datetime
from typing import Protocol


def utc_day(now: float) -> str:
    """The UTC day of epoch second ``now``, as the key of a day's usage: ``2026-11-26``."""
    return datetime.datetime.fromtimestamp(now, datetime.UTC).date().isoformat()


class Quotas(Protocol):
    async def take_slot(
        self, tenant: str, call_id: str, limit: int, until: float, now: float, *, trunk: str = ""
    ) -> bool:
        """Hold a slot for ``call_id`` until ``until`` if fewer than ``limit`` are held
        (lapsed ones not counted); True if it holds one now (a call that held one already
        keeps it, renewed). The tenant's concurrent calls; with ``trunk``, that trunk's
        channels instead."""
        ...

    async def renew_slot(self, tenant: str, call_id: str, until: float, *, trunk: str = "") -> None:
        """Move the lapse of ``call_id``'s slot to ``until`` (the call was answered)."""
        ...

    async def free_slot(self, tenant: str, call_id: str, *, trunk: str = "") -> None: ...

    async def used_s(self, tenant: str, day: str) -> int:
        """Seconds of calls the tenant had on ``day`` (:func:`utc_day`)."""
        ...

    async def add_s(self, tenant: str, day: str, seconds: int) -> None: ...


class MemoryQuotas:
    """The embedded default: this process's memory."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], dict[str, float]] = {}
        self._used: dict[tuple[str, str], int] = {}

    async def take_slot(
        self, tenant: str, call_id: str, limit: int, until: float, now: float, *, trunk: str = ""
    ) -> bool:
        held = self._slots.setdefault((tenant, trunk), {})
        for lapsed in [other for other, end in held.items() if end <= now]:
            del held[lapsed]
        if call_id not in held and len(held) >= limit:
            return False
        held[call_id] = until
        return True

    async def renew_slot(self, tenant: str, call_id: str, until: float, *, trunk: str = "") -> None:
        held = self._slots.get((tenant, trunk), {})
        if call_id in held:
            held[call_id] = until

    async def free_slot(self, tenant: str, call_id: str, *, trunk: str = "") -> None:
        self._slots.get((tenant, trunk), {}).pop(call_id, None)

    async def used_s(self, tenant: str, day: str) -> int:
        return self._used.get((tenant, day), 0)

    async def add_s(self, tenant: str, day: str, seconds: int) -> None:
        self._used[(tenant, day)] = self._used.get((tenant, day), 0) + seconds
