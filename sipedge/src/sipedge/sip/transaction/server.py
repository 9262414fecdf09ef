"""Server transactions: RFC 3261 §17.2.1 (INVITE, with RFC 6026) and §17.2.2 (non-INVITE).

Owns the two server state machines, written as tables beside the figures they encode,
and the 100 Trying the INVITE server transaction may send for a slow TU (§17.2.1,
built per §8.2.6). Retransmission of a 2xx is the TU's job (§13.3.1.4); in Accepted
the transaction only sends the copies the TU hands it (RFC 6026 §7.1).
"""

from __future__ import annotations

from typing import ClassVar, Final

from sipedge.sip.errors import ProtocolMisuse
from sipedge.sip.message import Request, Response, make_response
from sipedge.sip.transaction.events import Output, Send
from sipedge.sip.transaction.keys import Peer, TransactionKey
from sipedge.sip.transaction.machine import Act, Ev, State, Step, Table, Transaction
from sipedge.sip.transaction.timers import Timer, TimerConfig

S = State

# RFC 3261 §17.2.1, Figure 7 "INVITE server transaction", as replaced by RFC 6026 §8.7:
#
#   Proceeding: INVITE passed to TU; 100 sent if the TU won't in 200 ms.
#               INVITE: send last response.  101-199 from TU: send response.
#               Transport error: inform TU (RFC 6026: the state is kept).
#               2xx from TU: send response → Accepted.
#               300-699 from TU: send response → Completed (G, H started).
#   Completed:  INVITE or Timer G: send response (again), G = min(2G, T2).
#               ACK: → Confirmed (I started).  Timer H: inform TU (§17.2.1) → Terminated.
#               Transport error: inform TU → Terminated.
#   Confirmed:  ACK and INVITE absorbed.  Timer I: → Terminated.
#   Accepted:   INVITE absorbed.  ACK: to TU.  2xx from TU: send response.
#               Transport error: inform TU.  Timer L: → Terminated.
INVITE_SERVER: Final[Table] = {
    (S.PROCEEDING, Ev.START): (S.PROCEEDING, (Act.TO_TU, Act.START_TRYING)),
    (S.PROCEEDING, Timer.TRYING): (S.PROCEEDING, (Act.SEND_TRYING,)),
    (S.PROCEEDING, Ev.RECV_REQUEST): (S.PROCEEDING, (Act.RESEND_RESPONSE,)),
    (S.PROCEEDING, Ev.TU_1XX): (S.PROCEEDING, (Act.STOP_TRYING, Act.SEND_RESPONSE)),
    (S.PROCEEDING, Ev.TRANSPORT_ERROR): (S.PROCEEDING, (Act.TRANSPORT_FAILED,)),
    (S.PROCEEDING, Ev.TU_2XX): (S.ACCEPTED, (Act.SEND_RESPONSE, Act.START_L)),
    (S.PROCEEDING, Ev.TU_300_699): (
        S.COMPLETED,
        (Act.SEND_RESPONSE, Act.START_G, Act.START_H),
    ),
    (S.COMPLETED, Ev.RECV_REQUEST): (S.COMPLETED, (Act.RESEND_RESPONSE,)),
    (S.COMPLETED, Timer.G): (S.COMPLETED, (Act.RESEND_RESPONSE, Act.BACK_OFF)),
    (S.COMPLETED, Ev.RECV_ACK): (S.CONFIRMED, (Act.START_I,)),
    (S.COMPLETED, Timer.H): (S.TERMINATED, (Act.TIMEOUT,)),
    (S.COMPLETED, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.CONFIRMED, Ev.RECV_ACK): (S.CONFIRMED, ()),
    (S.CONFIRMED, Timer.I): (S.TERMINATED, ()),
    (S.ACCEPTED, Ev.RECV_REQUEST): (S.ACCEPTED, ()),
    (S.ACCEPTED, Ev.RECV_ACK): (S.ACCEPTED, (Act.TO_TU,)),
    (S.ACCEPTED, Ev.TU_2XX): (S.ACCEPTED, (Act.SEND_RESPONSE,)),
    (S.ACCEPTED, Ev.TRANSPORT_ERROR): (S.ACCEPTED, (Act.TRANSPORT_FAILED,)),
    (S.ACCEPTED, Timer.L): (S.TERMINATED, ()),
}
INVITE_SERVER_TIMERS: Final = {
    S.PROCEEDING: frozenset({Timer.TRYING}),
    S.COMPLETED: frozenset({Timer.G, Timer.H}),
    S.CONFIRMED: frozenset({Timer.I}),
    S.ACCEPTED: frozenset({Timer.L}),
}

# RFC 3261 §17.2.2, Figure 8 "non-INVITE server transaction":
#
#   Trying:     request passed to TU; its retransmissions are discarded.
#               1xx from TU: send response → Proceeding.
#               200-699 from TU: send response → Completed (J started).
#   Proceeding: request: send last response.  1xx from TU: send response.
#               200-699 from TU: send response → Completed.
#               Transport error: inform TU → Terminated.
#   Completed:  request: send response (again).  Transport error: inform TU → Terminated.
#               Timer J: → Terminated.
NON_INVITE_SERVER: Final[Table] = {
    (S.TRYING, Ev.START): (S.TRYING, (Act.TO_TU,)),
    (S.TRYING, Ev.RECV_REQUEST): (S.TRYING, ()),
    (S.TRYING, Ev.TU_1XX): (S.PROCEEDING, (Act.SEND_RESPONSE,)),
    (S.TRYING, Ev.TU_2XX): (S.COMPLETED, (Act.SEND_RESPONSE, Act.START_J)),
    (S.TRYING, Ev.TU_300_699): (S.COMPLETED, (Act.SEND_RESPONSE, Act.START_J)),
    (S.PROCEEDING, Ev.RECV_REQUEST): (S.PROCEEDING, (Act.RESEND_RESPONSE,)),
    (S.PROCEEDING, Ev.TU_1XX): (S.PROCEEDING, (Act.SEND_RESPONSE,)),
    (S.PROCEEDING, Ev.TU_2XX): (S.COMPLETED, (Act.SEND_RESPONSE, Act.START_J)),
    (S.PROCEEDING, Ev.TU_300_699): (S.COMPLETED, (Act.SEND_RESPONSE, Act.START_J)),
    (S.PROCEEDING, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.COMPLETED, Ev.RECV_REQUEST): (S.COMPLETED, (Act.RESEND_RESPONSE,)),
    (S.COMPLETED, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.COMPLETED, Timer.J): (S.TERMINATED, ()),
}
NON_INVITE_SERVER_TIMERS: Final = {S.COMPLETED: frozenset({Timer.J})}


def tu_event(status: int) -> Ev:
    """The input a response from the TU is to a server machine."""
    if not 100 <= status <= 699:
        raise ProtocolMisuse(f"status {status} is not a SIP response code (100-699)")
    if status < 200:
        return Ev.TU_1XX
    return Ev.TU_2XX if status < 300 else Ev.TU_300_699


def trying_response(request: Request) -> Response:
    """100 Trying for ``request`` (§8.2.6.1, §8.2.6.2): no To tag, Timestamp copied."""
    return make_response(request, 100, "Trying")


class ServerTransaction(Transaction):
    """What both server machines share: answering, and absorbing retransmissions."""

    def __init__(
        self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig
    ) -> None:
        super().__init__(key, request, peer, config)
        #: The response most recently sent, resent for a retransmitted request; dropped
        #: in a state that never resends it (``UNSENT``), once its To tag is kept.
        self.last_response: Response | None = None
        self._to_tag: str | None = None
        self._cseq_method = request.cseq.method

    #: States that never resend the last response: entering one keeps only its To tag.
    UNSENT: ClassVar[frozenset[State]] = frozenset()

    @property
    def to_tag(self) -> str | None:
        """The To tag of the last response sent: what an RFC 2543 ACK must carry."""
        return self._to_tag if self.last_response is None else self.last_response.to.tag

    def receive(self, request: Request, now: float) -> list[Output]:
        """A retransmission of the request, or its ACK, matched by the layer (§17.2.3)."""
        event = Ev.RECV_ACK if request.method == "ACK" else Ev.RECV_REQUEST
        return self._fire(event, Step(now, request))

    def respond(self, response: Response, now: float) -> list[Output]:
        """Send the TU's response; one the machine does not allow is our own bug."""
        event = tu_event(response.status)
        if (self.state, event) not in self.TABLE:
            raise ProtocolMisuse(
                f"cannot send {response.status} in state {self.state.value} of {self!r}"
            )
        if response.cseq.method != self._cseq_method:
            raise ProtocolMisuse(f"a response to {response.cseq.method} sent on {self!r}")
        return self._fire(event, Step(now, response))

    def _perform(self, act: Act, step: Step, out: list[Output]) -> None:
        if act is Act.SEND_RESPONSE:
            assert isinstance(step.message, Response)
            self._send(step.message, out)
        elif act is Act.RESEND_RESPONSE:
            if self.last_response is not None:
                out.append(Send(self.last_response, self.peer, self.key))
        elif act is Act.SEND_TRYING:
            self._send(trying_response(self.request), out)
        else:
            super()._perform(act, step, out)

    def _release(self, state: State) -> None:
        super()._release(state)
        if state in self.UNSENT and self.last_response is not None:
            self._to_tag = self.last_response.to.tag
            self.last_response = None

    def _send(self, response: Response, out: list[Output]) -> None:
        self.last_response = response
        out.append(Send(response, self.peer, self.key))


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026 §7.1: Proceeding, Completed, Confirmed, Accepted."""

    TABLE = INVITE_SERVER
    TIMERS = INVITE_SERVER_TIMERS
    INITIAL = S.PROCEEDING
    # Only Proceeding sends a 100 Trying built from the INVITE; only Completed resends.
    SPENT = frozenset({S.COMPLETED, S.CONFIRMED, S.ACCEPTED, S.TERMINATED})
    UNSENT = frozenset({S.CONFIRMED, S.ACCEPTED, S.TERMINATED})


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2: Trying, Proceeding, Completed."""

    TABLE = NON_INVITE_SERVER
    TIMERS = NON_INVITE_SERVER_TIMERS
    INITIAL = S.TRYING
    SPENT = frozenset({S.COMPLETED, S.TERMINATED})
