"""Properties of the STUN codec: round trips, and garbage in → StunError, never anything else.

RFC 8489 §5, §14; :func:`answer_binding` must not raise on any datagram from any source.
"""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediarelay.stun import (
    MAGIC_COOKIE,
    BindingError,
    BindingServer,
    BindingSuccess,
    ErrorCode,
    Message,
    MessageClass,
    StunError,
    TransportAddress,
    answer_binding,
    build_message,
    check_integrity,
    parse_binding,
    parse_message,
    short_term_key,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "stun"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = ("192.0.2.1", 32853)
ICE = BindingServer(passwords={"evtj:h6vY": "VOkJxbRl1RmTxUk/WvJxBt"})


def wire(name: str) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


VECTORS = [wire(f"rfc5769-{name}.hex") for name in ("request", "ipv4-response", "ipv6-response")]

transaction_ids = st.binary(min_size=12, max_size=12)
addresses = st.builds(TransportAddress, st.ip_addresses(), st.integers(0, 0xFFFF))
# RFC 8489 §14.8, §14.14: fewer than 128 characters; no surrogates, the wire is UTF-8.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=127)
softwares = st.none() | texts
successes = st.builds(BindingSuccess, transaction_ids, addresses, softwares)
errors = st.builds(
    BindingError,
    transaction_ids,
    st.builds(ErrorCode, st.integers(300, 699), texts),
    st.lists(st.integers(0, 0xFFFF), max_size=9).map(tuple),
    softwares,
)
keys = st.none() | st.binary(max_size=64)


@FAST
@given(st.one_of(successes, errors), keys, st.booleans(), st.booleans())
def test_parse_inverts_build(
    answer: BindingSuccess | BindingError, key: bytes | None, sha256: bool, fingerprint: bool
) -> None:
    data = build_message(answer.to_message(), key=key, sha256=sha256, fingerprint=fingerprint)
    assert len(data) % 4 == 0
    assert parse_binding(data) == answer
    if key is not None:
        assert check_integrity(parse_message(data), key)
        assert not check_integrity(parse_message(data), key + b"!")


@FAST
@given(st.integers(0, 0xFFF), st.sampled_from(MessageClass), transaction_ids)
def test_every_method_and_class_survives_the_wire(
    method: int, cls: MessageClass, tid: bytes
) -> None:
    message = Message(method, cls, tid)
    assert parse_message(build_message(message, fingerprint=True)).transaction_id == tid
    assert parse_message(build_message(message)) == message


def _outcome(data: bytes) -> str:
    try:
        parse_message(data)
    except StunError as exc:
        return "dropped" if exc.status is None else f"answer {exc.status}"
    return "parsed"


def _must_not_raise_but_stun_error(data: bytes) -> None:
    assert _outcome(data) in {"parsed", "dropped", "answer 400"}
    for server in (BindingServer(), ICE):
        answer = answer_binding(data, SOURCE, server)
        assert answer is None or parse_message(answer).transaction_id == data[8:20]


@FAST
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    _must_not_raise_but_stun_error(data)


def _framed(first: int, body: bytes) -> bytes:
    """A header that passes every RFC 8489 §6.3 check, then ``body`` padded to 32 bits."""
    body += bytes(-len(body) % 4)
    return struct.pack(">HHI12s", first & 0x3FFF, len(body), MAGIC_COOKIE, bytes(12)) + body


@FAST
@given(st.integers(0, 0x3FFF), st.binary(max_size=256))
def test_random_attributes_behind_a_good_header(first: int, body: bytes) -> None:
    _must_not_raise_but_stun_error(_framed(first, body))


attribute_bytes = st.builds(
    lambda kind, value: struct.pack(">HH", kind, len(value)) + value + bytes(-len(value) % 4),
    st.sampled_from([0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x001C, 0x0020, 0x0024, 0x0025,
                     0x8022, 0x8028, 0x8029, 0x802A, 0x7FFF, 0xC000]),
    st.binary(max_size=40),
)  # fmt: skip


@FAST
@given(st.lists(attribute_bytes, max_size=8))
def test_random_known_attributes_in_a_binding_request(parts: list[bytes]) -> None:
    """Well-framed attributes of the types we read, with arbitrary values."""
    _must_not_raise_but_stun_error(_framed(0x0001, b"".join(parts)))


@FAST
@given(st.sampled_from(VECTORS), st.data())
def test_a_flipped_bit_under_the_fingerprint_is_dropped(vector: bytes, data: st.DataObject) -> None:
    """Any change to the octets FINGERPRINT covers, or to its value, is caught (§14.7).

    Only its own attribute header is exempt: change that and there is no FINGERPRINT.
    """
    fingerprint_header = range(len(vector) - 8, len(vector) - 4)
    at = data.draw(st.integers(0, len(vector) - 1).filter(lambda i: i not in fingerprint_header))
    bit = data.draw(st.integers(0, 7))
    damaged = vector[:at] + bytes([vector[at] ^ (1 << bit)]) + vector[at + 1 :]
    assert _outcome(damaged) == "dropped", f"octet {at} bit {bit}"
    assert answer_binding(damaged, SOURCE, ICE) is None


@FAST
@given(st.text(max_size=40))
def test_short_term_key_never_raises(password: str) -> None:
    assert isinstance(short_term_key(password), bytes)
