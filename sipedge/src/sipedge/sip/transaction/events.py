"""What the transaction layer hands out: messages to send and events for the TU.

Every call into a transaction or the layer returns a list of these, in the order they
happened (RFC 3261 §17: "send", "pass to TU", "inform TU"). The adapter performs the
:class:`Send` items; everything else is for the transaction user (the UA core, the
B2BUA or a proxy core).
"""

from __future__ import annotations

from dataclasses import dataclass

from sipedge.sip.message import Request, Response
from sipedge.sip.transaction.keys import Peer, TransactionKey
from sipedge.sip.transaction.timers import Timer


@dataclass(frozen=True, slots=True)
class Send:
    """Put ``message`` on the wire towards ``destination`` (a hint; §18 decides)."""

    message: Request | Response
    destination: Peer
    key: TransactionKey


@dataclass(frozen=True, slots=True)
class PassToTU:
    """A message for the TU: a new request, a response, or an ACK to a 2xx (RFC 6026)."""

    message: Request | Response
    key: TransactionKey


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A new CANCEL (§9.2). Answer it on ``key``; ``target`` is the INVITE it cancels.

    ``target is None``: nothing matches, answer 481. Otherwise answer the CANCEL 200,
    and the INVITE 487 if it has no final response yet.
    """

    request: Request
    key: TransactionKey
    target: TransactionKey | None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B or F (no final response: the TU answers itself 408) or H (no ACK came)."""

    key: TransactionKey
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """The transport reported that a message of this transaction could not be sent."""

    key: TransactionKey


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction reached Terminated and is gone; nothing more will match it."""

    key: TransactionKey


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response no client transaction matches (§17.1.3).

    RFC 6026 updates §18.1.2: only a stateless proxy forwards it; every other element
    discards it (2xx retransmissions now match the Accepted client transaction).
    """

    response: Response


@dataclass(frozen=True, slots=True)
class StrayAck:
    """An ACK no server transaction matches: normally the ACK of a 2xx, the dialog's (§13.3)."""

    request: Request


Output = (
    Send
    | PassToTU
    | CancelReceived
    | TimedOut
    | TransportFailure
    | Terminated
    | StrayResponse
    | StrayAck
)
