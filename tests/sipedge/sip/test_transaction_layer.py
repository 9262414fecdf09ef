"""The transaction layer: matching (RFC 3261 §17.1.3, §17.2.3, §9.2) and a lossy pair.

Responses find their client transaction by branch and CSeq method; requests find their
server transaction by branch, sent-by and method, or by the RFC 2543 fields when the
branch lacks the magic cookie (RFC 4475's inv2543 message, read as bytes). At the end a
client layer and a server layer talk through a fake network that loses chosen
messages, in stepped time, and still finish the exchange by retransmission.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sipedge.sip.errors import ParseError, ProtocolMisuse
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction import (
    CancelReceived,
    ClientKey,
    LegacyKey,
    Output,
    PassToTU,
    Peer,
    Send,
    ServerKey,
    State,
    StrayAck,
    StrayResponse,
    Terminated,
    TimedOut,
    Timer,
    TransactionKey,
    TransactionLayer,
    build_ack,
)
from sipedge.sip.uri import parse_uri

DATA = Path(__file__).resolve().parents[2] / "data" / "sip-torture"
UAS = Peer("UDP", "192.0.2.2", 5060)
UAC = Peer("UDP", "192.0.2.1", 5060)
BRANCH = "z9hG4bK-1"


def request(method: str = "INVITE", branch: str = BRANCH, host: str = "a.example.com") -> Request:
    return Request(
        method,
        "sip:bob@example.com",
        [
            ("Via", f"SIP/2.0/UDP {host};branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "call-1@a.example.com"),
            ("CSeq", f"1 {method}"),
        ],
    )


def cancel_for(invite: Request) -> Request:
    """RFC 3261 §9.1: the INVITE's Request-URI, top Via, From, To, Call-ID, CSeq number."""
    return Request(
        "CANCEL",
        invite.uri,
        [
            ("Via", invite.headers.values("Via")[0]),
            ("Max-Forwards", "70"),
            *((name, invite.headers.single(name)) for name in ("From", "To", "Call-ID")),
            ("CSeq", f"{invite.cseq.number} CANCEL"),
        ],
    )


def answer(req: Request, status: int, reason: str, tag: str | None = "b2") -> Response:
    """The response a UAS builds (§8.2.6): Vias, From, Call-ID, CSeq copied, To tagged."""
    to = req.headers.single("To") + ("" if tag is None else f";tag={tag}")
    headers = [("Via", via) for via in req.headers.lines("Via")]
    headers += [("From", req.headers.single("From")), ("To", to)]
    headers += [("Call-ID", req.call_id), ("CSeq", str(req.cseq))]
    return Response(status, reason, headers)


def new_server_transaction(layer: TransactionLayer, req: Request) -> TransactionKey:
    (event,) = layer.receive(req, UAC, 0.0)
    assert isinstance(event, PassToTU)
    assert event.message is req
    return event.key


# -- responses: §17.1.3 ---------------------------------------------------------------


def test_responses_match_by_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_key, _ = layer.send_request(invite, UAS, 0.0)
    cancel_key, _ = layer.send_request(cancel_for(invite), UAS, 1.0)
    assert (invite_key, cancel_key) == (ClientKey(BRANCH, "INVITE"), ClientKey(BRANCH, "CANCEL"))
    ok = answer(cancel_for(invite), 200, "OK")
    assert layer.receive(ok, UAS, 1.1) == [PassToTU(ok, cancel_key)]
    terminated = answer(invite, 487, "Request Terminated")
    ack, to_tu = layer.receive(terminated, UAS, 1.2)
    assert isinstance(ack, Send)
    assert isinstance(ack.message, Request)
    assert ack.message.method == "ACK"
    assert to_tu == PassToTU(terminated, invite_key)


def test_a_response_nothing_matches_is_stray() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), UAS, 0.0)
    other_branch = answer(request(branch="z9hG4bK-2"), 200, "OK")
    other_method = answer(request("BYE"), 200, "OK")
    no_branch = Response(200, "OK", [("Via", "SIP/2.0/UDP a.example.com"), ("CSeq", "1 INVITE")])
    for response in (other_branch, other_method, no_branch):
        assert layer.receive(response, UAS, 0.1) == [StrayResponse(response)]


# -- requests: §17.2.3 ----------------------------------------------------------------


def test_a_retransmission_matches_by_branch_sent_by_and_method() -> None:
    layer = TransactionLayer()
    key = new_server_transaction(layer, request("OPTIONS"))
    assert key == ServerKey(BRANCH, "a.example.com", "OPTIONS")
    assert layer.receive(request("OPTIONS"), UAC, 0.1) == []  # same transaction, absorbed
    assert len(layer) == 1
    other_host = request("OPTIONS", host="b.example.com")  # same branch, another sent-by
    assert new_server_transaction(layer, other_host) == ServerKey(
        BRANCH, "b.example.com", "OPTIONS"
    )
    assert len(layer) == 2


def test_the_ack_of_a_non_2xx_matches_its_invite_and_a_2xx_ack_is_the_tus() -> None:
    layer = TransactionLayer()
    invite = request()
    key = new_server_transaction(layer, invite)
    busy = answer(invite, 486, "Busy Here")
    ack = build_ack(invite, busy)
    assert layer.receive(ack, UAC, 0.1) == []  # Proceeding: an early ACK is absorbed
    layer.respond(key, busy, 0.2)
    assert layer.receive(ack, UAC, 0.3) == []
    assert layer.state(key) is State.CONFIRMED
    two_hundred_ack = build_ack(request(branch="z9hG4bK-new"), answer(invite, 200, "OK"))
    assert layer.receive(two_hundred_ack, UAC, 0.4) == [StrayAck(two_hundred_ack)]


def test_malformed_identifying_headers_are_the_peers_fault() -> None:
    layer = TransactionLayer()
    no_via = Request("OPTIONS", "sip:bob@example.com", [("CSeq", "1 OPTIONS")])
    with pytest.raises(ParseError) as raised:
        layer.receive(no_via, UAC, 0.0)
    assert raised.value.status == 400
    bad_cseq = Response(200, "OK", [("Via", f"SIP/2.0/UDP a.example.com;branch={BRANCH}")])
    bad_cseq.headers.add("CSeq", "one INVITE")
    with pytest.raises(ParseError):
        layer.receive(bad_cseq, UAS, 0.0)
    assert len(layer) == 0


# -- CANCEL: §9.2 ---------------------------------------------------------------------


def test_cancel_names_its_invite_so_the_tu_answers_200_and_487() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_key = new_server_transaction(layer, invite)
    cancel = cancel_for(invite)
    (received,) = layer.receive(cancel, UAC, 1.0)
    cancel_key = ServerKey(BRANCH, "a.example.com", "CANCEL")
    assert received == CancelReceived(cancel, cancel_key, invite_key)
    ok, terminated = answer(cancel, 200, "OK"), answer(invite, 487, "Request Terminated")
    assert layer.respond(cancel_key, ok, 1.0) == [Send(ok, UAC, cancel_key)]
    assert layer.respond(invite_key, terminated, 1.0) == [Send(terminated, UAC, invite_key)]
    assert layer.receive(cancel_for(invite), UAC, 1.5) == [Send(ok, UAC, cancel_key)]


def test_cancel_for_nothing_has_no_target_and_the_tu_answers_481() -> None:
    layer = TransactionLayer()
    new_server_transaction(layer, request())
    for cancel in (
        cancel_for(request(branch="z9hG4bK-unknown")),
        cancel_for(request(host="elsewhere.example.com")),  # same branch, other sent-by
    ):
        (received,) = layer.receive(cancel, UAC, 1.0)
        assert isinstance(received, CancelReceived)
        assert received.target is None
        gone = answer(cancel, 481, "Call/Transaction Does Not Exist")
        assert layer.respond(received.key, gone, 1.0) == [Send(gone, UAC, received.key)]


# -- RFC 2543 peers: §17.2.3 fallback ---------------------------------------------------


def inv2543() -> Request:
    message = parse_datagram((DATA / "inv2543.sip").read_bytes())
    assert isinstance(message, Request)
    return message


def test_rfc2543_invite_is_keyed_by_its_fields_and_its_retransmission_matches() -> None:
    layer = TransactionLayer()
    invite = inv2543()
    key = new_server_transaction(layer, invite)
    assert key == LegacyKey(
        request_uri=parse_uri("sip:UserB@example.com"),
        to_tag=None,
        from_tag=None,
        call_id="inv2543.1717@ift.client.example.com",
        cseq_number=56,
        method="INVITE",
        top_via=invite.top_via,
    )
    ringing = answer(invite, 180, "Ringing")
    layer.respond(key, ringing, 0.1)
    assert layer.receive(inv2543(), UAC, 0.5) == [Send(ringing, UAC, key)]
    assert len(layer) == 1


def test_rfc2543_ack_matches_by_the_to_tag_of_our_response() -> None:
    layer = TransactionLayer()
    invite = inv2543()
    key = new_server_transaction(layer, invite)
    busy = answer(invite, 486, "Busy Here", tag="b2")
    layer.respond(key, busy, 0.1)
    wrong_tag = build_ack(invite, answer(invite, 486, "Busy Here", tag="other"))
    assert layer.receive(wrong_tag, UAC, 0.2) == [StrayAck(wrong_tag)]
    assert layer.receive(build_ack(invite, busy), UAC, 0.3) == []
    assert layer.state(key) is State.CONFIRMED


def test_rfc2543_cancel_finds_its_invite() -> None:
    layer = TransactionLayer()
    invite = inv2543()
    key = new_server_transaction(layer, invite)
    (received,) = layer.receive(cancel_for(invite), UAC, 1.0)
    assert isinstance(received, CancelReceived)
    assert received.target == key
    assert isinstance(received.key, LegacyKey)
    assert received.key.method == "CANCEL"


# -- the TU's side of the layer -------------------------------------------------------


def test_a_request_without_branch_gets_one_from_the_injected_source() -> None:
    counter = itertools.count(1)
    layer = TransactionLayer(branches=lambda: f"n{next(counter)}")
    req = request()
    req.headers.set("Via", "SIP/2.0/UDP a.example.com, SIP/2.0/UDP b.example.com;branch=z9hG4bKb")
    key, _ = layer.send_request(req, UAS, 0.0)
    assert key == ClientKey("z9hG4bKn1", "INVITE")
    assert req.headers.lines("Via") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bKn1, SIP/2.0/UDP b.example.com;branch=z9hG4bKb"
    ]
    assert layer.new_branch() == "z9hG4bKn2"


def unbranched(method: str) -> Request:
    req = request(method)
    req.headers.set("Via", "SIP/2.0/UDP a.example.com")
    return req


MISUSE: dict[str, Callable[[], Request]] = {
    "ACK is never a client transaction": lambda: request("ACK"),
    "a branch without the magic cookie": lambda: request(branch="1234"),
    "no branch and no branch source": lambda: unbranched("OPTIONS"),
    "CSeq names another method": lambda: Request("BYE", "sip:b@x", request("OPTIONS").headers),
}


@pytest.mark.parametrize("build", MISUSE.values(), ids=MISUSE.keys())
def test_send_request_misuse(build: Callable[[], Request]) -> None:
    with pytest.raises(ProtocolMisuse):
        TransactionLayer().send_request(build(), UAS, 0.0)


def test_the_same_client_transaction_twice_is_misuse() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), UAS, 0.0)
    with pytest.raises(ProtocolMisuse, match="already exists"):
        layer.send_request(request(), UAS, 0.1)


def test_next_deadline_spans_all_transactions_and_ended_ones_are_removed() -> None:
    layer = TransactionLayer()
    keys = [layer.send_request(request("OPTIONS", f"z9hG4bK{n}"), UAS, n)[0] for n in range(3)]
    assert layer.next_deadline() == 0.5  # Timer E of the first
    first = request("OPTIONS", "z9hG4bK0")
    layer.receive(answer(first, 200, "OK"), UAS, 0.2)
    assert layer.next_deadline() == 1.5  # the second's E; the first only waits for K
    log: list[tuple[float, Output]] = []
    while (deadline := layer.next_deadline()) is not None:
        log += [(deadline, o) for o in layer.handle_timer(deadline) if not isinstance(o, Send)]
    assert log == [
        (5.2, Terminated(keys[0])),  # Timer K
        (33.0, TimedOut(keys[1], Timer.F)),
        (33.0, Terminated(keys[1])),
        (34.0, TimedOut(keys[2], Timer.F)),
        (34.0, Terminated(keys[2])),
    ]
    assert len(layer) == 0


# -- a back-to-back pair over a lossy network -----------------------------------------


def label(message: Request | Response) -> str:
    return message.method if isinstance(message, Request) else str(message.status)


@dataclass
class LossyPair:
    """A UAC layer and a UAS layer joined by a network that delays every message 10 ms
    and loses the n-th sending of the messages named in ``lose`` (method or status, n).
    The UAS's TU answers every new request with ``status`` at once."""

    lose: set[tuple[str, int]]
    status: int
    uac: TransactionLayer = field(default_factory=TransactionLayer)
    uas: TransactionLayer = field(default_factory=TransactionLayer)
    now: float = 0.0
    log: list[tuple[float, str, str]] = field(default_factory=list)
    _wire: list[tuple[float, int, str, bytes]] = field(default_factory=list)
    _sent: Counter[str] = field(default_factory=Counter)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def run(self, req: Request) -> list[tuple[float, str, str]]:
        _, out = self.uac.send_request(req, UAS, self.now)
        self._handle("uac", out)
        while (now := self._next_instant()) is not None:
            assert now < 100.0, "the exchange never settled"
            self.now = now
            while self._wire and self._wire[0][0] <= now:
                _, _, side, data = heapq.heappop(self._wire)
                layer, source = (self.uac, UAS) if side == "uac" else (self.uas, UAC)
                self._handle(side, layer.receive(parse_datagram(data), source, now))
            self._handle("uac", self.uac.handle_timer(now))
            self._handle("uas", self.uas.handle_timer(now))
        return self.log

    def _next_instant(self) -> float | None:
        instants = [self.uac.next_deadline(), self.uas.next_deadline()]
        instants.append(self._wire[0][0] if self._wire else None)
        return min((t for t in instants if t is not None), default=None)

    def _handle(self, side: str, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self._transmit(side, output.message)
            elif isinstance(output, PassToTU):
                self._note(side, f"TU gets {label(output.message)}")
                if side == "uas" and isinstance(output.message, Request):
                    response = answer(output.message, self.status, "")
                    self._handle(side, self.uas.respond(output.key, response, self.now))
            else:
                self._note(side, type(output).__name__)

    def _transmit(self, side: str, message: Request | Response) -> None:
        what = label(message)
        self._sent[what] += 1
        if (what, self._sent[what]) in self.lose:
            self._note(side, f"sends {what}, lost")
            return
        self._note(side, f"sends {what}")
        to = "uas" if side == "uac" else "uac"
        heapq.heappush(self._wire, (self.now + 0.01, next(self._order), to, message.to_bytes()))

    def _note(self, side: str, what: str) -> None:
        self.log.append((round(self.now, 3), side, what))


def test_lost_request_and_lost_response_are_recovered_by_retransmission() -> None:
    pair = LossyPair(lose={("OPTIONS", 1), ("200", 1)}, status=200)
    assert pair.run(request("OPTIONS")) == [
        (0.0, "uac", "sends OPTIONS, lost"),
        (0.5, "uac", "sends OPTIONS"),  # Timer E
        (0.51, "uas", "TU gets OPTIONS"),
        (0.51, "uas", "sends 200, lost"),
        (1.5, "uac", "sends OPTIONS"),  # Timer E, doubled
        (1.51, "uas", "sends 200"),  # the retransmission is answered with the last response
        (1.52, "uac", "TU gets 200"),
        (6.52, "uac", "Terminated"),  # Timer K = T4
        (32.51, "uas", "Terminated"),  # Timer J = 64*T1
    ]


def test_lost_invite_486_and_ack_are_recovered_by_retransmission() -> None:
    pair = LossyPair(lose={("INVITE", 1), ("486", 1), ("ACK", 1)}, status=486)
    assert pair.run(request("INVITE")) == [
        (0.0, "uac", "sends INVITE, lost"),
        (0.5, "uac", "sends INVITE"),  # Timer A
        (0.51, "uas", "TU gets INVITE"),
        (0.51, "uas", "sends 486, lost"),
        (1.01, "uas", "sends 486"),  # Timer G
        (1.02, "uac", "sends ACK, lost"),  # built by the client transaction
        (1.02, "uac", "TU gets 486"),
        (2.01, "uas", "sends 486"),  # Timer G, doubled
        (2.02, "uac", "sends ACK"),  # the same ACK again, for the retransmitted 486
        (7.03, "uas", "Terminated"),  # Confirmed at 2.03, then Timer I = T4
        (33.02, "uac", "Terminated"),  # Timer D = 32 s
    ]


def test_a_dead_network_times_the_invite_out() -> None:
    pair = LossyPair(lose={("INVITE", n) for n in range(1, 8)}, status=486)
    log = pair.run(request("INVITE"))
    assert [entry for entry in log if "lost" not in entry[2]] == [
        (32.0, "uac", "TimedOut"),  # Timer B: the TU answers itself 408
        (32.0, "uac", "Terminated"),
    ]
