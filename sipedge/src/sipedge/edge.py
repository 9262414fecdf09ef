"""One edge process: sockets in, the transaction layer, the transaction user, sockets out.

The glue between the asyncio transports and the sans-IO core. Every inbound message
passes the pipeline of STYLE habit 8: framing and parsing (in the transport), the
sanity stage (``check_request``: a stateless error answer), NAT stamping (RFC 3581),
then the transaction layer, whose outputs are performed here: :class:`Send` goes to
the wire, requests and responses go to the transaction user (:mod:`sipedge.ua`), and
the layer's next deadline re-arms a single loop timer. Time for transactions is the
loop's monotonic clock; time written to shared stores is wall-clock seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

from sipedge.adapters.transport import Inbound, Transports, WorkerGroup
from sipedge.config import EdgeConfig, Listen
from sipedge.metrics import Metrics
from sipedge.nat import response_destination, stamp_received
from sipedge.sip.errors import ParseError
from sipedge.sip.message import Headers, Request, Response, make_response
from sipedge.sip.parser import HeadError, check_request
from sipedge.sip.transaction import (
    CancelReceived,
    ClientKey,
    Output,
    PassToTU,
    Peer,
    Send,
    StrayAck,
    StrayResponse,
    Terminated,
    TimedOut,
    TransactionKey,
    TransactionLayer,
    TransportFailure,
)

log = logging.getLogger("sipedge.edge")

#: Option tags we implement (RFC 3261 §8.2.2.3); anything else in Require gets 420.
SUPPORTED = frozenset({"timer", "replaces", "outbound", "path"})

ClientEvent = Response | TimedOut | TransportFailure
ClientHandler = Callable[[ClientEvent], None]


class Edge:
    """Owns the transports, the transaction layer and its timer for one process."""

    def __init__(self, config: EdgeConfig, metrics: Metrics, worker: int = 0) -> None:
        self.config = config
        self.metrics = metrics
        self.group: WorkerGroup | None = None
        if config.workers > 1 and config.worker_group is not None:
            self.group = WorkerGroup(config.worker_group, worker, config.workers)
        # Our branches name this worker, so that a sibling can hand its responses over.
        prefix = self.group.branch_prefix() if self.group is not None else ""
        self.layer = TransactionLayer(config.timers, branches=lambda: prefix + secrets.token_hex(8))
        self.transports = Transports(self._inbound)
        self.tu: TransactionUser | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._handlers: dict[TransactionKey, ClientHandler] = {}
        self._sources: dict[TransactionKey, Listen] = {}
        self.accepting = True
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- clocks ------------------------------------------------------------------------
    def now(self) -> float:
        """Monotonic seconds for transaction timers (the loop's clock)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    @staticmethod
    def wall() -> float:
        """Wall-clock seconds for what other processes read (bindings, nonces, dialogs)."""
        return time.time()

    # -- inbound -----------------------------------------------------------------------
    def _inbound(self, inbound: Inbound) -> None:
        """Never lets an exception out: a bad packet must not take the process down."""
        try:
            self._route_inbound(inbound)
        except Exception:
            log.exception("failed on a message from %s", inbound.source)

    def _route_inbound(self, inbound: Inbound) -> None:
        item = inbound.item
        if isinstance(item, ParseError):
            self._parse_error(item, inbound)
            return
        if isinstance(item, Request):
            self.metrics.request_in(item.method)
            try:
                stamp_received(item, inbound.source)  # first: even a refusal goes back there
                check_request(item, SUPPORTED)
                if self.tu is not None and self.tu.screen(item, inbound):
                    return  # answered statelessly, no transaction (RFC 3261 §8.2.7)
            except ParseError as exc:
                self._reply_stateless(item.headers, exc, inbound)
                return
        else:
            self.metrics.response_in(item.status)
        try:
            outputs = self.layer.receive(item, inbound.source, self.now())
        except ParseError as exc:
            if isinstance(item, Request):
                self._reply_stateless(item.headers, exc, inbound)
            return
        self._perform(outputs, inbound)

    def _parse_error(self, error: ParseError, inbound: Inbound) -> None:
        self.metrics.parse_error()
        if isinstance(error, HeadError) and error.is_request:
            self._reply_stateless(error.headers, error, inbound)

    def _reply_stateless(self, headers: Headers, error: ParseError, inbound: Inbound) -> None:
        """Answer a request we will not process, from whatever headers it had (§8.2)."""
        probe = Request("OPTIONS", "sip:invalid", headers)
        cseqs = probe.headers.lines("CSeq")
        if not cseqs or not probe.headers.lines("Via"):
            return
        if any(line.split()[-1:] == ["ACK"] for line in cseqs):
            return  # never answer an ACK
        try:
            try:
                response = make_response(probe, error.status, error.reason, to_tag=_tag())
            except ParseError:  # To itself is what is malformed: copy it as it came
                response = make_response(probe, error.status, error.reason)
            for name, value in error.reply_headers:
                response.headers.add(name, value)
        except ParseError:
            return  # not even CSeq readable: drop (RFC 3261 §18.3)
        self.reply_stateless(response, inbound)

    def reply_stateless(self, response: Response, inbound: Inbound) -> None:
        """Send a response to ``inbound``'s request without a server transaction: where
        §18.2.2 says, with ``received`` being the packet's source (RFC 3581)."""
        destination = inbound.source  # streams: the connection; a broken Via: the sender
        if destination.transport == "UDP":
            with contextlib.suppress(ParseError):
                via = response.top_via
                port = destination.port if via.wants_rport else (via.port or 5060)
                destination = Peer("UDP", destination.host, port)
        self._write(response, destination, inbound.listener)

    # -- outputs of the layer --------------------------------------------------------------
    def _perform(self, outputs: list[Output], inbound: Inbound | None = None) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self._send(output)
            elif isinstance(output, PassToTU):
                self._to_tu(output, inbound)
            elif isinstance(output, CancelReceived):
                assert self.tu is not None
                self.tu.on_cancel(output)
            elif isinstance(output, StrayAck):
                assert self.tu is not None
                self.tu.on_ack(output.request, inbound)
            elif isinstance(output, TimedOut | TransportFailure):
                self._client_event(output.key, output)
            elif isinstance(output, Terminated):
                self._handlers.pop(output.key, None)
                self._sources.pop(output.key, None)
            elif isinstance(output, StrayResponse):
                self.metrics.stray_response()
        self._arm_timer()

    def _to_tu(self, output: PassToTU, inbound: Inbound | None) -> None:
        message = output.message
        if isinstance(message, Response):
            self._client_event(output.key, message)
            return
        assert self.tu is not None
        assert inbound is not None
        self._sources[output.key] = inbound.listener
        self.metrics.transaction_started()
        self.tu.on_request(message, output.key, inbound)

    def _client_event(self, key: TransactionKey, event: ClientEvent) -> None:
        handler = self._handlers.get(key)
        if handler is not None:
            handler(event)

    def _send(self, output: Send) -> None:
        message = output.message
        destination = output.destination
        if isinstance(message, Response) and destination.transport == "UDP":
            with contextlib.suppress(ParseError):
                destination = response_destination(message, "UDP")
        listener = self._sources.get(output.key)
        if not self._write(message, destination, listener):
            self._perform(self.layer.transport_error(output.key, self.now()))

    def _write(self, message: Request | Response, peer: Peer, listener: Listen | None) -> bool:
        if isinstance(message, Response):
            self.metrics.response_out(message.status)
        else:
            self.metrics.request_out(message.method)
        return self.transports.send(message.to_bytes(), peer, listener)

    def _arm_timer(self) -> None:
        """One loop timer for the layer's earliest deadline (uvloop's handles have no
        ``when()``: the deadline it was armed for is kept beside it)."""
        deadline = self.layer.next_deadline()
        if self._timer is not None:
            if deadline == self._timer_at:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._fire)
            self._timer_at = deadline

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self._perform(self.layer.handle_timer(self.now()))

    # -- for the transaction user ----------------------------------------------------------
    def respond(self, key: TransactionKey, response: Response) -> None:
        """Send the TU's response on a server transaction (gone: ignored)."""
        if self.layer.get(key) is None:
            return
        self._perform(self.layer.respond(key, response, self.now()))

    def request(self, request: Request, destination: Peer, handler: ClientHandler) -> ClientKey:
        """Start a client transaction; ``handler`` gets its responses and failures."""
        key, outputs = self.layer.send_request(request, destination, self.now())
        self._handlers[key] = handler
        self._perform(outputs)
        return key

    def rehandle(self, key: ClientKey, handler: ClientHandler) -> None:
        """Give a running client transaction a new handler (gone already: ignored), so
        that the state an old one closed over need not outlive what it was for."""
        if key in self._handlers:
            self._handlers[key] = handler

    def send_stateless(self, message: Request | Response, destination: Peer) -> None:
        """An ACK for a 2xx or a retransmitted 2xx: no transaction (RFC 3261 §13.3.1.4)."""
        self._write(message, destination, None)

    def via_for(self, transport: str = "UDP") -> str:
        """A top Via for a request we originate, with a fresh branch (§8.1.1.7)."""
        port = self.config.listens[0].port  # the shared port: see WorkerGroup
        host = self.config.advertised_host
        shown = f"[{host}]" if ":" in host else host
        return f"SIP/2.0/{transport} {shown}:{port};branch={self.layer.new_branch()};rport"

    def contact(self, user: str, transport: str = "UDP") -> str:
        """A Contact (in angle brackets) of ours: ``user`` at our advertised address and
        shared port, with the transport it is reached over."""
        port = self.config.listens[0].port
        host = self.config.advertised_host
        shown = f"[{host}]" if ":" in host else host
        return f"<sip:{user}@{shown}:{port};transport={transport.lower()}>"

    async def connect(self, destination: Peer) -> None:
        """Open a TCP connection for requests to ``destination`` (UDP: nothing to do);
        OSError when it cannot be opened."""
        await self.transports.connect(destination)

    async def start(self) -> None:
        await self.transports.start(
            self.config.listens, reuse_port=self.config.workers > 1, group=self.group
        )

    async def stop(self) -> None:
        """Stop taking new work, give transactions time to finish, then close sockets."""
        self.accepting = False
        deadline = self.now() + self.config.drain_s
        while len(self.layer) and self.now() < deadline:
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
        await self.transports.close()


class TransactionUser:
    """What the edge hands requests to (implemented by :class:`sipedge.ua.UserAgent`)."""

    def screen(self, request: Request, inbound: Inbound) -> bool:
        """Answer ``request`` statelessly before any transaction exists, if it can be
        (True: done, the transaction layer never sees it). Runs on every request that
        passed the sanity stage, so it must be cheap and must not await."""
        return False

    def on_request(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        raise NotImplementedError

    def on_cancel(self, event: CancelReceived) -> None:
        raise NotImplementedError

    def on_ack(self, ack: Request, inbound: Inbound | None) -> None:
        raise NotImplementedError


def _tag() -> str:
    return secrets.token_hex(5)
