"""rtpengine's ng protocol (sipwise/rtpengine docs/ng_control_protocol.md): the documented
examples on the wire, the command model, error replies, the client side and garbage in."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.ng.bencode import Encodable, encode
from contracts.ng.control import (
    Answer,
    CallTotals,
    Command,
    ControlError,
    ControlMisuse,
    CookieMismatch,
    Delete,
    Ice,
    MalformedDatagram,
    Offer,
    Ping,
    Query,
    ReceivedFrom,
    Reply,
    ReplyError,
    Request,
    RequestError,
    Result,
    StreamTotals,
    command_datagram,
    error_datagram,
    expect_reply,
    parse_reply,
    parse_request,
    reply_datagram,
    split_datagram,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"


def datagram(fields: dict[str, Encodable], cookie: bytes = b"5323_1") -> bytes:
    return cookie + b" " + encode(fields)


def rejection(fields: dict[str, Encodable]) -> str:
    with pytest.raises(RequestError) as caught:
        parse_request(datagram(fields))
    assert caught.value.cookie == b"5323_1"
    return caught.value.reason


# --- the documented examples -------------------------------------------------------------


def test_ping_and_pong_exactly_as_documented() -> None:
    request = parse_request(b"5323_1 d7:command4:pinge")
    assert request == Request(b"5323_1", Ping())
    assert reply_datagram(request.cookie, Reply.pong()) == b"5323_1 d6:result4:ponge"


def test_the_documented_offer() -> None:
    """§ "offer": "An example of a complete offer request dictionary could be"."""
    request = parse_request(
        datagram(
            {
                "command": "offer",
                "call-id": "cfBXzDSZqhYNcXM",
                "from-tag": "mS9rSAn0Cr",
                "sdp": SDP,
                "via-branch": "5KiTRPZHH1nL6",
                "flags": ["trust address"],
                "replace": ["origin", "session connection"],
                "address family": "IP6",
                "received-from": ["IP4", "10.65.31.43"],
                "ICE": "force",
                "transport protocol": "RTP/SAVPF",
                "media address": "2001:d8::6f24:65b",
                "DTLS": "passive",
            }
        )
    )
    assert request.command == Offer(
        call_id="cfBXzDSZqhYNcXM",
        from_tag="mS9rSAn0Cr",
        sdp=SDP,
        via_branch="5KiTRPZHH1nL6",
        flags=("trust-address",),
        replace=("origin", "session-connection"),
        received_from=ReceivedFrom(IPv4Address("10.65.31.43")),
        ice=Ice.FORCE,
    )
    assert request.ignored_keys == ("DTLS", "address-family", "media-address", "transport-protocol")


def test_the_documented_offer_reply() -> None:
    """§ "offer": "The response message only contains the key sdp in addition to result"."""
    assert reply_datagram(b"c1", Reply.ok(sdp=b"v=0\r\n")) == b"c1 d6:result2:ok3:sdp5:v=0\r\ne"


def test_keys_in_insertion_order_as_kamailio_sends_them() -> None:
    wire = b"12_345_6 d7:command6:delete7:call-id3:abc8:from-tag2:t1e"
    assert parse_request(wire).command == Delete(call_id="abc", from_tag="t1")


def test_an_error_reply_has_the_reason_and_nothing_else() -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(b"7_1 d7:command4:liste")
    assert error_datagram(caught.value) == (
        b"7_1 d12:error-reason20:Unrecognized command6:result5:errore"
    )


# --- the command model ------------------------------------------------------------------


def test_answer_carries_the_to_tag() -> None:
    command = parse_request(
        datagram({"command": "answer", "call-id": "c", "from-tag": "f", "to-tag": "t", "sdp": SDP})
    ).command
    assert command == Answer(call_id="c", from_tag="f", to_tag="t", sdp=SDP)


def test_a_re_offer_may_carry_the_to_tag() -> None:
    command = parse_request(
        datagram({"command": "offer", "call-id": "c", "from-tag": "f", "to-tag": "t", "sdp": SDP})
    ).command
    assert isinstance(command, Offer)
    assert command.to_tag == "t"


def test_flags_match_with_spaces_or_hyphens() -> None:
    offer = Offer(call_id="c", from_tag="f", sdp=SDP, flags=("trust-address", "symmetric"))
    assert offer.has_flag("trust address")
    assert offer.has_flag("trust-address")
    assert not offer.has_flag("asymmetric")


def test_ice_and_received_from_in_their_other_spellings() -> None:
    command = parse_request(
        datagram(
            {
                "command": "offer",
                "call-id": "c",
                "from-tag": "f",
                "sdp": SDP,
                "ICE": "force relay",
                "received from": ["IP6", "2001:db8::1"],
                "direction": ["priv", "pub"],
            }
        )
    ).command
    assert isinstance(command, Offer)
    assert command.ice is Ice.FORCE_RELAY
    assert command.received_from == ReceivedFrom(IPv6Address("2001:db8::1"))
    assert command.direction == ("priv", "pub")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"command": "delete", "call-id": "c"}, Delete(call_id="c")),
        (
            {
                "command": "delete",
                "call-id": "c",
                "from-tag": "f",
                "to-tag": "t",
                "via-branch": "z9hG4bK1",
                "flags": ["fatal"],
                "delete delay": 0,
            },
            Delete(
                call_id="c",
                from_tag="f",
                to_tag="t",
                via_branch="z9hG4bK1",
                flags=("fatal",),
                delete_delay_s=0,
            ),
        ),
        (
            {"command": "delete", "call-id": "c", "delete-delay": "30"},
            Delete(call_id="c", delete_delay_s=30),
        ),
        ({"command": "delete", "call-id": "c", "to-tag": ""}, Delete(call_id="c")),
        ({"command": "query", "call-id": "c"}, Query(call_id="c")),
        ({"command": "query", "call-id": "c", "from-tag": "f"}, Query(call_id="c", from_tag="f")),
    ],
)
def test_delete_and_query(fields: dict[str, Encodable], expected: Command) -> None:
    assert parse_request(datagram(fields)).command == expected


def test_fatal_is_a_delete_flag() -> None:
    assert Delete(call_id="c", flags=("fatal",)).fatal
    assert not Delete(call_id="c").fatal


OFFER: dict[str, Encodable] = {"command": "offer", "call-id": "c", "from-tag": "f", "sdp": SDP}


def offer_with(**changes: Encodable | None) -> dict[str, Encodable]:
    fields = {**OFFER, **{key.replace("_", "-"): value for key, value in changes.items()}}
    return {key: value for key, value in fields.items() if value is not None}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"call-id": "c"}, 'Dictionary contains no key "command"'),
        ({"command": 1}, "'command' must be a byte string, not an integer"),
        ({"command": "list"}, "Unrecognized command"),
        ({"command": "start recording"}, "Unrecognized command"),
        ({"command": "Ping"}, "Unrecognized command"),
        (offer_with(call_id=None), "No call-id in message"),
        (offer_with(call_id=""), "No call-id in message"),
        (offer_with(from_tag=None), "No from-tag in message"),
        (offer_with(sdp=None), "No SDP body in message"),
        (offer_with(sdp=""), "No SDP body in message"),
        ({**OFFER, "command": "answer"}, "No to-tag in message"),
        ({"command": "delete", "from-tag": "f"}, "No call-id in message"),
        ({"command": "query"}, "No call-id in message"),
        (offer_with(sdp=["v=0"]), "'sdp' must be a byte string, not a list"),
        (offer_with(call_id=7), "'call-id' must be a byte string, not an integer"),
        (offer_with(from_tag={"a": "b"}), "'from-tag' must be a byte string, not a dictionary"),
        (offer_with(call_id=b"\xff\xfe"), "'call-id' is not valid UTF-8"),
        (
            offer_with(flags="trust-address"),
            "'flags' must be a list of byte strings, not a byte string",
        ),
        (offer_with(flags=["symmetric", 1]), "'flags[1]' must be a byte string, not an integer"),
        (offer_with(replace=[b"\xc3"]), "'replace[0]' is not valid UTF-8"),
        (
            offer_with(ICE="forced"),
            "'ICE' must be one of remove, force, default, force-relay, optional; not 'forced'",
        ),
        (
            offer_with(direction=["a", "b", "c"]),
            "'direction' names 3 interfaces; at most 2 (from, to)",
        ),
        (
            offer_with(received_from=["IP4"]),
            "'received-from' must be a list of two strings: [family, address]",
        ),
        (
            offer_with(received_from=["IP6", "10.0.0.1"]),
            "'received-from' address '10.0.0.1' is not of family 'IP6'",
        ),
        (
            offer_with(received_from=["IP4", "proxy.example"]),
            "'received-from' address 'proxy.example' is not an IP address",
        ),
        (
            offer_with(received_from="10.0.0.1"),
            "'received-from' must be a list of byte strings, not a byte string",
        ),
        (
            {"command": "delete", "call-id": "c", "delete-delay": -1},
            "'delete-delay' must be a count of seconds",
        ),
        (
            {"command": "delete", "call-id": "c", "delete-delay": "soon"},
            "'delete-delay' must be a count of seconds",
        ),
        (
            {"command": "delete", "call-id": "c", "delete-delay": "-1"},
            "'delete-delay' must be a count of seconds",
        ),
        (
            {**OFFER, "received from": ["IP4", "10.0.0.1"], "received-from": ["IP4", "10.0.0.1"]},
            "key 'received-from' given twice, with spaces and with hyphens",
        ),
    ],
)
def test_rejections_name_the_problem(fields: dict[str, Encodable], reason: str) -> None:
    assert rejection(fields).startswith(reason)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "Invalid data (no payload)"),
        (b"d7:command4:ping", "Could not decode dictionary: truncated"),
        (b"l7:command4:pinge", "Could not decode dictionary: the payload is a list"),
        (b"i1e", "Could not decode dictionary: the payload is an integer"),
        (
            b'{"command": "ping"}',
            "Could not decode dictionary: JSON is not supported, send bencode",
        ),
        (b"d7:command4:pinge ", "Could not decode dictionary: trailing data"),
        (
            b"d7:command4:ping7:command4:pinge",
            "Could not decode dictionary: duplicate dictionary key",
        ),
    ],
)
def test_payloads_that_are_not_a_dictionary(payload: bytes, reason: str) -> None:
    with pytest.raises(RequestError, match=re.escape(reason)) as caught:
        parse_request(b"c9 " + payload)
    assert caught.value.cookie == b"c9"


@pytest.mark.parametrize(
    "wire", [b"", b"d7:command4:pinge", b" d7:command4:pinge", b"x" * 256 + b" d7:command4:pinge"]
)
def test_without_a_usable_cookie_there_is_nothing_to_answer(wire: bytes) -> None:
    with pytest.raises(MalformedDatagram):
        parse_request(wire)


def test_the_cookie_ends_at_the_first_space() -> None:
    assert split_datagram(b"a b c") == (b"a", b"b c")
    assert split_datagram(b"x" * 255 + b" ") == (b"x" * 255, b"")


# --- client side: building commands and reading replies -------------------------------------


COMMANDS: list[Command] = [
    Ping(),
    Offer(call_id="c", from_tag="f", sdp=SDP),
    Offer(
        call_id="cfBXzDSZqhYNcXM",
        from_tag="mS9rSAn0Cr",
        to_tag="t",
        sdp=SDP,
        via_branch="z9hG4bK.1",
        flags=("trust-address", "symmetric"),
        replace=("origin",),
        direction=("priv", "pub"),
        ice=Ice.REMOVE,
        received_from=ReceivedFrom(IPv6Address("2001:db8::7")),
    ),
    Answer(call_id="c", from_tag="f", to_tag="t", sdp=SDP, ice=Ice.FORCE),
    Delete(call_id="c"),
    Delete(call_id="c", from_tag="f", to_tag="t", flags=("fatal",), delete_delay_s=5),
    Query(call_id="ć", from_tag="f", to_tag="t"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_the_client_builds_reads_back_alike(command: Command) -> None:
    assert parse_request(command_datagram(b"42_7", command)) == Request(b"42_7", command)


def test_a_command_on_the_wire() -> None:
    assert command_datagram(b"7_1", Delete(call_id="abc", from_tag="x")) == (
        b"7_1 d7:call-id3:abc7:command6:delete8:from-tag1:xe"
    )
    assert command_datagram(b"7_2", Ping()) == b"7_2 d7:command4:pinge"


@pytest.mark.parametrize("cookie", [b"", b"a b", b"x" * 256])
def test_a_cookie_the_protocol_cannot_carry_is_our_own_mistake(cookie: bytes) -> None:
    with pytest.raises(ControlMisuse, match="a cookie is 1 to 255 bytes without a space"):
        command_datagram(cookie, Ping())
    with pytest.raises(ControlMisuse):
        reply_datagram(cookie, Reply.pong())


QUERY_REPLY = Reply.query(
    created_s=1402064111,
    last_signal_s=1402064116,
    totals=CallTotals(rtp=StreamTotals(705, 100287, 0), rtcp=StreamTotals(22, 2244, 0)),
)
REPLIES = [
    Reply.pong(),
    Reply.ok(),
    Reply.ok(sdp=SDP),
    Reply.ok(warning="Call-ID not found or tags didn't match"),
    Reply.error("No call-id in message"),
    QUERY_REPLY,
]


@pytest.mark.parametrize("reply", REPLIES)
def test_a_reply_reads_back_alike(reply: Reply) -> None:
    assert parse_reply(reply_datagram(b"c1", reply)) == (b"c1", reply)


def test_the_query_reply_on_the_wire() -> None:
    """§ "query": "totals" holds "RTP" and "RTCP", each like "stats"."""
    assert reply_datagram(b"q", QUERY_REPLY) == (
        b"q d7:createdi1402064111e11:last signali1402064116e6:result2:ok"
        b"6:totalsd4:RTCPd5:bytesi2244e6:errorsi0e7:packetsi22ee"
        b"3:RTPd5:bytesi100287e6:errorsi0e7:packetsi705eeee"
    )


def test_reply_keys_beyond_the_model_are_skipped() -> None:
    wire = datagram({"result": "ok", "tags": {"f": {"created": 1}}, "SSRC": {}}, cookie=b"c")
    assert parse_reply(wire) == (b"c", Reply.ok())


def test_the_client_matches_the_cookie() -> None:
    sent = b"991_3"
    assert expect_reply(b"991_3 d6:result4:ponge", sent) == Reply.pong()
    with pytest.raises(CookieMismatch, match="reply for cookie '991_2', expected '991_3'"):
        expect_reply(b"991_2 d6:result4:ponge", sent)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"sdp": "v=0"}, "reply has no 'result'"),
        ({"result": "maybe"}, "unknown result 'maybe'"),
        ({"result": 1}, "reply key 'result' is an integer"),
        ({"result": "error"}, "inconsistent 'error' reply"),
        ({"result": "pong", "sdp": "v=0"}, "inconsistent 'pong' reply"),
        ({"result": "ok", "error-reason": "x"}, "inconsistent 'ok' reply"),
        ({"result": "ok", "sdp": ["v=0"]}, "reply key 'sdp' is a list"),
        ({"result": "ok", "warning": b"\xff"}, "reply key 'warning' is not valid UTF-8"),
        ({"result": "ok", "totals": {"RTP": {"bytes": "1"}}}, "reply key 'bytes' is a byte string"),
    ],
)
def test_a_malformed_reply_is_a_reply_error(fields: dict[str, Encodable], reason: str) -> None:
    with pytest.raises(ReplyError, match=re.escape(reason)):
        parse_reply(datagram(fields))


@pytest.mark.parametrize(
    "build",
    [
        lambda: Reply(result=Result.ERROR),
        lambda: Reply(result=Result.ERROR, error_reason=""),
        lambda: Reply(result=Result.ERROR, error_reason="x", sdp=b""),
        lambda: Reply(result=Result.OK, error_reason="x"),
        lambda: Reply(result=Result.PONG, warning="w"),
    ],
)
def test_an_impossible_reply_is_our_own_mistake(build: Callable[[], Reply]) -> None:
    with pytest.raises(ControlMisuse):
        build()


def test_back_to_back_client_and_server() -> None:
    """An edge asks for an offer; the relay reads it, answers, and the edge matches it."""
    offer = Offer(call_id="a84b4c76e66710", from_tag="1928301774", sdp=SDP, ice=Ice.REMOVE)
    request = parse_request(command_datagram(b"1_1", offer))
    assert isinstance(request.command, Offer)
    rewritten = request.command.sdp.replace(b"192.0.2.10", b"198.51.100.1")
    reply = expect_reply(reply_datagram(request.cookie, Reply.ok(sdp=rewritten)), b"1_1")
    assert reply.result is Result.OK
    assert reply.sdp == SDP.replace(b"192.0.2.10", b"198.51.100.1")


# --- properties --------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
words = st.lists(texts.map(lambda word: word.replace(" ", "-")), max_size=3).map(tuple)
addresses = st.one_of(
    st.ip_addresses(v=4).map(ReceivedFrom),
    st.ip_addresses(v=6).map(ReceivedFrom),
)
sdps = st.binary(min_size=1, max_size=40)
negotiation = {
    "call_id": texts,
    "from_tag": texts,
    "sdp": sdps,
    "via_branch": st.none() | texts,
    "flags": words,
    "replace": words,
    "direction": st.lists(texts, max_size=2).map(tuple),
    "ice": st.none() | st.sampled_from(Ice),
    "received_from": st.none() | addresses,
}
commands: st.SearchStrategy[Command] = st.one_of(
    st.just(Ping()),
    st.builds(Offer, **negotiation, to_tag=st.none() | texts),
    st.builds(Answer, **negotiation, to_tag=texts),
    st.builds(
        Delete,
        call_id=texts,
        from_tag=st.none() | texts,
        to_tag=st.none() | texts,
        flags=words,
        delete_delay_s=st.none() | st.integers(0, 2**31),
    ),
    st.builds(Query, call_id=texts, from_tag=st.none() | texts, to_tag=st.none() | texts),
)
cookies = st.binary(min_size=1, max_size=20).filter(lambda cookie: b" " not in cookie)


@FAST
@given(cookies, commands)
def test_every_command_round_trips(cookie: bytes, command: Command) -> None:
    assert parse_request(command_datagram(cookie, command)) == Request(cookie, command)


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_request_or_a_control_error(data: bytes) -> None:
    with contextlib.suppress(ControlError):
        parse_request(data)
    with contextlib.suppress(ControlError):
        parse_reply(data)


@FAST
@given(commands, st.data())
def test_a_corrupted_command_gives_a_request_or_a_control_error(
    command: Command, data: st.DataObject
) -> None:
    wire = bytearray(command_datagram(b"c", command))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(wire) - 1))
        wire[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ControlError):
        parse_request(bytes(wire))
