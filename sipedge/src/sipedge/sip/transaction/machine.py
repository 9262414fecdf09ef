"""The table-driven engine shared by the four transaction state machines of RFC 3261 §17.

Owns the states, the inputs (messages, TU requests, timers, transport errors), the
actions a transition performs, and :class:`Transaction`, which looks up
``(state, input)`` in its class's ``TABLE`` and performs what it finds. The tables
themselves sit in :mod:`.client` and :mod:`.server`, beside the RFC figures they encode.

Rules common to all four machines: an input the table does not list is absorbed (a
stray retransmission, a timer of a state already left); entering a new state disarms
every timer that does not run there (``TIMERS``); entering a state whose transitions
never read the request again (``SPENT``) lets go of it; entering Terminated reports
:class:`~.events.Terminated`. A TU request the table does not list is a
:class:`~sipedge.sip.errors.ProtocolMisuse` (checked by the server side).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from sipedge.sip.errors import ProtocolMisuse
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction.events import (
    Output,
    PassToTU,
    Terminated,
    TimedOut,
    TransportFailure,
)
from sipedge.sip.transaction.keys import Peer, TransactionKey
from sipedge.sip.transaction.timers import Timer, TimerConfig, Timers


class State(enum.Enum):
    """The states of RFC 3261 §17 figures 5–8, with RFC 6026's Accepted."""

    # Members are singletons: hash them by identity, in C (Enum.__hash__ is Python code,
    # and the transition tables hash states and events for every message).
    __hash__ = object.__hash__

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Ev(enum.Enum):
    """Inputs other than timers: from the TU, from the network, from the transport."""

    # Members are singletons: hash them by identity, in C (Enum.__hash__ is Python code,
    # and the transition tables hash states and events for every message).
    __hash__ = object.__hash__

    START = "request from TU (client) / request from network (server)"
    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_300_699 = "300-699 received"
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    TU_1XX = "1xx from TU"
    TU_2XX = "2xx from TU"
    TU_300_699 = "300-699 from TU"
    TRANSPORT_ERROR = "transport error"


class Act(enum.Enum):
    """What a transition does, in the order listed."""

    # Members are singletons: hash them by identity, in C (Enum.__hash__ is Python code,
    # and the transition tables hash states and events for every message).
    __hash__ = object.__hash__

    SEND_REQUEST = "send (or resend) the request"
    SEND_ACK = "send the ACK of the non-2xx final response (built once, §17.1.1.3)"
    SEND_RESPONSE = "send the TU's response and remember it"
    RESEND_RESPONSE = "resend the last response sent, if any"
    SEND_TRYING = "send 100 Trying on the TU's behalf (§17.2.1)"
    TO_TU = "pass the message to the TU"
    TIMEOUT = "inform the TU: the timer that fired timed the transaction out"
    TRANSPORT_FAILED = "inform the TU of a transport error"
    BACK_OFF = "re-arm the retransmit timer that fired, interval doubled (cap T2 for E, G)"
    E_AT_T2 = "re-arm timer E with T2 (§17.1.2.2, Proceeding)"
    STOP_TRYING = "disarm the 100 Trying timer: the TU answered"
    START_A = "start timer A"
    START_B = "start timer B"
    START_D = "start timer D"
    START_E = "start timer E"
    START_F = "start timer F"
    START_G = "start timer G"
    START_H = "start timer H"
    START_I = "start timer I"
    START_J = "start timer J"
    START_K = "start timer K"
    START_L = "start timer L"
    START_M = "start timer M"
    START_TRYING = "start the 100 Trying timer"


_STARTS: Final = {
    Act.START_A: Timer.A,
    Act.START_B: Timer.B,
    Act.START_D: Timer.D,
    Act.START_E: Timer.E,
    Act.START_F: Timer.F,
    Act.START_G: Timer.G,
    Act.START_H: Timer.H,
    Act.START_I: Timer.I,
    Act.START_J: Timer.J,
    Act.START_K: Timer.K,
    Act.START_L: Timer.L,
    Act.START_M: Timer.M,
    Act.START_TRYING: Timer.TRYING,
}

Input = Ev | Timer
Table = Mapping[tuple[State, Input], tuple[State, tuple[Act, ...]]]


@dataclass(frozen=True, slots=True)
class Step:
    """The context of one transition: when, what message caused it, which timer fired."""

    now: float
    message: Request | Response | None = None
    fired: tuple[Timer, float] | None = None


class Transaction:
    """One transaction: a state, its armed timers, and the class's transition table."""

    TABLE: ClassVar[Table]
    TIMERS: ClassVar[Mapping[State, frozenset[Timer]]]
    INITIAL: ClassVar[State]
    #: States none of whose transitions reads the request. Entering one drops it: on
    #: UDP a finished transaction lingers 32 s (Timers J, L, M) only to absorb
    #: retransmissions, and the parsed messages it held were most of what a busy
    #: edge kept alive, and what its garbage collector kept re-scanning.
    SPENT: ClassVar[frozenset[State]]

    def __init__(
        self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig
    ) -> None:
        self.key = key
        self.method = request.method
        self._request: Request | None = request
        self.peer = peer
        self.config = config
        self.state = self.INITIAL
        self.timers = Timers(config, peer.reliable)
        self._started = False

    @property
    def request(self) -> Request:
        """The request that started the transaction, until a ``SPENT`` state."""
        if self._request is None:
            raise ProtocolMisuse(f"{self!r} no longer holds its request")
        return self._request

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called; ``None``: no timer is armed."""
        return self.timers.next_deadline()

    def handle_timer(self, now: float) -> list[Output]:
        """Fire every timer due at ``now``, earliest first."""
        out: list[Output] = []
        while (due := self.timers.pop_due(now)) is not None:
            out += self._fire(due[0], Step(now, fired=due))
        return out

    def transport_error(self, now: float) -> list[Output]:
        """The transport could not send a message of this transaction (§17.1.4, §17.2.4)."""
        return self._fire(Ev.TRANSPORT_ERROR, Step(now))

    def start(self, now: float) -> list[Output]:
        """Enter the initial state: send the request (client) or pass it to the TU (server)."""
        if self._started:
            raise ProtocolMisuse(f"{type(self).__name__} {self.key} is already started")
        self._started = True
        return self._fire(Ev.START, Step(now, self.request))

    def _fire(self, event: Input, step: Step) -> list[Output]:
        entry = self.TABLE.get((self.state, event))
        if entry is None:
            return []
        next_state, acts = entry
        if next_state is not self.state:
            self.state = next_state
            self.timers.keep_only(self.TIMERS.get(next_state, frozenset()))
        out: list[Output] = []
        for act in acts:
            self._perform(act, step, out)
        if next_state in self.SPENT:
            self._release(next_state)
        if next_state is State.TERMINATED:
            out.append(Terminated(self.key))
        return out

    def _release(self, state: State) -> None:
        """Let go of what no transition of ``state`` reads (subclasses drop more)."""
        self._request = None

    def _perform(self, act: Act, step: Step, out: list[Output]) -> None:
        """The actions every machine shares; subclasses add the sending ones."""
        timer = _STARTS.get(act)
        if timer is not None:
            self.timers.start(timer, step.now)
        elif act is Act.TO_TU:
            assert step.message is not None
            out.append(PassToTU(step.message, self.key))
        elif act is Act.TIMEOUT:
            assert step.fired is not None
            out.append(TimedOut(self.key, step.fired[0]))
        elif act is Act.TRANSPORT_FAILED:
            out.append(TransportFailure(self.key))
        elif act is Act.BACK_OFF:
            assert step.fired is not None
            self.timers.back_off(step.fired[0], step.fired[1], step.now)
        elif act is Act.E_AT_T2:
            assert step.fired is not None
            self.timers.rearm(Timer.E, self.config.t2_s, step.fired[1], step.now)
        elif act is Act.STOP_TRYING:
            self.timers.stop(Timer.TRYING)
        else:
            raise AssertionError(f"{type(self).__name__} cannot {act.value}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.state.value}>"
