"""Leases every edge process shares (issue 6.2): a name held by one process at a time, for
a time it renews. A trunk's registration is one: of ten edge replicas exactly one
registers each trunk, and when it dies (stops renewing) another takes over once the
lease lapses.

Taking a lease the holder already has renews it; a lapsed lease goes to whoever asks
first; releasing is for the holder only. The clock is the caller's (``now``, epoch
seconds) for the memory store; Redis keeps time itself (the key's TTL).

Two implementations with the same tests: :class:`MemoryLeases` (``cloudpbx dev``, one
process) and ``sipedge.adapters.redis_leases.RedisLeases``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Leases(Protocol):
    async def take(self, tenant: str, name: str, holder: str, ttl_s: float) -> bool:
        """Hold (or keep holding) lease ``name`` for ``ttl_s`` from now; True if
        ``holder`` holds it now."""
        ...

    async def release(self, tenant: str, name: str, holder: str) -> bool:
        """Give the lease up if ``holder`` holds it; True if it did."""
        ...

    async def holder(self, tenant: str, name: str) -> str | None: ...


class MemoryLeases:
    """Leases in this process's memory, on the caller's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[str, float]] = {}

    async def take(self, tenant: str, name: str, holder: str, ttl_s: float) -> bool:
        now = self._clock()
        current = self._held.get((tenant, name))
        if current is not None and current[1] > now and current[0] != holder:
            return False
        self._held[tenant, name] = (holder, now + ttl_s)
        return True

    async def release(self, tenant: str, name: str, holder: str) -> bool:
        current = self._held.get((tenant, name))
        if current is None or current[0] != holder or current[1] <= self._clock():
            return False
        del self._held[tenant, name]
        return True

    async def holder(self, tenant: str, name: str) -> str | None:
        current = self._held.get((tenant, name))
        return current[0] if current is not None and current[1] > self._clock() else None
