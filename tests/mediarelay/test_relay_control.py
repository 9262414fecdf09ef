"""The relay's *ng* control, sans-IO: request datagrams in, reply datagrams and ports out.

Each test sends what the SIP edge (or Kamailio) sends, built with the shared ng codec, and
reads the reply as the edge does (:func:`contracts.ng.control.expect_reply`). Addresses in
SDP are RFC 5737's; nothing is sent anywhere.
"""

from __future__ import annotations

import random

import pytest

from contracts.ng.bencode import Encodable, encode
from contracts.ng.control import (
    Answer,
    CallTotals,
    Command,
    Delete,
    Offer,
    Ping,
    Query,
    Reply,
    Result,
    StreamTotals,
    command_datagram,
    expect_reply,
)
from contracts.ng.notice import TIMEOUT, Notice, parse_notice
from mediarelay.control import Controller, Handled
from mediarelay.portpool import PortPool
from mediarelay.session import Address, Forward, PortPair, SessionConfig, Sessions

ADVERTISE = "203.0.113.1"
EDGE: Address = ("10.0.0.5", 42000)  # the edge's ng client socket
OTHER_EDGE: Address = ("10.0.0.6", 42000)
CALL = "a84b4c76e66710@pc33.example.com"
CALLER_TAG, CALLEE_TAG = "1928301774", "a6c85cf"
NOW, WALL = 100.0, 1_700_000_000.25  # monotonic and UNIX seconds

CALLER_SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)
CALLEE_SDP = (
    b"v=0\r\n"
    b"o=bob 2808844564 2808844564 IN IP4 198.51.100.20\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.20\r\n"
    b"t=0 0\r\n"
    b"m=audio 5004 RTP/AVP 0\r\n"
    b"a=rtcp:5005\r\n"
    b"a=sendrecv\r\n"
)


def relay(pairs: int = 50, idle_timeout_s: float = 60.0) -> Controller:
    pool = PortPool(30000, 30000 + 2 * pairs - 1, random.Random(7).randrange)
    return Controller(Sessions(pool, SessionConfig(idle_timeout_s=idle_timeout_s)), ADVERTISE)


def ask(
    controller: Controller,
    command: Command,
    cookie: bytes = b"1_1",
    source: Address = EDGE,
    now: float = NOW,
    wall: float = WALL,
) -> tuple[Reply, Handled]:
    handled = controller.handle(command_datagram(cookie, command), source, now, wall)
    assert handled.reply is not None
    return expect_reply(handled.reply, cookie), handled


def offer(sdp: bytes = CALLER_SDP, call_id: str = CALL) -> Offer:
    return Offer(call_id=call_id, from_tag=CALLER_TAG, sdp=sdp)


def answer(sdp: bytes = CALLEE_SDP, call_id: str = CALL) -> Answer:
    return Answer(call_id=call_id, from_tag=CALLER_TAG, to_tag=CALLEE_TAG, sdp=sdp)


def ports(controller: Controller) -> tuple[PortPair, PortPair]:
    """The caller leg's and the callee leg's (first stream) relay ports."""
    session = controller.sessions.get(CALL)
    assert session is not None
    callee = session.callee
    assert callee is not None
    return session.caller.ports[0], callee.ports[0]


def anchored(sdp: bytes, rtp_port: int) -> bytes:
    """What the relay should make of the single-stream ``sdp``: c= the relay, m= and a=rtcp
    its port pair (an a=rtcp in its place, else last), every other line (o= too) kept."""
    out = []
    for line in sdp.decode().split("\r\n")[:-1]:
        if line.startswith("c="):
            out.append(f"c=IN IP4 {ADVERTISE}")
        elif line.startswith("m="):
            media, _, rest = line.split(" ", 2)
            out.append(f"{media} {rtp_port} {rest}")
        elif line.startswith("a=rtcp:"):
            out.append(f"a=rtcp:{rtp_port + 1}")
        else:
            out.append(line)
    if b"a=rtcp:" not in sdp:
        out.append(f"a=rtcp:{rtp_port + 1}")
    return ("\r\n".join(out) + "\r\n").encode()


# --- offer and answer ----------------------------------------------------------------------


def test_an_offer_is_rewritten_to_the_relay_with_the_far_legs_ports() -> None:
    controller = relay()
    reply, _ = ask(controller, offer())
    caller, callee = ports(controller)
    assert reply.result is Result.OK
    # The offer goes on to the callee, so it names the ports that receive from the callee.
    assert reply.sdp == anchored(CALLER_SDP, callee.rtp)
    assert callee.rtcp == callee.rtp + 1
    assert callee != caller


def test_the_rewritten_offer_is_exactly_these_bytes() -> None:
    controller = relay()
    reply, _ = ask(controller, offer())
    _, callee = ports(controller)
    assert reply.sdp == (
        b"v=0\r\n"
        b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"  # kept (no replace: origin)
        b"s=-\r\n"
        b"c=IN IP4 203.0.113.1\r\n"
        b"t=0 0\r\n"
        b"m=audio %d RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
        b"a=rtcp:%d\r\n" % (callee.rtp, callee.rtp + 1)
    )


def test_the_answer_is_rewritten_with_the_offerers_ports() -> None:
    controller = relay()
    ask(controller, offer(), cookie=b"1_1")
    reply, handled = ask(controller, answer(), cookie=b"1_2")
    caller, _ = ports(controller)
    # The answer goes back to the caller: the ports that receive from the caller.
    assert reply.sdp == anchored(CALLEE_SDP, caller.rtp)
    assert b"a=rtcp:%d\r\n" % caller.rtcp in reply.sdp
    assert b"5005" not in reply.sdp  # the callee's own a=rtcp is replaced, in its place
    assert handled.opened == ()


def test_an_offer_opens_rtp_and_rtcp_of_both_legs_and_a_delete_closes_them() -> None:
    controller = relay()
    _, opened = ask(controller, offer(), cookie=b"1_1")
    caller, callee = ports(controller)
    assert opened.opened == (caller.rtp, caller.rtcp, callee.rtp, callee.rtcp)
    assert opened.closed == ()
    assert controller.sessions.pool.in_use == 2
    reply, deleted = ask(controller, Delete(call_id=CALL), cookie=b"1_2")
    assert reply == Reply.ok()
    assert deleted.opened == ()
    assert sorted(deleted.closed) == sorted(opened.opened)
    assert controller.sessions.pool.in_use == 0
    assert controller.sessions.get(CALL) is None


def test_a_two_stream_offer_opens_two_pairs_per_leg() -> None:
    video = CALLER_SDP + b"m=video 49172 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    controller = relay()
    reply, handled = ask(controller, offer(video))
    session = controller.sessions.get(CALL)
    assert session is not None
    assert session.callee is not None
    far = session.callee.ports
    assert len(far) == 2
    assert len(handled.opened) == 8
    assert set(handled.opened) == {p for leg in session.legs for pair in leg.ports for p in pair}
    assert reply.sdp is not None
    assert b"m=audio %d " % far[0].rtp in reply.sdp
    assert b"m=video %d " % far[1].rtp in reply.sdp
    assert reply.sdp.count(b"a=rtcp:") == 2


def test_a_re_offer_keeps_the_ports_and_opens_nothing() -> None:
    controller = relay()
    ask(controller, offer(), cookie=b"1_1")
    ask(controller, answer(), cookie=b"1_2")
    before = ports(controller)
    moved = CALLER_SDP.replace(b"2890844526 IN", b"2890844527 IN").replace(b"49170", b"50000")
    reply, handled = ask(controller, offer(moved), cookie=b"2_1")
    assert ports(controller) == before
    assert reply.sdp == anchored(moved, before[1].rtp)
    assert handled.opened == ()
    assert controller.sessions.pool.in_use == 2


def test_an_answer_for_an_unknown_call_is_an_error() -> None:
    controller = relay()
    reply, handled = ask(controller, answer())
    assert reply.result is Result.ERROR
    assert reply.error_reason == f"answer for unknown call-id {CALL!r}"
    assert handled.opened == ()
    assert controller.sessions.pool.in_use == 0


# --- retransmissions -------------------------------------------------------------------------


def test_a_retransmitted_offer_gets_the_same_bytes_and_allocates_nothing() -> None:
    controller = relay()
    datagram = command_datagram(b"8_1", offer())
    first = controller.handle(datagram, EDGE, NOW, WALL)
    again = controller.handle(datagram, EDGE, NOW + 0.5, WALL + 0.5)
    assert again.reply == first.reply
    assert again.opened == again.closed == ()
    assert controller.sessions.pool.in_use == 2
    assert len(controller.sessions) == 1


def test_a_retransmitted_delete_closes_nothing_twice() -> None:
    controller = relay()
    ask(controller, offer(), cookie=b"8_1")
    datagram = command_datagram(b"8_2", Delete(call_id=CALL, flags=("fatal",)))
    first = controller.handle(datagram, EDGE, NOW, WALL)
    again = controller.handle(datagram, EDGE, NOW + 0.5, WALL + 0.5)
    assert len(first.closed) == 4
    assert again.reply == first.reply  # ok, not "unknown call-id": the request ran once
    assert again.closed == ()


def test_the_same_cookie_from_another_sender_is_a_new_request() -> None:
    controller = relay()
    mine = controller.handle(command_datagram(b"1_1", offer()), EDGE, NOW, WALL)
    other_call = offer(call_id="f81d4fae@192.0.2.4")
    theirs = controller.handle(command_datagram(b"1_1", other_call), OTHER_EDGE, NOW, WALL)
    assert theirs.reply != mine.reply
    assert len(theirs.opened) == 4
    assert not set(theirs.opened) & set(mine.opened)
    assert controller.sessions.pool.in_use == 4


# --- what a peer can get wrong ---------------------------------------------------------------


@pytest.mark.parametrize(
    "datagram",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="no-space"),
        pytest.param(b" d7:command4:pinge", id="empty-cookie"),
        pytest.param(b"x" * 256 + b" d7:command4:pinge", id="cookie-too-long"),
    ],
)
def test_a_datagram_without_a_cookie_is_not_answered(datagram: bytes) -> None:
    controller = relay()
    assert controller.handle(datagram, EDGE, NOW, WALL) == Handled(None)


def raw(fields: dict[str, Encodable]) -> bytes:
    return b"3_1 " + encode(fields)


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        pytest.param(b"3_1 d7:command5:offe", "Could not decode dictionary", id="bad-bencode"),
        pytest.param(b"3_1 {}", "Could not decode dictionary: JSON", id="json"),
        pytest.param(
            raw({"command": "offer", "from-tag": CALLER_TAG, "sdp": CALLER_SDP}),
            "No call-id in message",
            id="no-call-id",
        ),
        pytest.param(
            command_datagram(b"3_1", offer(b"v=0\r\nthis is not SDP\r\n")),
            "Failed to parse SDP: Bad Request: malformed SDP line 2",
            id="sdp-unparsable",
        ),
        pytest.param(
            command_datagram(b"3_1", offer(CALLER_SDP.replace(b"c=IN IP4 192.0.2.10\r\n", b""))),
            "Failed to parse SDP: Bad Request: a media description has no c= line",
            id="sdp-without-c",
        ),
        pytest.param(
            command_datagram(b"3_1", offer(CALLER_SDP.replace(b"192.0.2.10", b"pc.example"))),
            "SDP address 'pc.example' is not an IP address",
            id="sdp-c-not-an-address",
        ),
        pytest.param(raw({"command": "dance"}), "Unrecognized command", id="unknown-command"),
    ],
)
def test_a_bad_request_gets_an_error_reason_and_changes_nothing(
    datagram: bytes, reason: str
) -> None:
    controller = relay()
    handled = controller.handle(datagram, EDGE, NOW, WALL)
    assert handled.reply is not None
    reply = expect_reply(handled.reply, b"3_1")
    assert reply.result is Result.ERROR
    assert reply.error_reason is not None
    assert reply.error_reason.startswith(reason)
    assert handled.opened == handled.closed == ()
    assert controller.sessions.pool.in_use == 0
    assert len(controller.sessions) == 0


def test_an_exhausted_pool_is_an_error_that_allocates_nothing() -> None:
    controller = relay(pairs=2)  # one single-stream call: a pair per leg
    ask(controller, offer(), cookie=b"1_1")
    reply, handled = ask(controller, offer(call_id="second@192.0.2.4"), cookie=b"2_1")
    assert reply.result is Result.ERROR
    assert reply.error_reason is not None
    assert "port pairs" in reply.error_reason
    assert "in use" in reply.error_reason
    assert handled.opened == ()
    assert controller.sessions.pool.in_use == 2
    assert controller.sessions.get("second@192.0.2.4") is None


def test_an_offer_the_pool_can_only_half_serve_takes_no_port() -> None:
    video = CALLER_SDP + b"m=video 49172 RTP/AVP 96\r\n"
    controller = relay(pairs=3)  # two streams need four pairs
    reply, handled = ask(controller, offer(video))
    assert reply.result is Result.ERROR
    assert handled.opened == ()
    assert controller.sessions.pool.in_use == 0


# --- delete, query, ping ---------------------------------------------------------------------


def test_deleting_an_unknown_call_is_ok_with_a_warning() -> None:
    reply, handled = ask(relay(), Delete(call_id="nobody@192.0.2.4"))
    assert reply == Reply.ok(warning="Unknown call-id 'nobody@192.0.2.4'")
    assert handled.closed == ()


def test_deleting_an_unknown_call_with_the_fatal_flag_is_an_error() -> None:
    reply, _ = ask(relay(), Delete(call_id="nobody@192.0.2.4", flags=("fatal",)))
    assert reply == Reply.error("Unknown call-id 'nobody@192.0.2.4'")


def test_ping_is_answered_pong() -> None:
    reply, handled = ask(relay(), Ping())
    assert reply == Reply.pong()
    assert handled.opened == handled.closed == ()


def relay_through(controller: Controller, port: int, source: Address, size: int) -> None:
    verdict = controller.sessions.receive(port, source, size, NOW + 1)
    assert isinstance(verdict, Forward), verdict


def test_query_reports_the_signalling_times_and_the_rtp_and_rtcp_totals() -> None:
    controller = relay()
    ask(controller, offer(), cookie=b"1_1", wall=WALL)
    ask(controller, answer(), cookie=b"1_2", wall=WALL + 2.5)
    caller, callee = ports(controller)
    for _ in range(3):
        relay_through(controller, caller.rtp, ("192.0.2.10", 49170), 172)
    relay_through(controller, callee.rtp, ("198.51.100.20", 5004), 172)
    relay_through(controller, callee.rtcp, ("198.51.100.20", 5005), 52)
    reply, _ = ask(controller, Query(call_id=CALL), cookie=b"1_3", wall=WALL + 9)
    assert reply == Reply.query(
        created_s=1_700_000_000,
        last_signal_s=1_700_000_002,  # the answer: a query is not signalling
        totals=CallTotals(
            rtp=StreamTotals(packets=4, octets=4 * 172), rtcp=StreamTotals(packets=1, octets=52)
        ),
    )


def test_query_of_an_unknown_call_is_an_error() -> None:
    reply, _ = ask(relay(), Query(call_id="nobody@192.0.2.4"))
    assert reply == Reply.error("Unknown call-id 'nobody@192.0.2.4'")


def test_reap_returns_the_ports_of_an_idle_call_and_forgets_it() -> None:
    controller = relay(idle_timeout_s=30.0)
    _, handled = ask(controller, offer(), cookie=b"1_1", now=NOW)
    assert controller.reap(NOW + 29.9) == ([], ())
    notices, closed = controller.reap(NOW + 30.0)
    # The edge that negotiated the call is told the relay ended it (contracts.ng.notice).
    assert [(peer, parse_notice(datagram)) for peer, datagram in notices] == [
        (EDGE, Notice(TIMEOUT, CALL))
    ]
    assert sorted(closed) == sorted(handled.opened)
    assert controller.sessions.pool.in_use == 0
    reply, _ = ask(controller, Query(call_id=CALL), cookie=b"1_2", now=NOW + 31)
    assert reply.result is Result.ERROR
