"""The four transaction state machines of RFC 3261 §17 (with RFC 6026), in stepped time.

Each test drives a :class:`TransactionLayer` the way the adapter does: messages and
``now`` in, then ``handle_timer`` at every ``next_deadline`` until a chosen instant.
Nothing sleeps; the clock is whatever number the test passes.
"""

from __future__ import annotations

import pytest

from sipedge.sip.errors import ProtocolMisuse
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction import (
    ClientKey,
    InviteServerTransaction,
    Output,
    PassToTU,
    Peer,
    Send,
    ServerKey,
    State,
    StrayResponse,
    Terminated,
    TimedOut,
    Timer,
    TimerConfig,
    TransactionKey,
    TransactionLayer,
    TransportFailure,
)

UAS = Peer("UDP", "192.0.2.2", 5060)
UAC = Peer("UDP", "192.0.2.1", 5060)
BRANCH = "z9hG4bK-1"


def request(method: str = "INVITE", transport: str = "UDP", branch: str = BRANCH) -> Request:
    """A request as a proxy forwards it: its own Via on top, two Route header fields."""
    return Request(
        method,
        "sip:bob@example.com",
        [
            ("Via", f"SIP/2.0/{transport} proxy.example.com;branch={branch}"),
            ("Via", "SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKuac"),
            ("Max-Forwards", "69"),
            ("Route", "<sip:p1.example.com;lr>"),
            ("Route", "<sip:p2.example.com;lr>"),
            ("From", "Alice <sip:alice@example.com>;tag=a1"),
            ("To", "Bob <sip:bob@example.com>"),
            ("Call-ID", "call-1@client.example.com"),
            ("CSeq", f"1 {method}"),
            ("Contact", "<sip:alice@client.example.com>"),
        ],
    )


def answer(req: Request, status: int, reason: str, tag: str | None = "b2") -> Response:
    """The response a UAS builds (§8.2.6): Vias, From, Call-ID, CSeq copied, To tagged."""
    to = req.headers.single("To") + ("" if tag is None else f";tag={tag}")
    headers = [("Via", via) for via in req.headers.lines("Via")]
    headers += [("From", req.headers.single("From")), ("To", to)]
    headers += [("Call-ID", req.call_id), ("CSeq", str(req.cseq))]
    return Response(status, reason, headers)


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Output]]:
    """Wake the layer at each of its deadlines up to ``end``; what came out, and when."""
    log: list[tuple[float, Output]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        log += [(deadline, output) for output in layer.handle_timer(deadline)]
    return log


def send_times(log: list[tuple[float, Output]]) -> list[float]:
    return [at for at, output in log if isinstance(output, Send)]


def uac(
    method: str = "INVITE", transport: str = "UDP", config: TimerConfig | None = None
) -> tuple[TransactionLayer, ClientKey, Request]:
    layer = TransactionLayer(config)
    req = request(method, transport)
    key, out = layer.send_request(req, Peer(transport, "192.0.2.2", 5060), 0.0)
    assert out == [Send(req, Peer(transport, "192.0.2.2", 5060), key)]
    return layer, key, req


def uas(
    method: str = "INVITE", transport: str = "UDP", config: TimerConfig | None = None
) -> tuple[TransactionLayer, TransactionKey, Request]:
    layer = TransactionLayer(config)
    req = request(method, transport)
    (event,) = layer.receive(req, Peer(transport, "192.0.2.1", 5060), 0.0)
    assert isinstance(event, PassToTU)
    assert event.message is req
    return layer, event.key, req


# -- Table 4 --------------------------------------------------------------------------

# timer: (unreliable transport, reliable transport); None: the timer does not run.
TABLE_4: dict[Timer, tuple[float | None, float | None]] = {
    Timer.A: (0.5, None),
    Timer.B: (32.0, 32.0),
    Timer.D: (32.0, 0.0),
    Timer.E: (0.5, None),
    Timer.F: (32.0, 32.0),
    Timer.G: (0.5, None),
    Timer.H: (32.0, 32.0),
    Timer.I: (5.0, 0.0),
    Timer.J: (32.0, 0.0),
    Timer.K: (5.0, 0.0),
    Timer.L: (32.0, 32.0),  # RFC 6026
    Timer.M: (32.0, 32.0),  # RFC 6026
    Timer.TRYING: (None, None),  # off unless configured
}


@pytest.mark.parametrize(("timer", "values"), TABLE_4.items(), ids=[t.name for t in TABLE_4])
def test_table_4_defaults(timer: Timer, values: tuple[float | None, float | None]) -> None:
    config = TimerConfig()
    assert (config.initial_s(timer, False), config.initial_s(timer, True)) == values


def test_timers_follow_t1_and_t4() -> None:
    config = TimerConfig(t1_s=0.25, t2_s=1.0, t4_s=2.0, trying_s=0.2)
    assert config.initial_s(Timer.B, False) == 16.0
    assert config.initial_s(Timer.J, False) == 16.0
    assert config.initial_s(Timer.K, False) == 2.0
    assert config.initial_s(Timer.TRYING, True) == 0.2


@pytest.mark.parametrize(
    ("t1_s", "t2_s", "t4_s"), [(0.0, 4.0, 5.0), (0.5, 0.25, 5.0), (0.5, 4.0, -1.0)]
)
def test_impossible_timer_configuration_is_refused(t1_s: float, t2_s: float, t4_s: float) -> None:
    with pytest.raises(ValueError, match="T"):
        TimerConfig(t1_s=t1_s, t2_s=t2_s, t4_s=t4_s)


# -- retransmission schedules ---------------------------------------------------------

# (method, transport, T1, T2): (request sent again at, timer that ends it, at)
SCHEDULES = {
    ("INVITE", "UDP", 0.5, 4.0): ([0.5, 1.5, 3.5, 7.5, 15.5, 31.5], Timer.B, 32.0),
    ("OPTIONS", "UDP", 0.5, 4.0): (
        [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5],
        Timer.F,
        32.0,
    ),
    ("INVITE", "UDP", 0.25, 1.0): ([0.25, 0.75, 1.75, 3.75, 7.75, 15.75], Timer.B, 16.0),
    # T2 = 1 s: E doubles 0.25, 0.5, then stays at 1.0
    ("BYE", "UDP", 0.25, 1.0): ([0.25, 0.75, *(n + 0.75 for n in range(1, 16))], Timer.F, 16.0),
    ("INVITE", "TCP", 0.5, 4.0): ([], Timer.B, 32.0),
    ("OPTIONS", "TCP", 0.5, 4.0): ([], Timer.F, 32.0),
}


@pytest.mark.parametrize(
    ("case", "expected"), SCHEDULES.items(), ids=["-".join(map(str, case)) for case in SCHEDULES]
)
def test_client_retransmission_schedule(
    case: tuple[str, str, float, float], expected: tuple[list[float], Timer, float]
) -> None:
    method, transport, t1_s, t2_s = case
    resent_at, timer, timeout_at = expected
    layer, key, req = uac(method, transport, TimerConfig(t1_s=t1_s, t2_s=t2_s))
    log = run_until(layer, 100.0)
    assert send_times(log) == resent_at
    assert all(output.message is req for _, output in log if isinstance(output, Send))
    assert log[-2:] == [(timeout_at, TimedOut(key, timer)), (timeout_at, Terminated(key))]
    assert len(layer) == 0
    assert layer.next_deadline() is None


def test_non_invite_in_proceeding_retransmits_every_t2() -> None:
    layer, key, req = uac("OPTIONS")
    assert send_times(run_until(layer, 0.5)) == [0.5]
    trying = answer(req, 100, "Trying", tag=None)
    assert layer.receive(trying, UAS, 0.7) == [PassToTU(trying, key)]
    assert layer.state(key) is State.PROCEEDING
    log = run_until(layer, 20.0)
    # Timer E keeps the deadline it had (1.5), then is reset to T2 each time it fires.
    assert send_times(log) == [1.5, 5.5, 9.5, 13.5, 17.5]


def test_a_late_wake_up_retransmits_once_and_keeps_going() -> None:
    layer, _, _ = uac("INVITE")
    out = layer.handle_timer(10.0)  # the adapter slept through 0.5, 1.5, 3.5 and 7.5
    assert [type(o) for o in out] == [Send]
    assert layer.next_deadline() == 15.5  # the RFC's next instant: the schedule did not drift
    assert send_times(run_until(layer, 100.0)) == [15.5, 31.5]


# -- INVITE client --------------------------------------------------------------------

ACK_486 = (
    b"ACK sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-1\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:p2.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@example.com>;tag=a1\r\n"
    b"To: Bob <sip:bob@example.com>;tag=b2\r\n"
    b"Call-ID: call-1@client.example.com\r\n"
    b"CSeq: 1 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_invite_client_180_then_486_is_acked_by_the_transaction() -> None:
    layer, key, req = uac()
    ringing, busy = answer(req, 180, "Ringing"), answer(req, 486, "Busy Here")
    assert layer.receive(ringing, UAS, 0.2) == [PassToTU(ringing, key)]
    assert layer.state(key) is State.PROCEEDING
    assert layer.next_deadline() is None  # Proceeding: no A, no B
    ack, to_tu = layer.receive(busy, UAS, 2.0)
    assert isinstance(ack, Send)
    assert ack.message.to_bytes() == ACK_486
    assert (ack.destination, ack.key) == (UAS, key)
    assert to_tu == PassToTU(busy, key)
    assert layer.state(key) is State.COMPLETED


def test_invite_client_resends_the_ack_for_each_retransmitted_final_response() -> None:
    layer, key, req = uac()
    busy = answer(req, 486, "Busy Here")
    first_ack = layer.receive(busy, UAS, 1.0)[0]
    assert layer.receive(answer(req, 486, "Busy Here"), UAS, 2.0) == [first_ack]
    assert layer.receive(answer(req, 486, "Busy Here"), UAS, 4.0) == [first_ack]
    assert run_until(layer, 100.0) == [(33.0, Terminated(key))]  # Timer D: 32 s


def test_invite_client_over_tcp_ends_with_timer_d_at_zero() -> None:
    layer, key, req = uac(transport="TCP")
    layer.receive(answer(req, 603, "Decline"), Peer("TCP", "192.0.2.2", 5060), 3.0)
    assert layer.next_deadline() == 3.0
    assert layer.handle_timer(3.0) == [Terminated(key)]


def test_invite_client_2xx_goes_to_accepted_and_retransmissions_to_the_tu() -> None:
    layer, key, req = uac()
    ok = answer(req, 200, "OK")
    assert layer.receive(ok, UAS, 1.0) == [PassToTU(ok, key)]  # no ACK: the TU sends it
    assert layer.state(key) is State.ACCEPTED
    again = answer(req, 200, "OK")
    assert layer.receive(again, UAS, 5.0) == [PassToTU(again, key)]
    forked = answer(req, 200, "OK", tag="other-branch")
    assert layer.receive(forked, UAS, 6.0) == [PassToTU(forked, key)]
    assert layer.receive(answer(req, 486, "Busy Here"), UAS, 7.0) == []  # absorbed
    assert run_until(layer, 100.0) == [(33.0, Terminated(key))]  # Timer M: 64*T1
    late = answer(req, 200, "OK")
    assert layer.receive(late, UAS, 40.0) == [StrayResponse(late)]


def test_invite_client_transport_error_while_calling() -> None:
    layer, key, _ = uac()
    assert layer.transport_error(key, 0.1) == [TransportFailure(key), Terminated(key)]
    assert layer.transport_error(key, 0.2) == []  # gone: a late report is ignored


# -- non-INVITE client ----------------------------------------------------------------


def test_non_invite_client_final_response_then_timer_k() -> None:
    layer, key, req = uac("OPTIONS")
    ok = answer(req, 200, "OK")
    assert layer.receive(ok, UAS, 0.2) == [PassToTU(ok, key)]
    assert layer.state(key) is State.COMPLETED
    assert layer.receive(answer(req, 200, "OK"), UAS, 0.3) == []  # absorbed
    assert run_until(layer, 100.0) == [(5.2, Terminated(key))]  # Timer K = T4


def test_non_invite_client_over_tcp_ends_at_once() -> None:
    layer, key, req = uac("OPTIONS", "TCP")
    layer.receive(answer(req, 404, "Not Found"), UAS, 0.2)
    assert run_until(layer, 0.2) == [(0.2, Terminated(key))]


# -- INVITE server --------------------------------------------------------------------


def test_invite_server_sends_the_tu_provisionals_and_repeats_the_last_one() -> None:
    layer, key, req = uas()
    trying, ringing = answer(req, 100, "Trying", tag=None), answer(req, 180, "Ringing")
    assert layer.respond(key, trying, 0.0) == [Send(trying, UAC, key)]
    assert layer.respond(key, ringing, 1.0) == [Send(ringing, UAC, key)]
    assert layer.receive(request(), UAC, 1.5) == [Send(ringing, UAC, key)]
    assert layer.state(key) is State.PROCEEDING


def test_invite_server_retransmits_486_per_timer_g_until_the_ack() -> None:
    layer, key, req = uas()
    busy = answer(req, 486, "Busy Here")
    assert layer.respond(key, busy, 0.0) == [Send(busy, UAC, key)]
    log = run_until(layer, 10.0)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5]
    assert layer.receive(request(), UAC, 8.0) == [Send(busy, UAC, key)]  # INVITE again
    assert layer.receive(Request("ACK", "sip:bob@example.com", _ack_headers()), UAC, 9.0) == []
    assert layer.state(key) is State.CONFIRMED
    assert run_until(layer, 100.0) == [(14.0, Terminated(key))]  # Timer I = T4, no more G


def test_invite_server_timer_g_is_capped_at_t2_and_timer_h_tells_the_tu() -> None:
    layer, key, req = uas()
    layer.respond(key, answer(req, 480, "Temporarily Unavailable"), 0.0)
    log = run_until(layer, 100.0)
    assert send_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-2:] == [(32.0, TimedOut(key, Timer.H)), (32.0, Terminated(key))]


def test_invite_server_over_tcp_sends_the_final_response_once() -> None:
    layer, key, req = uas(transport="TCP")
    layer.respond(key, answer(req, 486, "Busy Here"), 0.0)
    assert layer.next_deadline() == 32.0  # only Timer H
    layer.receive(Request("ACK", "sip:bob@example.com", _ack_headers("TCP")), UAC, 1.0)
    assert run_until(layer, 1.0) == [(1.0, Terminated(key))]  # Timer I = 0


def test_invite_server_2xx_goes_to_accepted_until_timer_l() -> None:
    layer, key, req = uas()
    ok = answer(req, 200, "OK")
    assert layer.respond(key, ok, 1.0) == [Send(ok, UAC, key)]
    assert layer.state(key) is State.ACCEPTED
    assert layer.receive(request(), UAC, 1.5) == []  # INVITE retransmission absorbed
    assert layer.respond(key, ok, 2.0) == [Send(ok, UAC, key)]  # the TU's 2xx retransmission
    ack = Request("ACK", "sip:bob@example.com", _ack_headers())
    assert layer.receive(ack, UAC, 2.5) == [PassToTU(ack, key)]
    assert run_until(layer, 100.0) == [(33.0, Terminated(key))]  # Timer L = 64*T1


def test_invite_server_sends_100_trying_when_the_tu_is_slow() -> None:
    layer, _, _ = uas(config=TimerConfig(trying_s=0.2))
    ((at, sent),) = run_until(layer, 1.0)
    assert at == 0.2
    assert isinstance(sent, Send)
    assert sent.message.to_bytes() == (
        b"SIP/2.0 100 Trying\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-1\r\n"
        b"Via: SIP/2.0/UDP client.example.com:5060;branch=z9hG4bKuac\r\n"
        b"From: Alice <sip:alice@example.com>;tag=a1\r\n"
        b"To: Bob <sip:bob@example.com>\r\n"
        b"Call-ID: call-1@client.example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )
    assert layer.receive(request(), UAC, 0.6) == [sent]  # the last provisional


def test_invite_server_sends_no_100_trying_when_the_tu_answers_in_time() -> None:
    layer, key, req = uas(config=TimerConfig(trying_s=0.2))
    layer.respond(key, answer(req, 180, "Ringing"), 0.1)
    assert layer.next_deadline() is None


def test_invite_server_transport_error_in_proceeding_keeps_the_transaction() -> None:
    layer, key, _ = uas()
    assert layer.transport_error(key, 0.5) == [TransportFailure(key)]  # RFC 6026 Figure
    assert layer.state(key) is State.PROCEEDING


MISUSE = {
    "final twice": [(486, "Busy Here"), (486, "Busy Here")],
    "provisional after final": [(486, "Busy Here"), (180, "Ringing")],
    "provisional after 2xx": [(200, "OK"), (180, "Ringing")],
    "non-2xx after 2xx": [(200, "OK"), (500, "Server Internal Error")],
    "not a status code": [(700, "Huh")],
}


@pytest.mark.parametrize("responses", MISUSE.values(), ids=MISUSE.keys())
def test_invite_server_refuses_responses_its_state_forbids(
    responses: list[tuple[int, str]],
) -> None:
    layer, key, req = uas()
    *allowed, refused = responses
    for status, reason in allowed:
        layer.respond(key, answer(req, status, reason), 0.0)
    with pytest.raises(ProtocolMisuse):
        layer.respond(key, answer(req, *refused), 0.1)


def test_responding_to_the_wrong_request_or_no_transaction_is_misuse() -> None:
    layer, key, req = uas()
    with pytest.raises(ProtocolMisuse, match="response to BYE"):
        layer.respond(key, answer(request("BYE"), 200, "OK"), 0.0)
    with pytest.raises(ProtocolMisuse, match="no server transaction"):
        layer.respond(ServerKey("z9hG4bKnone", "x.example.com", "INVITE"), answer(req, 200, ""), 0)


# -- non-INVITE server ----------------------------------------------------------------


def test_non_invite_server_answers_retransmissions_with_the_last_response() -> None:
    layer, key, req = uas("BYE")
    assert layer.receive(request("BYE"), UAC, 0.4) == []  # Trying: discarded
    ok = answer(req, 200, "OK")
    assert layer.respond(key, ok, 0.5) == [Send(ok, UAC, key)]
    assert layer.receive(request("BYE"), UAC, 1.0) == [Send(ok, UAC, key)]
    assert layer.receive(request("BYE"), UAC, 3.0) == [Send(ok, UAC, key)]
    with pytest.raises(ProtocolMisuse):
        layer.respond(key, answer(req, 500, "Server Internal Error"), 4.0)
    assert run_until(layer, 100.0) == [(32.5, Terminated(key))]  # Timer J = 64*T1


def test_non_invite_server_provisional_is_repeated_in_proceeding() -> None:
    layer, key, req = uas("REGISTER")
    trying = answer(req, 100, "Trying", tag=None)
    layer.respond(key, trying, 0.1)
    assert layer.receive(request("REGISTER"), UAC, 0.5) == [Send(trying, UAC, key)]
    assert layer.transport_error(key, 0.6) == [TransportFailure(key), Terminated(key)]


def test_non_invite_server_over_tcp_ends_with_timer_j_at_zero() -> None:
    layer, key, req = uas("BYE", "TCP")
    layer.respond(key, answer(req, 200, "OK"), 0.5)
    assert run_until(layer, 0.5) == [(0.5, Terminated(key))]


def _ack_headers(transport: str = "UDP") -> list[tuple[str, str]]:
    """The ACK a client transaction builds for the 486 of :func:`request` (§17.1.1.3)."""
    return [
        ("Via", f"SIP/2.0/{transport} proxy.example.com;branch={BRANCH}"),
        ("Max-Forwards", "70"),
        ("From", "Alice <sip:alice@example.com>;tag=a1"),
        ("To", "Bob <sip:bob@example.com>;tag=b2"),
        ("Call-ID", "call-1@client.example.com"),
        ("CSeq", "1 ACK"),
    ]


# -- what a finished transaction keeps -------------------------------------------------


def test_finished_transactions_let_go_of_the_messages_they_no_longer_need() -> None:
    """On UDP a finished transaction lingers (Timers D, J, L, M: 32 s) to absorb
    retransmissions: it keeps what that takes, not the parsed request it answered."""
    layer, key, req = uas()
    ok = answer(req, 200, "OK")
    layer.respond(key, ok, 1.0)
    transaction = layer.get(key)
    assert isinstance(transaction, InviteServerTransaction)
    with pytest.raises(ProtocolMisuse, match="no longer holds its request"):
        transaction.request  # noqa: B018
    assert transaction.last_response is None  # Accepted never resends: the TU does
    assert transaction.to_tag == "b2"  # what an RFC 2543 ACK is matched by
    assert layer.respond(key, ok, 2.0) == [Send(ok, UAC, key)]  # the TU's retransmission

    layer, key, req = uas("BYE")
    bye_ok = answer(req, 200, "OK")
    layer.respond(key, bye_ok, 0.5)
    with pytest.raises(ProtocolMisuse):
        layer.get(key).request  # type: ignore[union-attr]  # noqa: B018
    assert layer.receive(request("BYE"), UAC, 1.0) == [Send(bye_ok, UAC, key)]  # still resent

    client, ckey, invite = uac()
    client.receive(answer(invite, 486, "Busy Here"), UAS, 0.1)
    with pytest.raises(ProtocolMisuse):
        client.get(ckey).request  # type: ignore[union-attr]  # noqa: B018
    (ack,) = client.receive(answer(invite, 486, "Busy Here"), UAS, 0.2)  # the ACK, built once
    assert isinstance(ack, Send)
    assert ack.message.method == "ACK"  # type: ignore[union-attr]


def test_invite_server_keeps_its_to_tag_after_the_ack_confirms_it() -> None:
    layer, key, req = uas()
    layer.respond(key, answer(req, 486, "Busy Here", tag="t486"), 0.0)
    layer.receive(Request("ACK", "sip:bob@example.com", _ack_headers()), UAC, 0.1)
    transaction = layer.get(key)
    assert isinstance(transaction, InviteServerTransaction)
    assert layer.state(key) is State.CONFIRMED
    assert transaction.last_response is None
    assert transaction.to_tag == "t486"
