"""Which media relay anchors a call, sans-IO: relay addresses, the hash ring, their health.

DESIGN "NAT": every call's media is anchored on a relay by default. The edge reaches its
relays over rtpengine's *ng* protocol (:mod:`sipedge.adapters.relay`); this module owns
the decisions that need no socket:

* :class:`RelayAddress`: one relay's ng control address, ``HOST:PORT`` (``[v6]:PORT``).
* :class:`RelayRing`: consistent hashing (Karger et al. 1997) of a call's Call-ID onto
  the relays, each placed on the ring at :data:`VIRTUAL_NODES` points so that the calls
  spread evenly and adding a relay moves only about 1/n of them. A call's later commands
  go to the relay its offer went to: the edge records that relay with the call, so the
  ring is only asked once per call.
* :class:`RelayPool`: the ring plus which relays are up (a periodic ``ping``, or a command
  left unanswered, says so). A down relay is skipped: the Call-ID maps to the next relay
  up the ring, as Kamailio's rtpengine module skips disabled ones.

Standard library only; no I/O, no clock.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

#: Points per relay on the ring: enough for an even spread of calls over a few relays.
VIRTUAL_NODES = 160


@dataclass(frozen=True, slots=True, order=True)
class RelayAddress:
    """A relay's ng control address."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> RelayAddress:
        """``127.0.0.1:2223``, ``relay-0.mediarelay:2223``, ``[::1]:2223``."""
        host, _, port = text.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad relay address {text!r} (want HOST:PORT)")
        return cls(host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # Pickled to the edge's workers inside EdgeConfig; see sipedge.config.Listen.
    def __reduce__(self) -> tuple[type[RelayAddress], tuple[str, int]]:
        return (type(self), (self.host, self.port))


def _point(text: str) -> int:
    """A position on the ring: 64 bits of BLAKE2b, the same in every edge process (unlike
    ``hash()``, which is salted per process)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class RelayRing:
    """Consistent hashing of Call-IDs onto relays, with virtual nodes."""

    def __init__(self, relays: Sequence[RelayAddress], virtual_nodes: int = VIRTUAL_NODES) -> None:
        if not relays:
            raise ValueError("a relay ring needs at least one relay")
        points = sorted(
            (_point(f"{relay}#{replica}"), relay)
            for relay in set(relays)
            for replica in range(virtual_nodes)
        )
        self._points = [point for point, _ in points]
        self._owners = [relay for _, relay in points]
        self.relays = tuple(sorted(set(relays)))

    def preference(self, key: str) -> Iterator[RelayAddress]:
        """Every relay once, in ring order from ``key``'s point: the first is its relay,
        the next ones take over when those before them are down."""
        start = bisect.bisect(self._points, _point(key))
        seen: set[RelayAddress] = set()
        count = len(self._owners)
        for step in range(count):
            relay = self._owners[(start + step) % count]
            if relay not in seen:
                seen.add(relay)
                yield relay
                if len(seen) == len(self.relays):
                    return

    def owner(self, key: str) -> RelayAddress:
        """The relay ``key`` maps to when all are up."""
        return next(self.preference(key))


class RelayPool:
    """The ring and the relays' health: which relay a new call should be offered to."""

    def __init__(self, relays: Sequence[RelayAddress]) -> None:
        self.ring = RelayRing(relays)
        #: Relays start up: the first call need not wait for the first ping.
        self._down: set[RelayAddress] = set()

    @property
    def relays(self) -> tuple[RelayAddress, ...]:
        return self.ring.relays

    def is_up(self, relay: RelayAddress) -> bool:
        return relay not in self._down

    def mark(self, relay: RelayAddress, up: bool) -> bool:
        """Record a ping's (or a command's) outcome; True when the relay's state changed."""
        was_up = relay not in self._down
        if up:
            self._down.discard(relay)
        else:
            self._down.add(relay)
        return was_up != up

    def candidates(self, call_id: str) -> list[RelayAddress]:
        """The relays up, in the order to try them for a new call ``call_id``."""
        return [relay for relay in self.ring.preference(call_id) if relay not in self._down]

    def up(self) -> Iterable[RelayAddress]:
        return (relay for relay in self.relays if relay not in self._down)

    def with_relays(self, relays: Sequence[RelayAddress]) -> RelayPool:
        """The pool over ``relays`` instead, keeping what is known of those it had."""
        pool = RelayPool(relays)
        pool._down = {relay for relay in self._down if relay in set(relays)}
        return pool
