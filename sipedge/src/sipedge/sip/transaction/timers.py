"""The timers of the SIP transaction layer: RFC 3261 §17 Table 4 and RFC 6026 §8.11.

Owns the timer names, their configuration (T1, T2, T4 and the values derived from them)
and :class:`Timers`, the deadlines armed in one transaction. Time is a float ``now`` in
seconds handed in by the caller; nothing here reads a clock.

A retransmission timer (A, E, G) is re-armed from the instant it was due, not from the
instant it was handled, so a late wake-up does not stretch the schedule. Instants a very
late wake-up missed altogether are skipped as if they had passed unseen: one
retransmission per wake-up, never a burst, and the intervals that follow are the ones
the schedule has reached by then.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Timer(enum.Enum):
    """RFC 3261 Table 4 (Timer C is the proxy's, §16.6, not a transaction's) plus RFC 6026."""

    # Members are singletons: hash them by identity, in C (Enum.__hash__ is Python code,
    # and the transition tables hash states and events for every message).
    __hash__ = object.__hash__

    A = "A"  # INVITE request retransmit interval, unreliable transports only
    B = "B"  # INVITE client transaction timeout
    D = "D"  # INVITE client: wait for response retransmits (Completed)
    E = "E"  # non-INVITE request retransmit interval, unreliable transports only
    F = "F"  # non-INVITE client transaction timeout
    G = "G"  # INVITE final response retransmit interval, unreliable transports only
    H = "H"  # INVITE server: wait for ACK
    I = "I"  # noqa: E741  (the RFC's name) INVITE server: wait for ACK retransmits
    J = "J"  # non-INVITE server: wait for request retransmits (Completed)
    K = "K"  # non-INVITE client: wait for response retransmits (Completed)
    L = "L"  # RFC 6026: INVITE server, Accepted: wait for INVITE retransmits
    M = "M"  # RFC 6026: INVITE client, Accepted: wait for 2xx retransmits and forks
    TRYING = "100"  # §17.2.1: send 100 Trying if the TU has not answered in 200 ms


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1, T2, T4 (§17.1.1.1, §17.1.2.2) and the few values Table 4 leaves open.

    ``timer_d_s`` is Timer D on unreliable transports ("at least 32 seconds").
    ``trying_s`` turns on the automatic 100 Trying of §17.2.1: ``0.2`` sends it when
    the TU has not answered an INVITE within 200 ms; ``None`` (the default) leaves
    every provisional response to the TU.
    """

    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0
    timer_d_s: float = 32.0
    trying_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.t1_s <= self.t2_s:
            raise ValueError(f"need 0 < T1 <= T2, got T1={self.t1_s} s, T2={self.t2_s} s")
        if min(self.t4_s, self.timer_d_s, self.trying_s or 0.0) < 0:
            raise ValueError("T4, Timer D and the 100 Trying delay cannot be negative")

    # The edge's workers get their config pickled. Compiled by mypyc, a frozen dataclass
    # unpickles through its own __setattr__ and fails: rebuild it through __init__.
    def __reduce__(
        self,
    ) -> tuple[type[TimerConfig], tuple[float, float, float, float, float | None]]:
        return (type(self), (self.t1_s, self.t2_s, self.t4_s, self.timer_d_s, self.trying_s))

    def initial_s(self, timer: Timer, reliable: bool) -> float | None:
        """The value ``timer`` starts with (Table 4); ``None``: it does not run at all."""
        match timer:
            case Timer.A | Timer.E | Timer.G:  # retransmissions: unreliable transports only
                return None if reliable else self.t1_s
            case Timer.B | Timer.F | Timer.H | Timer.L | Timer.M:
                return 64 * self.t1_s
            case Timer.D:
                return 0.0 if reliable else self.timer_d_s
            case Timer.I | Timer.K:
                return 0.0 if reliable else self.t4_s
            case Timer.J:
                return 0.0 if reliable else 64 * self.t1_s
            case Timer.TRYING:
                return self.trying_s

    def cap_s(self, timer: Timer) -> float:
        """The longest interval a retransmission timer backs off to (T2 for E and G)."""
        return self.t2_s if timer in (Timer.E, Timer.G) else math.inf


class Timers:
    """The deadlines armed in one transaction and the intervals of its retransmit timers."""

    __slots__ = ("_config", "_due", "_interval", "_reliable")

    def __init__(self, config: TimerConfig, reliable: bool) -> None:
        self._config = config
        self._reliable = reliable
        self._due: dict[Timer, float] = {}
        self._interval: dict[Timer, float] = {}

    def start(self, timer: Timer, now: float) -> None:
        """Arm ``timer`` with its Table 4 value, unless it does not run on this transport."""
        value = self._config.initial_s(timer, self._reliable)
        if value is not None:
            self._interval[timer] = value
            self._due[timer] = now + value

    def back_off(self, timer: Timer, due: float, now: float) -> None:
        """Re-arm a retransmit timer that fired at ``due``, its interval doubled (to its cap)."""
        cap = self._config.cap_s(timer)
        interval = self._interval[timer]
        deadline = due
        while deadline <= now and interval < cap:
            interval = min(2 * interval, cap)
            deadline += interval
        self._interval[timer] = interval
        self._due[timer] = _first_after(deadline, interval, now)

    def rearm(self, timer: Timer, interval: float, due: float, now: float) -> None:
        """Re-arm ``timer`` to fire every ``interval`` from ``due`` on, next after ``now``."""
        self._interval[timer] = interval
        self._due[timer] = _first_after(due, interval, now)

    def stop(self, timer: Timer) -> None:
        self._due.pop(timer, None)

    def keep_only(self, timers: frozenset[Timer]) -> None:
        """Disarm every timer that does not run in the state just entered."""
        for timer in [t for t in self._due if t not in timers]:
            del self._due[timer]

    def next_deadline(self) -> float | None:
        return min(self._due.values(), default=None)

    def pop_due(self, now: float) -> tuple[Timer, float] | None:
        """Disarm and return the earliest timer due at ``now`` with its deadline, if any."""
        if not self._due:
            return None
        timer = min(self._due, key=self._due.__getitem__)
        due = self._due[timer]
        if due > now:
            return None
        del self._due[timer]
        return timer, due

    def armed(self) -> dict[Timer, float]:
        """A copy of the armed deadlines (for tests and diagnostics)."""
        return dict(self._due)


def _first_after(start: float, interval: float, now: float) -> float:
    """The first of ``start``, ``start + interval``, ``start + 2 * interval``... after ``now``."""
    if start > now:
        return start
    return start + (math.floor((now - start) / interval) + 1) * interval
