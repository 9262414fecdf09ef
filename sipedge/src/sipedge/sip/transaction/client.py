"""Client transactions: RFC 3261 §17.1.1 (INVITE, with RFC 6026) and §17.1.2 (non-INVITE).

Owns the two client state machines, written as tables beside the figures they encode,
and the ACK the INVITE client transaction builds for a 300–699 response (§17.1.1.3).
The ACK of a 2xx is not the transaction's: it belongs to the TU (§13.2.2.4).
"""

from __future__ import annotations

from typing import Final

from sipedge.sip.message import Headers, Request, Response
from sipedge.sip.transaction.events import Output, Send
from sipedge.sip.transaction.keys import Peer, TransactionKey
from sipedge.sip.transaction.machine import Act, Ev, State, Step, Table, Transaction
from sipedge.sip.transaction.timers import Timer, TimerConfig

S = State

# RFC 3261 §17.1.1.2, Figure 5 "INVITE client transaction", as replaced by RFC 6026 §8.4:
#
#   Calling:    INVITE sent, A and B started. Timer A: resend, double A.
#               Timer B or transport error: inform TU → Terminated.
#               1xx: to TU → Proceeding.  2xx: to TU → Accepted.
#               300-699: ACK sent, to TU → Completed.
#   Proceeding: 1xx: to TU.  2xx: to TU → Accepted.  300-699: ACK sent, to TU → Completed.
#   Completed:  300-699: ACK sent (again).  Transport error: inform TU → Terminated.
#               Timer D: → Terminated.
#   Accepted:   2xx: to TU (the TU, not the transaction, ACKs it).  Timer M: → Terminated.
INVITE_CLIENT: Final[Table] = {
    (S.CALLING, Ev.START): (S.CALLING, (Act.SEND_REQUEST, Act.START_A, Act.START_B)),
    (S.CALLING, Timer.A): (S.CALLING, (Act.SEND_REQUEST, Act.BACK_OFF)),
    (S.CALLING, Timer.B): (S.TERMINATED, (Act.TIMEOUT,)),
    (S.CALLING, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.CALLING, Ev.RECV_1XX): (S.PROCEEDING, (Act.TO_TU,)),
    (S.CALLING, Ev.RECV_2XX): (S.ACCEPTED, (Act.TO_TU, Act.START_M)),
    (S.CALLING, Ev.RECV_300_699): (S.COMPLETED, (Act.SEND_ACK, Act.TO_TU, Act.START_D)),
    (S.PROCEEDING, Ev.RECV_1XX): (S.PROCEEDING, (Act.TO_TU,)),
    (S.PROCEEDING, Ev.RECV_2XX): (S.ACCEPTED, (Act.TO_TU, Act.START_M)),
    (S.PROCEEDING, Ev.RECV_300_699): (S.COMPLETED, (Act.SEND_ACK, Act.TO_TU, Act.START_D)),
    (S.COMPLETED, Ev.RECV_300_699): (S.COMPLETED, (Act.SEND_ACK,)),
    (S.COMPLETED, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.COMPLETED, Timer.D): (S.TERMINATED, ()),
    (S.ACCEPTED, Ev.RECV_2XX): (S.ACCEPTED, (Act.TO_TU,)),
    (S.ACCEPTED, Timer.M): (S.TERMINATED, ()),
}
INVITE_CLIENT_TIMERS: Final = {
    S.CALLING: frozenset({Timer.A, Timer.B}),
    S.COMPLETED: frozenset({Timer.D}),
    S.ACCEPTED: frozenset({Timer.M}),
}

# RFC 3261 §17.1.2.2, Figure 6 "non-INVITE client transaction":
#
#   Trying:     request sent, E and F started. Timer E: resend, E = min(2E, T2).
#               Timer F or transport error: inform TU → Terminated.
#               1xx: to TU → Proceeding.  200-699: to TU → Completed.
#   Proceeding: Timer E: resend, E = T2.  1xx: to TU.  200-699: to TU → Completed.
#               Timer F or transport error: inform TU → Terminated.
#   Completed:  Timer K: → Terminated (response retransmissions are absorbed).
NON_INVITE_CLIENT: Final[Table] = {
    (S.TRYING, Ev.START): (S.TRYING, (Act.SEND_REQUEST, Act.START_E, Act.START_F)),
    (S.TRYING, Timer.E): (S.TRYING, (Act.SEND_REQUEST, Act.BACK_OFF)),
    (S.TRYING, Timer.F): (S.TERMINATED, (Act.TIMEOUT,)),
    (S.TRYING, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.TRYING, Ev.RECV_1XX): (S.PROCEEDING, (Act.TO_TU,)),
    (S.TRYING, Ev.RECV_2XX): (S.COMPLETED, (Act.TO_TU, Act.START_K)),
    (S.TRYING, Ev.RECV_300_699): (S.COMPLETED, (Act.TO_TU, Act.START_K)),
    (S.PROCEEDING, Timer.E): (S.PROCEEDING, (Act.SEND_REQUEST, Act.E_AT_T2)),
    (S.PROCEEDING, Timer.F): (S.TERMINATED, (Act.TIMEOUT,)),
    (S.PROCEEDING, Ev.TRANSPORT_ERROR): (S.TERMINATED, (Act.TRANSPORT_FAILED,)),
    (S.PROCEEDING, Ev.RECV_1XX): (S.PROCEEDING, (Act.TO_TU,)),
    (S.PROCEEDING, Ev.RECV_2XX): (S.COMPLETED, (Act.TO_TU, Act.START_K)),
    (S.PROCEEDING, Ev.RECV_300_699): (S.COMPLETED, (Act.TO_TU, Act.START_K)),
    (S.COMPLETED, Timer.K): (S.TERMINATED, ()),
}
NON_INVITE_CLIENT_TIMERS: Final = {
    S.TRYING: frozenset({Timer.E, Timer.F}),
    S.PROCEEDING: frozenset({Timer.E, Timer.F}),
    S.COMPLETED: frozenset({Timer.K}),
}


def response_event(status: int) -> Ev:
    """The input a received response is to a client machine."""
    if status < 200:
        return Ev.RECV_1XX
    return Ev.RECV_2XX if status < 300 else Ev.RECV_300_699


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK of a 300–699 response, built by the transaction (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID and From of the INVITE; the To of the response (with its tag);
    the INVITE's top Via alone; its Route header fields; CSeq number of the INVITE with
    method ACK; no body.
    """
    headers = Headers([("Via", invite.headers.values("Via")[0])])
    for route in invite.headers.lines("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.single("From"))
    headers.add("To", response.headers.single("To"))
    headers.add("Call-ID", invite.headers.single("Call-ID"))
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    headers.add("Content-Length", "0")
    return Request("ACK", invite.uri, headers)


class ClientTransaction(Transaction):
    """What both client machines share: sending the request, receiving responses."""

    def receive(self, response: Response, now: float) -> list[Output]:
        """A response the layer matched to this transaction (§17.1.3)."""
        return self._fire(response_event(response.status), Step(now, response))

    def _perform(self, act: Act, step: Step, out: list[Output]) -> None:
        if act is Act.SEND_REQUEST:
            out.append(Send(self.request, self.peer, self.key))
        else:
            super()._perform(act, step, out)


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026 §7.2: Calling, Proceeding, Completed, Accepted."""

    TABLE = INVITE_CLIENT
    TIMERS = INVITE_CLIENT_TIMERS
    INITIAL = S.CALLING
    # Completed resends the ACK, built on the way in; Accepted passes 2xx to the TU.
    SPENT = frozenset({S.COMPLETED, S.ACCEPTED, S.TERMINATED})

    def __init__(
        self, key: TransactionKey, request: Request, peer: Peer, config: TimerConfig
    ) -> None:
        super().__init__(key, request, peer, config)
        #: The ACK of the non-2xx final response, once built; resent for its retransmissions.
        self.ack: Request | None = None

    def _perform(self, act: Act, step: Step, out: list[Output]) -> None:
        if act is Act.SEND_ACK:
            if self.ack is None:
                assert isinstance(step.message, Response)
                self.ack = build_ack(self.request, step.message)
            out.append(Send(self.ack, self.peer, self.key))
        else:
            super()._perform(act, step, out)


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2: Trying, Proceeding, Completed."""

    TABLE = NON_INVITE_CLIENT
    TIMERS = NON_INVITE_CLIENT_TIMERS
    INITIAL = S.TRYING
    SPENT = frozenset({S.COMPLETED, S.TERMINATED})
