"""The location store in process memory, for ``cloudpbx dev`` and a single edge process.

Implements :class:`sipedge.location.LocationStore` with a dict ``tenant → aor → contact →
Binding``. ``update`` never awaits between reading and writing, so on one event loop it
is atomic without a lock (the concurrency tests check that). Expired bindings are never
returned; they are dropped from an AoR when it is next updated and from a whole tenant
when it is counted or swept for keep-alives.
"""

from __future__ import annotations

from collections.abc import Callable

from sipedge.location import Binding, D, merged, ordered

_AoRs = dict[str, dict[str, Binding]]


class MemoryLocationStore:
    """Bindings in a dict; the same behaviour as the Redis store, inside one process."""

    def __init__(self) -> None:
        self._tenants: dict[str, _AoRs] = {}

    async def lookup(self, tenant: str, aor: str, now: float) -> list[Binding]:
        stored = self._tenants.get(tenant, {}).get(aor, {})
        return ordered(b for b in stored.values() if b.is_live(now))

    async def update(
        self, tenant: str, aor: str, decide: Callable[[list[Binding]], D], now: float
    ) -> tuple[D, list[Binding]]:
        aors = self._tenants.setdefault(tenant, {})
        live = ordered(b for b in aors.get(aor, {}).values() if b.is_live(now))
        decision = decide(list(live))
        after = merged(live, decision.changes, now)
        if after:
            aors[aor] = {binding.contact: binding for binding in after}
        else:
            aors.pop(aor, None)
        if not aors:
            del self._tenants[tenant]
        return decision, after

    async def remove_all(self, tenant: str) -> None:
        self._tenants.pop(tenant, None)

    async def count(self, tenant: str, now: float) -> int:
        return sum(len(stored) for stored in self._purged(tenant, now).values())

    async def nat_bindings(self, tenant: str, now: float, limit: int) -> list[tuple[str, Binding]]:
        due = [
            (aor, binding)
            for aor, stored in self._purged(tenant, now).items()
            for binding in stored.values()
            if binding.needs_keepalive
        ]
        due.sort(key=lambda pair: (pair[1].expires_at, pair[0], pair[1].contact))
        return due[:limit]

    def _purged(self, tenant: str, now: float) -> _AoRs:
        """The tenant's AoRs with expired bindings (and emptied AoRs) dropped."""
        aors = self._tenants.get(tenant, {})
        for aor in list(aors):
            live = {c: b for c, b in aors[aor].items() if b.is_live(now)}
            if live:
                aors[aor] = live
            else:
                del aors[aor]
        if not aors:
            self._tenants.pop(tenant, None)
        return aors
