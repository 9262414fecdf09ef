"""The replies already sent on the ng control port, to answer a retransmission alike.

rtpengine answers a cookie it has already answered with the very same reply
(sipwise/rtpengine ``daemon/cookie_cache.c``: two generations of 30 s, so a reply is kept
30 to 60 s), so that a request retransmitted by Kamailio after a lost reply is not run
twice: a second ``offer`` would allocate ports again. :class:`ReplyCache` is that cache,
pure: time comes in as ``now``, bounded in entries and in bytes.

Unlike rtpengine it keys on the sender as well as the cookie (:class:`CacheKey`): Kamailio
builds cookies from its pid, and two proxies in containers may well both be pid 1.
How a server adapter uses it is in :mod:`contracts.ng.control`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

#: How long a reply is kept (rtpengine keeps one 30 to 60 s; Kamailio's rtpengine module
#: gives up after rtpengine_retr × rtpengine_tout_ms, 5 × 1 s by default).
DEFAULT_REPLY_TTL_S = 30.0
DEFAULT_MAX_CACHED_REPLIES = 10_000
DEFAULT_MAX_CACHED_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Who asked (the adapter's text form of the source address) and with which cookie."""

    peer: str
    cookie: bytes


class ReplyCache:
    """Replies already sent, to answer a retransmitted request with the same bytes.

    Bounded by ``max_entries`` and ``max_bytes`` (oldest dropped first); an entry lives
    ``ttl_s`` seconds. ``now`` is a monotonic clock reading in seconds, never decreasing.
    """

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_REPLY_TTL_S,
        max_entries: int = DEFAULT_MAX_CACHED_REPLIES,
        max_bytes: int = DEFAULT_MAX_CACHED_BYTES,
    ) -> None:
        if ttl_s <= 0 or max_entries < 1 or max_bytes < 1:
            raise ValueError("ttl_s, max_entries and max_bytes must be positive")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    def get(self, key: CacheKey, now: float) -> bytes | None:
        """The reply sent for ``key`` if it is still kept."""
        self.expire(now)
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def put(self, key: CacheKey, reply: bytes, now: float) -> None:
        """Remember ``reply`` for ``key`` until ``now + ttl_s`` (a reply larger than
        ``max_bytes`` is not kept)."""
        self._discard(key)
        if len(reply) > self.max_bytes:
            return
        self._entries[key] = (now + self.ttl_s, reply)
        self._bytes += len(reply)
        self.expire(now)

    def expire(self, now: float) -> None:
        """Drop expired entries, then the oldest ones while over a bound. Entries are in
        insertion order, which (one ttl, ``now`` never decreasing) is expiry order."""
        while self._entries:
            key, (expires_s, _) = next(iter(self._entries.items()))
            over = len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            if expires_s > now and not over:
                return
            self._discard(key)

    def _discard(self, key: CacheKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[1])
