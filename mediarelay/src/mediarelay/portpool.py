"""The relay's UDP ports: one even RTP port and the odd RTCP port above it per media stream.

Owns the allocation rule of RFC 3550 §11 ("RTP SHOULD use an even destination port
number and the corresponding RTCP stream SHOULD use the next higher (odd) destination
port number") over the operator's configured range, inclusive at both ends.

Allocation is unpredictable, as RTP bleed and injection defences want (an attacker who
can guess the next relay port can spray it before the phone's first packet latches): the
choice comes from an injected ``choose(n) -> int in [0, n)`` — ``secrets.randbelow`` in
production, a seeded ``random.Random().randrange`` in tests — never from a counter.

Cost: the free pairs are kept as a list of pair indices; an allocation picks a random
position and swap-removes it, a release appends, so both are O(1) however full the pool
is (no retry loop that slows down as the pool fills). Memory is one list entry and one
byte per pair (at most 32,256 pairs in 1024–65535).

No sockets here: a port the pool hands out may still be taken by another process. An
adapter whose ``bind`` fails should keep that pair allocated (out of circulation) and ask
for another rather than release it straight back.
"""

from __future__ import annotations

from collections.abc import Callable

#: The ports a relay may use: no privileged port (below 1024), nothing past 16 bits.
LOWEST_PORT = 1024
HIGHEST_PORT = 65535


class PoolExhausted(Exception):
    """Every RTP/RTCP pair of the range is in use: the offer or answer cannot be served.

    The control layer answers it as an error (rtpengine says "Ran out of ports"); the
    operator's remedy is a wider range or more relay pods.
    """

    def __init__(self, low: int, high: int, capacity: int) -> None:
        super().__init__(
            f"all {capacity} RTP/RTCP port pairs of {low}–{high} are in use: "
            "widen the relay's port range or add relay pods"
        )
        self.low = low
        self.high = high
        self.capacity = capacity


class PortPool:
    """RTP/RTCP port pairs over ``low``–``high`` (inclusive), handed out in random order.

    :meth:`allocate` returns the even RTP port; its RTCP port is that plus one. A bound
    that cuts a pair (an odd ``low``, an even ``high``) leaves the half pair unused.
    """

    def __init__(self, low: int, high: int, choose: Callable[[int], int]) -> None:
        self.low = low
        self.high = high
        self._first = _first_rtp_port(low, high)
        self._choose = choose
        self.capacity = _pair_count(low, high)
        self._free = list(range(self.capacity))
        self._used = bytearray(self.capacity)

    @property
    def in_use(self) -> int:
        """How many pairs are allocated (each is two ports)."""
        return self.capacity - len(self._free)

    @property
    def available(self) -> int:
        """How many pairs :meth:`allocate` can still hand out."""
        return len(self._free)

    def allocate(self) -> int:
        """A free pair's even RTP port (RTCP is the next port); raises :class:`PoolExhausted`."""
        free = self._free
        count = len(free)
        if not count:
            raise PoolExhausted(self.low, self.high, self.capacity)
        position = self._choose(count)
        if not 0 <= position < count:
            raise ValueError(f"choose({count}) returned {position}, outside 0–{count - 1}")
        index = free[position]
        free[position] = free[-1]
        free.pop()
        self._used[index] = 1
        return self._first + 2 * index

    def release(self, rtp_port: int) -> None:
        """Give back the pair whose RTP port :meth:`allocate` returned."""
        index = self._index_of(rtp_port)
        if not self._used[index]:
            raise ValueError(f"port {rtp_port} is not in use (released twice?)")
        self._used[index] = 0
        self._free.append(index)

    def is_allocated(self, port: int) -> bool:
        """Whether ``port`` (RTP or RTCP) belongs to an allocated pair."""
        offset = port - self._first
        if not 0 <= offset < 2 * self.capacity:
            return False
        return bool(self._used[offset // 2])

    def _index_of(self, rtp_port: int) -> int:
        offset = rtp_port - self._first
        if not 0 <= offset < 2 * self.capacity:
            raise ValueError(
                f"port {rtp_port} is outside this pool's pairs "
                f"{self._first}–{self._first + 2 * self.capacity - 1}"
            )
        if offset % 2:
            raise ValueError(
                f"port {rtp_port} is an RTCP port: release its RTP port {rtp_port - 1}"
            )
        return offset // 2


def _first_rtp_port(low: int, high: int) -> int:
    """The lowest even port of the range, after checking the range (RFC 3550 §11)."""
    if not LOWEST_PORT <= low <= high <= HIGHEST_PORT:
        raise ValueError(
            f"port range {low}–{high} must lie within {LOWEST_PORT}–{HIGHEST_PORT} with low ≤ high"
        )
    return low + low % 2


def _pair_count(low: int, high: int) -> int:
    """How many (even RTP, odd RTCP) pairs fit in ``low``–``high``; at least one."""
    first = _first_rtp_port(low, high)
    count = (high - first + 1) // 2
    if count < 1:
        raise ValueError(
            f"port range {low}–{high} holds no RTP/RTCP pair "
            "(an even RTP port and the odd port above it, RFC 3550 §11)"
        )
    return count
