"""The SIP transaction layer, sans-IO: RFC 3261 §17 with RFC 6026's Accepted states.

Owns the four transaction state machines (INVITE and non-INVITE, client and server),
their timers (Table 4, RFC 6026 Timers L and M), and the layer that matches messages
to transactions (§17.1.3, §17.2.3, §9.2). Messages, TU requests and ``now`` go in;
:class:`Send` items, events for the TU and the next deadline come out.

Modules: :mod:`.timers` (Table 4), :mod:`.keys` (transaction identity), :mod:`.events`
(what comes out), :mod:`.machine` (the table-driven engine), :mod:`.client` and
:mod:`.server` (the four tables), :mod:`.layer` (matching and the shared deadline).
"""

from sipedge.sip.transaction.client import (
    InviteClientTransaction,
    NonInviteClientTransaction,
    build_ack,
)
from sipedge.sip.transaction.events import (
    CancelReceived,
    Output,
    PassToTU,
    Send,
    StrayAck,
    StrayResponse,
    Terminated,
    TimedOut,
    TransportFailure,
)
from sipedge.sip.transaction.keys import (
    MAGIC_COOKIE,
    ClientKey,
    LegacyKey,
    Peer,
    ServerKey,
    TransactionKey,
)
from sipedge.sip.transaction.layer import TransactionLayer
from sipedge.sip.transaction.machine import State, Transaction
from sipedge.sip.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    trying_response,
)
from sipedge.sip.transaction.timers import Timer, TimerConfig

__all__ = [
    "MAGIC_COOKIE",
    "CancelReceived",
    "ClientKey",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "LegacyKey",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "Output",
    "PassToTU",
    "Peer",
    "Send",
    "ServerKey",
    "State",
    "StrayAck",
    "StrayResponse",
    "Terminated",
    "TimedOut",
    "Timer",
    "TimerConfig",
    "Transaction",
    "TransactionKey",
    "TransactionLayer",
    "TransportFailure",
    "build_ack",
    "trying_response",
]
