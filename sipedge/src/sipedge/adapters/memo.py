"""A bounded memory of recent entries, for what a store remembers between requests.

Two generations of at most ``max_entries`` each: when the young one is full it becomes
the old one and the previous old one is dropped. Every operation is O(1) (evicting a
dict's oldest key is not: iteration skips the deleted slots at its front), and memory
stays bounded however many keys pass. The parse caches of the SIP core use the same
scheme inline (:func:`sipedge.sip.grammar.remembered`).
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Generations(Generic[K, V]):
    """Recently put entries; an entry older than two generations may be gone."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        found = self._young.get(key)
        return found if found is not None else self._old.get(key)

    def pop(self, key: K) -> V | None:
        """Remove ``key`` from both generations; the newest value it had, if any."""
        young, old = self._young.pop(key, None), self._old.pop(key, None)
        return young if young is not None else old

    def put(self, key: K, value: V) -> None:
        if len(self._young) >= self._max:
            self._young, self._old = {}, self._young
        self._young[key] = value

    def clear(self) -> None:
        self._young.clear()
        self._old.clear()
