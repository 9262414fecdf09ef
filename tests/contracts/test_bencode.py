"""Bencode (BEP 3) as rtpengine's ng protocol uses it: exact wire bytes, strict rejections,
the limits that keep hostile input cheap, and properties over random input."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.ng import bencode
from contracts.ng.bencode import INT_MAX, INT_MIN, BencodeError, Value, decode, encode

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Value ↔ bytes, both ways. Dictionary keys come out sorted by their raw bytes.
CANONICAL: list[tuple[Value, bytes]] = [
    (0, b"i0e"),
    (42, b"i42e"),
    (-3, b"i-3e"),
    (INT_MAX, b"i9223372036854775807e"),
    (INT_MIN, b"i-9223372036854775808e"),
    (b"", b"0:"),
    (b"spam", b"4:spam"),
    (b"a b\x00\xff", b"5:a b\x00\xff"),
    ([], b"le"),
    ({}, b"de"),
    ([b"spam", 42, [b"x"]], b"l4:spami42el1:xee"),
    ({b"b": 1, b"a": 2}, b"d1:ai2e1:bi1ee"),
    ({b"Z": 0, b"a": 0, b"": 0}, b"d0:i0e1:Zi0e1:ai0ee"),
    # rtpengine docs/ng_control_protocol.md, the ping example without its cookie.
    ({b"command": b"ping"}, b"d7:command4:pinge"),
    ({b"result": b"pong"}, b"d6:result4:ponge"),
    ({b"flags": [b"trust-address"]}, b"d5:flagsl13:trust-addressee"),
]


@pytest.mark.parametrize(("value", "wire"), CANONICAL)
def test_encode_writes_canonical_bytes(value: Value, wire: bytes) -> None:
    assert encode(value) == wire


@pytest.mark.parametrize(("value", "wire"), CANONICAL)
def test_decode_reads_canonical_bytes(value: Value, wire: bytes) -> None:
    assert decode(wire) == value


def test_decode_accepts_keys_out_of_order_as_kamailio_writes_them() -> None:
    wire = b"d7:command5:offer7:call-id3:abc3:sdp3:v=0e"
    assert decode(wire) == {b"command": b"offer", b"call-id": b"abc", b"sdp": b"v=0"}
    assert list(decode(wire)) == [b"command", b"call-id", b"sdp"]  # type: ignore[arg-type]


def test_encode_takes_text_tuples_and_bytes_like_values() -> None:
    assert encode({"sdp": "é", "l": (1, bytearray(b"x"), memoryview(b"y"))}) == (
        b"d1:lli1e1:x1:ye3:sdp2:\xc3\xa9e"
    )


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "truncated: a value was expected at offset 0"),
        (b"x", "unexpected byte b'x' at offset 0"),
        (b"e", "unexpected byte b'e' at offset 0"),
        (b"i-0e", "malformed integer at offset 0"),
        (b"i03e", "malformed integer"),
        (b"i00e", "malformed integer"),
        (b"ie", "malformed integer"),
        (b"i e", "malformed integer"),
        (b"i 1e", "malformed integer"),
        (b"i+1e", "malformed integer"),
        (b"i1_0e", "malformed integer"),
        (b"i1", "malformed integer"),
        (b"i\xd9\xa1e", "malformed integer"),  # ARABIC-INDIC DIGIT ONE: not ASCII
        (b"i9223372036854775808e", "outside the signed 64-bit range"),
        (b"i-9223372036854775809e", "outside the signed 64-bit range"),
        (b"i99999999999999999999e", "at most 19 digits"),
        (b"03:abc", "malformed string length"),
        (b"1_0:abcdefghij", "malformed string length"),
        (b"5:ab", "truncated: the byte string at offset 0 runs past the end"),
        (b"99999999999:a", "malformed string length"),
        (b"4", "malformed string length"),
        (b"l", "truncated: a value was expected at offset 1"),
        (b"li1e", "truncated"),
        (b"d", "truncated: a dictionary key was expected at offset 1"),
        (b"d1:a", "truncated: a value was expected at offset 4"),
        (b"di1ei2ee", "dictionary key at offset 1 is not a byte string"),
        (b"dle1:ae", "dictionary key at offset 1 is not a byte string"),
        (b"d1:ai1e1:ai2ee", "duplicate dictionary key b'a'"),
        (b"i1ei2e", "trailing data after the bencoded value at offset 3"),
        (b"d7:command4:pinge\n", "trailing data"),
        (b"4:spamx", "trailing data"),
    ],
)
def test_decode_rejects_malformed_input_naming_the_problem(wire: bytes, reason: str) -> None:
    with pytest.raises(BencodeError, match=re.escape(reason)) as caught:
        decode(wire)
    assert isinstance(caught.value, ValueError)


def nested(depth: int) -> bytes:
    return b"l" * depth + b"e" * depth


def test_nesting_is_bounded() -> None:
    assert decode(nested(bencode.DEFAULT_MAX_DEPTH)) is not None
    with pytest.raises(BencodeError, match="nesting too deep"):
        decode(nested(bencode.DEFAULT_MAX_DEPTH + 1))
    with pytest.raises(BencodeError, match="nesting too deep"):
        decode(b"d1:a" * 3 + b"i1e" + b"e" * 3, max_depth=2)


def test_hostile_depth_is_an_error_not_a_recursion_error() -> None:
    with pytest.raises(BencodeError, match="nesting too deep"):
        decode(nested(30_000), max_bytes=100_000)


def test_size_is_bounded() -> None:
    wire = b"65531:" + b"x" * 65_531
    assert len(wire) == bencode.DEFAULT_MAX_BYTES + 2
    with pytest.raises(BencodeError, match="exceeds the limit of 65535"):
        decode(wire)
    assert decode(b"4:spam", max_bytes=6) == b"spam"
    with pytest.raises(BencodeError, match="exceeds the limit of 5"):
        decode(b"4:spam", max_bytes=5)


@pytest.mark.parametrize("max_depth", [-1, bencode.MAX_DEPTH_LIMIT + 1])
def test_a_depth_limit_that_could_reach_the_stack_limit_is_refused(max_depth: int) -> None:
    with pytest.raises(ValueError, match="max_depth must be between"):
        decode(b"i1e", max_depth=max_depth)
    with pytest.raises(ValueError, match="max_depth must be between"):
        encode(1, max_depth=max_depth)


@pytest.mark.parametrize("value", [True, 1.5, None, object(), {1: b"x"}])
def test_encode_refuses_types_without_a_bencode_form(value: object) -> None:
    with pytest.raises(TypeError, match="cannot bencode"):
        encode(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (INT_MAX + 1, "outside the signed 64-bit range"),
        (INT_MIN - 1, "outside the signed 64-bit range"),
        ({"a": 1, b"a": 2}, "dictionary key b'a' given twice"),
        ([[[b"deep"]]], "nesting too deep"),
    ],
)
def test_encode_refuses_values_outside_the_limits(value: object, reason: str) -> None:
    with pytest.raises(BencodeError, match=reason):
        encode(value, max_depth=2)  # type: ignore[arg-type]


def test_encode_refuses_a_list_that_contains_itself() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(BencodeError, match="nesting too deep"):
        encode(loop)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------

values: st.SearchStrategy[Value] = st.recursive(
    st.integers(INT_MIN, INT_MAX) | st.binary(max_size=24),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.binary(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
# Bytes made of bencode's own alphabet reach far deeper into the decoder than random bytes.
bencode_ish = st.binary(max_size=120) | st.lists(
    st.sampled_from([b"i", b"l", b"d", b"e", b":", b"-", b"0", b"1", b"9", b"a", b"3:abc"]),
    max_size=60,
).map(b"".join)


@FAST
@given(values)
def test_round_trip(value: Value) -> None:
    assert decode(encode(value)) == value


@FAST
@given(values)
def test_encoding_is_canonical(value: Value) -> None:
    wire = encode(value)
    assert encode(decode(wire)) == wire


@FAST
@given(bencode_ish)
def test_arbitrary_bytes_give_a_value_or_a_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError:
        return
    assert decode(encode(value)) == value
    # Strict: what decodes is canonical but for the order of dictionary keys.
    assert len(encode(value)) == len(data)


@FAST
@given(values, st.data())
def test_a_corrupted_encoding_gives_a_value_or_a_bencode_error(
    value: Value, data: st.DataObject
) -> None:
    wire = bytearray(encode(value))
    position = data.draw(st.integers(0, len(wire)))
    edit = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    byte = data.draw(st.integers(0, 255))
    if edit == "flip" and position < len(wire):
        wire[position] = byte
    elif edit == "insert":
        wire.insert(position, byte)
    elif edit == "delete" and position < len(wire):
        del wire[position]
    else:
        del wire[position:]
    with contextlib.suppress(BencodeError):
        decode(bytes(wire))
