"""The transaction layer: many transactions, messages matched to them, one timer.

RFC 3261 §17.1.3 (responses to client transactions), §17.2.3 (requests to server
transactions, with the RFC 2543 fallback), §9.2 (which INVITE a CANCEL cancels) and
RFC 6026 §7 (what matches nothing goes to the core). The layer creates a server
transaction for every new request but ACK, removes a transaction the moment it
reaches Terminated, and keeps a heap of deadlines so :meth:`next_deadline` costs
O(log n) however many transactions run. Branch ids come from the TU or from an
injected callable, never from a random source of our own.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from sipedge.sip.errors import ProtocolMisuse
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction.client import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from sipedge.sip.transaction.events import (
    CancelReceived,
    Output,
    PassToTU,
    StrayAck,
    StrayResponse,
)
from sipedge.sip.transaction.keys import (
    MAGIC_COOKIE,
    ClientKey,
    Peer,
    ServerKey,
    TransactionKey,
    client_key_of,
    legacy_key_of,
    server_key_of,
)
from sipedge.sip.transaction.machine import State, Transaction
from sipedge.sip.transaction.server import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from sipedge.sip.transaction.timers import TimerConfig


class TransactionLayer:
    """Every transaction of one SIP element, keyed as §17.1.3 and §17.2.3 say.

    ``branches`` returns a fresh branch id (with or without the magic cookie) when the
    TU sends a request whose top Via has none; tests inject a counter.
    """

    def __init__(
        self,
        config: TimerConfig | None = None,
        *,
        branches: Callable[[], str] | None = None,
    ) -> None:
        self.config = config or TimerConfig()
        self._branches = branches
        self._transactions: dict[TransactionKey, Transaction] = {}
        self._scheduled: dict[TransactionKey, float] = {}
        self._heap: list[tuple[float, int, TransactionKey]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._transactions)

    def get(self, key: TransactionKey) -> Transaction | None:
        return self._transactions.get(key)

    def state(self, key: TransactionKey) -> State | None:
        """The state of a live transaction; ``None`` once it is gone (or never was)."""
        transaction = self._transactions.get(key)
        return None if transaction is None else transaction.state

    def new_branch(self) -> str:
        """A branch for a new Via (RFC 3261 §8.1.1.7), from the injected source."""
        if self._branches is None:
            raise ProtocolMisuse("no branch source was given to the transaction layer")
        token = self._branches()
        return token if token.startswith(MAGIC_COOKIE) else MAGIC_COOKIE + token

    # -- from the TU ----------------------------------------------------------------
    def send_request(
        self, request: Request, destination: Peer, now: float
    ) -> tuple[ClientKey, list[Output]]:
        """Start a client transaction for ``request`` (any method but ACK).

        A top Via without a branch gets one from :meth:`new_branch`: the request is
        changed in place (its Via lines are rewritten as one line).
        """
        if request.method == "ACK" or request.method != request.cseq.method:
            raise ProtocolMisuse(f"no client transaction sends {request!r} (§17.1, §8.1.1.5)")
        key = ClientKey(self._branch_of(request), request.method)
        if key in self._transactions:
            raise ProtocolMisuse(f"a client transaction {key} already exists")
        kind = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        transaction = kind(key, request, destination, self.config)
        self._transactions[key] = transaction
        return key, self._settle(transaction, transaction.start(now))

    def respond(self, key: TransactionKey, response: Response, now: float) -> list[Output]:
        """Send the TU's response on the server transaction ``key``."""
        transaction = self._transactions.get(key)
        if not isinstance(transaction, ServerTransaction):
            raise ProtocolMisuse(f"no server transaction {key} to send {response!r} on")
        return self._settle(transaction, transaction.respond(response, now))

    # -- from the transport -----------------------------------------------------------
    def receive(self, message: Request | Response, source: Peer, now: float) -> list[Output]:
        """Match a parsed message to its transaction, creating one for a new request.

        A malformed Via, CSeq, From, To or Call-ID raises
        :class:`~sipedge.sip.errors.ParseError`: the adapter answers a request with its
        status and drops a response.
        """
        if isinstance(message, Response):
            return self._receive_response(message, now)
        if message.method == "ACK":
            return self._receive_ack(message, now)
        key = server_key_of(message)
        transaction = self._transactions.get(key)
        if isinstance(transaction, ServerTransaction):
            return self._settle(transaction, transaction.receive(message, now))
        return self._new_server_transaction(key, message, source, now)

    def transport_error(self, key: TransactionKey, now: float) -> list[Output]:
        """The adapter could not send a message of ``key``; ignored once it is gone."""
        transaction = self._transactions.get(key)
        if transaction is None:
            return []
        return self._settle(transaction, transaction.transport_error(now))

    # -- time ---------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """The earliest instant some transaction needs :meth:`handle_timer`."""
        while self._heap:
            deadline, _, key = self._heap[0]
            if self._scheduled.get(key) == deadline:
                return deadline
            heapq.heappop(self._heap)  # stale: that transaction re-armed or ended
        return None

    def handle_timer(self, now: float) -> list[Output]:
        """Fire every timer due at ``now``, transaction by transaction, earliest first."""
        out: list[Output] = []
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._scheduled[key]
            transaction = self._transactions[key]
            out += self._settle(transaction, transaction.handle_timer(now))
        return out

    # -- matching -------------------------------------------------------------------
    def _receive_response(self, response: Response, now: float) -> list[Output]:
        key = client_key_of(response)
        transaction = None if key is None else self._transactions.get(key)
        if not isinstance(transaction, ClientTransaction):
            return [StrayResponse(response)]
        return self._settle(transaction, transaction.receive(response, now))

    def _receive_ack(self, ack: Request, now: float) -> list[Output]:
        transaction = self._invite_acked_by(ack)
        if transaction is None:
            return [StrayAck(ack)]
        return self._settle(transaction, transaction.receive(ack, now))

    def _invite_acked_by(self, ack: Request) -> InviteServerTransaction | None:
        """§17.2.3: the INVITE transaction an ACK belongs to (not the ACK of a 2xx)."""
        key = server_key_of(ack, "INVITE")
        if isinstance(key, ServerKey):
            found = self._transactions.get(key)
            return found if isinstance(found, InviteServerTransaction) else None
        # RFC 2543: the ACK carries the To tag of our response; the INVITE had none,
        # or (inside a dialog) that same tag.
        tag = ack.to.tag
        for invite_tag in (None, tag):
            found = self._transactions.get(legacy_key_of(ack, "INVITE", invite_tag))
            if isinstance(found, InviteServerTransaction) and found.to_tag == tag:
                return found
        return None

    def _cancel_target(self, cancel: Request) -> TransactionKey | None:
        """§9.2: the INVITE server transaction a CANCEL names (same key, method INVITE).

        Only INVITEs are looked for: a CANCEL of a non-INVITE has no effect (§9.1).
        """
        key = server_key_of(cancel, "INVITE")
        found = self._transactions.get(key)
        return key if isinstance(found, InviteServerTransaction) else None

    def _new_server_transaction(
        self, key: TransactionKey, request: Request, source: Peer, now: float
    ) -> list[Output]:
        kind = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        transaction = kind(key, request, source, self.config)
        self._transactions[key] = transaction
        out = transaction.start(now)
        if request.method == "CANCEL":
            target = self._cancel_target(request)
            out = [
                CancelReceived(request, key, target) if isinstance(o, PassToTU) else o for o in out
            ]
        return self._settle(transaction, out)

    # -- bookkeeping ------------------------------------------------------------------
    def _branch_of(self, request: Request) -> str:
        branch = request.branch
        if branch is None:
            branch = self.new_branch()
            vias = request.headers.values("Via")
            vias[0] = f"{vias[0]};branch={branch}"
            request.headers.set("Via", ", ".join(vias))
        elif not branch.startswith(MAGIC_COOKIE):
            raise ProtocolMisuse(f"branch {branch!r} lacks the magic cookie (§8.1.1.7)")
        return branch

    def _settle(self, transaction: Transaction, out: list[Output]) -> list[Output]:
        """Forget a terminated transaction, or file its next deadline; pass ``out`` on."""
        key = transaction.key
        deadline = None if transaction.terminated else transaction.next_deadline()
        if transaction.terminated and self._transactions.get(key) is transaction:
            del self._transactions[key]
        if deadline is None:
            self._scheduled.pop(key, None)
        elif self._scheduled.get(key) != deadline:
            self._scheduled[key] = deadline
            heapq.heappush(self._heap, (deadline, next(self._order), key))
        return out
