"""Properties: serialization round trips, numeric header ranges, and garbage in → ParseError."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipedge.sip.address import Address, parse_address
from sipedge.sip.errors import ParseError
from sipedge.sip.framing import StreamFramer, parse_datagram
from sipedge.sip.grammar import Params
from sipedge.sip.headers import parse_cseq, parse_max_forwards, parse_uint
from sipedge.sip.message import Request, Response
from sipedge.sip.parser import check_request
from sipedge.sip.uri import SipUri, TelUri, parse_uri

DATA = Path(__file__).resolve().parents[2] / "data" / "sip-torture"
TORTURE = sorted(DATA.rglob("*.sip"))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
# No surrogates: the wire is UTF-8.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::10]"),
)
param_names = st.text(string.ascii_lowercase + "-", min_size=1, max_size=8)
uri_params = st.lists(
    st.tuples(param_names, st.one_of(st.none(), any_text.filter(bool))),
    max_size=4,
).map(Params)
sip_uris = st.builds(
    SipUri,
    host=hosts,
    user=st.one_of(st.none(), any_text.filter(bool)),
    password=st.none(),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    params=uri_params,
    headers=st.lists(st.tuples(tokens, any_text), max_size=2).map(tuple),
    scheme=st.sampled_from(["sip", "sips"]),
)
header_params = st.lists(st.tuples(param_names, st.one_of(st.none(), tokens)), max_size=3).map(
    Params
)
display_names = st.one_of(
    st.none(), st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=20)
)
addresses = st.builds(
    Address,
    uri=sip_uris.map(lambda uri: uri._replace(headers=())),
    display_name=display_names,
    params=header_params,
)


@FAST
@given(sip_uris)
def test_sip_uri_round_trip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


@FAST
@given(st.from_regex(r"\+?[0-9]{1,15}", fullmatch=True), header_params)
def test_tel_uri_round_trip(number: str, params: Params) -> None:
    uri = TelUri(number, params)
    assert parse_uri(str(uri)) == uri


@FAST
@given(addresses)
def test_address_round_trip(address: Address) -> None:
    assert parse_address(str(address), "To") == address


@FAST
@given(
    method=tokens,
    uri=sip_uris,
    from_=addresses,
    to=addresses,
    call_id=st.from_regex(r"[A-Za-z0-9.\-]{1,20}(@[a-z0-9.]{1,10})?", fullmatch=True),
    cseq=st.integers(0, 2**31 - 1),
    branch=tokens,
    body=st.binary(max_size=200),
)
def test_request_round_trip(
    method: str,
    uri: SipUri,
    from_: Address,
    to: Address,
    call_id: str,
    cseq: int,
    branch: str,
    body: bytes,
) -> None:
    request = Request(
        method,
        uri,
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch};rport"),
            ("From", str(from_)),
            ("To", str(to)),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Max-Forwards", "70"),
        ],
        body,
    )
    wire = request.to_bytes()
    for parsed in (parse_datagram(wire), StreamFramer().feed(wire)[0]):
        assert isinstance(parsed, Request)
        assert (parsed.method, parsed.uri, parsed.body) == (method, uri, body)
        assert (parsed.from_, parsed.to, parsed.call_id) == (from_, to, call_id)
        assert (parsed.cseq.number, parsed.branch) == (cseq, f"z9hG4bK{branch}")
        assert parsed.to_bytes() == wire


@FAST
@given(st.integers(100, 699), st.text(st.characters(exclude_categories=["Cs", "Cc"])))
def test_response_round_trip(status: int, reason: str) -> None:
    response = Response(status, reason, [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")])
    parsed = parse_datagram(response.to_bytes())
    assert isinstance(parsed, Response)
    assert (parsed.status, parsed.reason) == (status, reason)


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(0, 5))
def test_uint_with_leading_zeros(number: int, zeros: int) -> None:
    assert parse_uint("0" * zeros + str(number), "Expires") == number


@FAST
@given(st.integers(2**32, 2**80))
def test_uint_never_wraps(number: int) -> None:
    with pytest.raises(ParseError, match="out of range") as caught:
        parse_uint(str(number), "CSeq")
    assert caught.value.status == 400


@FAST
@given(st.integers(0, 10**6))
def test_max_forwards_range(number: int) -> None:
    if number <= 255:
        assert parse_max_forwards(str(number)) == number
    else:
        with pytest.raises(ParseError, match="Max-Forwards is out of range"):
            parse_max_forwards(str(number))


@FAST
@given(st.integers(0, 2**32 - 1), tokens)
def test_cseq_values(number: int, method: str) -> None:
    cseq = parse_cseq(f"{number:010d}  {method}")
    assert (cseq.number, cseq.method) == (number, method)


def feed_peer_bytes(data: bytes) -> None:
    """Everything a peer's bytes can reach: only ParseError may come out."""
    try:
        message = parse_datagram(data)
    except ParseError:
        return
    try:
        if isinstance(message, Request):
            check_request(message)
            _ = (message.option_tags("Supported"), message.record_routes)
        else:
            _ = (message.vias, message.cseq, message.from_, message.to, message.contacts)
    except ParseError:
        pass
    message.to_bytes()
    for item in StreamFramer().feed(data):
        _ = item


@FAST
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_parse_errors(data: bytes) -> None:
    feed_peer_bytes(data)


@FAST
@given(
    st.sampled_from(TORTURE),
    st.lists(st.tuples(st.integers(0, 2000), st.binary(max_size=3), st.integers(0, 3)), max_size=6),
)
def test_mutated_torture_messages_only_raise_parse_errors(
    path: Path, edits: list[tuple[int, bytes, int]]
) -> None:
    data = bytearray(path.read_bytes())
    for position, insert, delete in edits:
        at = position % (len(data) + 1)
        data[at : at + delete] = insert
    feed_peer_bytes(bytes(data))
