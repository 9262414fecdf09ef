"""STUN as the RFCs tell it: RFC 5769's vectors, then what a Binding server drops and answers.

RFC 5769 §2.1-2.3 (bytes as the RFC prints them), RFC 8489 §5, §6.3, §9.1.3, §14.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest

from mediarelay.stun import (
    BINDING,
    DEFAULT_SOFTWARE,
    FINGERPRINT,
    ICE_CONTROLLED,
    MAGIC_COOKIE,
    MAPPED_ADDRESS,
    MAX_ATTRIBUTES,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    PLAIN_SERVER,
    PRIORITY,
    SOFTWARE,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    Attribute,
    BindingError,
    BindingRequest,
    BindingServer,
    BindingSuccess,
    ErrorCode,
    Message,
    MessageClass,
    StunError,
    StunMisuse,
    TransportAddress,
    answer_binding,
    build_message,
    check_integrity,
    looks_like_stun,
    message_type,
    parse_binding,
    parse_message,
    short_term_key,
    split_message_type,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "stun"


def wire(name: str) -> bytes:
    """The octets of a vector file: hex as the RFC prints it; ``#`` starts a comment."""
    text = (DATA / name).read_text(encoding="utf-8")
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


# RFC 5769 §2.1-2.3; tests/data/stun/README.md says where they come from. The RFC pads with
# spaces (0x20) where RFC 8489 §14 now sends zeros.
REQUEST = wire("rfc5769-request.hex")
IPV4_RESPONSE = wire("rfc5769-ipv4-response.hex")
IPV6_RESPONSE = wire("rfc5769-ipv6-response.hex")
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
USER = "evtj:h6vY"
PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"
KEY = short_term_key(PASSWORD)
RESPONSES = [
    pytest.param(IPV4_RESPONSE, "192.0.2.1", id="§2.2 IPv4"),
    pytest.param(IPV6_RESPONSE, "2001:db8:1234:5678:11:2233:4455:6677", id="§2.3 IPv6"),
]


def test_short_term_key_is_the_password_for_ascii() -> None:
    """RFC 8489 §9.1.1: the key is OpaqueString(password); for ASCII, the password itself."""
    assert short_term_key(PASSWORD) == PASSWORD.encode()
    assert short_term_key("caf\u0065\u0301\u00a0x") == "caf\u00e9 x".encode()  # NFC, Zs → space


def test_rfc5769_request_reads() -> None:
    message = parse_message(REQUEST)
    assert (message.method, message.cls, message.transaction_id) == (
        BINDING,
        MessageClass.REQUEST,
        TID,
    )
    assert message.get(SOFTWARE) == "STUN test client"
    assert message.get(PRIORITY) == 0x6E0001FF
    assert message.get(ICE_CONTROLLED) == 0x932FF9B151263B36
    assert message.get(USERNAME) == USER
    assert message.get(FINGERPRINT) == 0xE57A3BCF
    assert message.unknown_required() == ()  # PRIORITY is ICE's, and understood
    assert parse_binding(REQUEST) == BindingRequest(TID, USER, "STUN test client")


def test_rfc5769_request_integrity() -> None:
    message = parse_message(REQUEST)
    assert check_integrity(message, KEY)
    assert not check_integrity(message, b"VOkJxbRl1RmTxUk/WvJxBu")


def test_rfc5769_request_rebuilds_byte_for_byte() -> None:
    """With the RFC's space padding, our HMAC and CRC reproduce every byte."""
    message = parse_message(REQUEST)
    unsigned = replace(message, attributes=message.attributes[:-2])  # less MI, FINGERPRINT
    assert build_message(unsigned, key=KEY, fingerprint=True, padding=b" ") == REQUEST
    assert build_message(message, padding=b" ") == REQUEST  # carried over as they are


@pytest.mark.parametrize(("data", "ip"), RESPONSES)
def test_rfc5769_response_reads(data: bytes, ip: str) -> None:
    message = parse_message(data)
    assert check_integrity(message, KEY)
    assert message.get(XOR_MAPPED_ADDRESS) == TransportAddress(ip_address(ip), 32853)
    assert parse_binding(data) == BindingSuccess(
        TID, TransportAddress(ip_address(ip), 32853), "test vector"
    )


@pytest.mark.parametrize(("data", "ip"), RESPONSES)
def test_rfc5769_response_rebuilds_byte_for_byte(data: bytes, ip: str) -> None:
    answer = BindingSuccess(TID, TransportAddress(ip_address(ip), 32853), "test vector")
    assert build_message(answer.to_message(), key=KEY, fingerprint=True, padding=b" ") == data


@pytest.mark.parametrize(("data", "ip"), RESPONSES)
def test_zero_padding_changes_only_the_pad_and_what_covers_it(data: bytes, ip: str) -> None:
    """RFC 8489 §14 pads with zeros: the one pad byte of SOFTWARE differs, then the HMAC and
    CRC computed over it; the message reads the same and still verifies."""
    answer = BindingSuccess(TID, TransportAddress(ip_address(ip), 32853), "test vector")
    ours = build_message(answer.to_message(), key=KEY, fingerprint=True)
    differing = [i for i, (a, b) in enumerate(zip(ours, data, strict=True)) if a != b]
    pad_at = 20 + 4 + len("test vector")
    hmac_at = len(data) - 8 - 20
    assert differing[0] == pad_at
    assert all(i >= hmac_at for i in differing[1:])
    assert check_integrity(parse_message(ours), KEY)
    assert parse_binding(ours) == answer


# --- message type and cheap recognition (RFC 8489 §5, RFC 7983) ----------------------------

TYPES = [
    (BINDING, MessageClass.REQUEST, 0x0001),
    (BINDING, MessageClass.INDICATION, 0x0011),
    (BINDING, MessageClass.SUCCESS, 0x0101),
    (BINDING, MessageClass.ERROR, 0x0111),
    (0x003, MessageClass.REQUEST, 0x0003),  # TURN Allocate (RFC 8656 §17)
    (0x003, MessageClass.ERROR, 0x0113),
    (0x008, MessageClass.REQUEST, 0x0008),  # TURN CreatePermission
    (0xFFF, MessageClass.ERROR, 0x3FFF),
]


@pytest.mark.parametrize(("method", "cls", "expected"), TYPES)
def test_message_type_bits(method: int, cls: MessageClass, expected: int) -> None:
    assert message_type(method, cls) == expected
    assert split_message_type(expected) == (method, cls)


def test_every_method_and_class_round_trips() -> None:
    for method in range(0x1000):
        for cls in MessageClass:
            assert split_message_type(message_type(method, cls)) == (method, cls)


def header(length: int, type_: int = 0x0001, cookie: int = MAGIC_COOKIE) -> bytes:
    return struct.pack(">HHI12s", type_, length, cookie, TID)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (REQUEST, True),
        (header(0), True),
        (b"", False),
        (REQUEST[:19], False),
        (REQUEST[:-4], False),  # length field no longer matches
        (header(0, cookie=0x2112A443), False),
        (b"\x40" + header(0)[1:], False),  # first two bits not zero
        (header(3) + b"abc", False),
        (bytes.fromhex("80000001") + bytes(16), False),  # RTP
    ],
)
def test_looks_like_stun(data: bytes, expected: bool) -> None:
    assert looks_like_stun(data) is expected


# --- what is dropped silently (RFC 8489 §6.3, §7.3, §14.7) ----------------------------------

SOURCE = ("192.0.2.1", 32853)
MAPPED = TransportAddress(ip_address("192.0.2.1"), 32853)


def request(*attributes: Attribute, fingerprint: bool = True) -> bytes:
    message = Message(BINDING, MessageClass.REQUEST, TID, attributes)
    return build_message(message, fingerprint=fingerprint)


def with_length(data: bytes, end: int) -> bytes:
    """``data`` with its header's length field saying the message ends at ``end``."""
    return data[:2] + (end - 20).to_bytes(2, "big") + data[4:]


def relength(data: bytes) -> bytes:
    return with_length(data, len(data))


def answer_of(data: bytes, server: BindingServer = PLAIN_SERVER) -> BindingSuccess | BindingError:
    """What the server answers to ``data`` from :data:`SOURCE`, read back."""
    answer = answer_binding(data, SOURCE, server)
    assert answer is not None
    result = parse_binding(answer)
    assert not isinstance(result, BindingRequest)
    return result


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


NOT_STUN = [
    pytest.param(b"", id="empty"),
    pytest.param(REQUEST[:19], id="truncated header"),
    pytest.param(REQUEST[:-8], id="truncated body"),
    pytest.param(REQUEST + bytes(4), id="datagram longer than the length field"),
    pytest.param(header(0, cookie=0x2112A443), id="bad magic cookie"),
    pytest.param(b"\xc0" + REQUEST[1:], id="first two bits not zero"),
    pytest.param(header(3) + b"abc", id="length not a multiple of 4"),
    pytest.param(flipped(REQUEST, len(REQUEST) - 1), id="bad fingerprint"),
    pytest.param(flipped(REQUEST, 30), id="body changed under the fingerprint"),
    pytest.param(
        REQUEST[:26] + b"\x00\xff" + REQUEST[28:], id="attribute length changed under the FP"
    ),
    pytest.param(
        request(
            Attribute(FINGERPRINT.code, bytes(4)), SOFTWARE.attribute("x", TID), fingerprint=False
        ),
        id="fingerprint not last",
    ),
]


@pytest.mark.parametrize("data", NOT_STUN)
def test_not_stun_is_a_silent_stun_error(data: bytes) -> None:
    with pytest.raises(StunError) as caught:
        parse_message(data)
    assert caught.value.status is None
    assert answer_binding(data, SOURCE) is None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(IPV4_RESPONSE, id="a success response (we sent no request)"),
        pytest.param(
            build_message(Message(BINDING, MessageClass.INDICATION, TID), fingerprint=True),
            id="a Binding indication (keep-alive)",
        ),
        pytest.param(
            build_message(Message(0x003, MessageClass.REQUEST, TID), fingerprint=True),
            id="another method (Allocate)",
        ),
    ],
)
def test_stun_that_is_no_binding_request_is_dropped(data: bytes) -> None:
    parse_message(data)  # well-formed
    assert answer_binding(data, SOURCE) is None


# --- what earns an error response (RFC 8489 §6.3.1, §14.8, §14.9) ----------------------------

MALFORMED = [
    pytest.param(
        relength(header(0) + struct.pack(">HH", SOFTWARE.code, 255) + b"abcd"),
        "overruns",
        id="attribute overruns the message",
    ),
    pytest.param(
        request(Attribute(XOR_MAPPED_ADDRESS.code, b"\x00\x03\x00\x00\x00\x00\x00\x00")),
        "XOR-MAPPED-ADDRESS",
        id="address family 3",
    ),
    pytest.param(
        request(Attribute(MAPPED_ADDRESS.code, b"\x00\x02\x00\x00\x00\x00\x00\x00")),
        "MAPPED-ADDRESS",
        id="IPv6 family with 4 address bytes",
    ),
    pytest.param(request(Attribute(USERNAME.code, b"\xff\xfe")), "UTF-8", id="USERNAME not UTF-8"),
    pytest.param(
        request(Attribute(MESSAGE_INTEGRITY.code, bytes(19))), "19 bytes", id="short HMAC"
    ),
    pytest.param(request(Attribute(PRIORITY.code, bytes(3))), "PRIORITY", id="short PRIORITY"),
    pytest.param(
        request(*[SOFTWARE.attribute("x", TID)] * (MAX_ATTRIBUTES + 1)),
        "more than",
        id="too many attributes",
    ),
]


@pytest.mark.parametrize(("data", "detail"), MALFORMED)
def test_malformed_request_earns_400(data: bytes, detail: str) -> None:
    with pytest.raises(StunError, match=detail) as caught:
        parse_message(data)
    assert caught.value.status == 400
    answer = answer_binding(data, SOURCE)
    assert answer is not None
    error = parse_binding(answer)
    assert isinstance(error, BindingError)
    assert error.transaction_id == TID
    assert error.error.code == 400
    assert detail in error.error.reason
    assert parse_message(answer).has(FINGERPRINT)


def test_unknown_comprehension_required_attributes_earn_420() -> None:
    """Listed once each, in order of appearance; 0x0003 is RFC 5780's CHANGE-REQUEST."""
    data = request(
        Attribute(0x7FFF, b"??"),
        Attribute(0xC001, b"optional"),
        Attribute(0x0003, bytes(4)),
        Attribute(0x7FFF, b""),
    )
    assert answer_of(data) == BindingError(
        TID, ErrorCode(420, "Unknown Attribute"), (0x7FFF, 0x0003), DEFAULT_SOFTWARE
    )


def test_unknown_comprehension_optional_attributes_are_ignored() -> None:
    data = request(Attribute(0xC001, b"optional"), Attribute(0xFFFF, b""))
    assert answer_of(data) == BindingSuccess(TID, MAPPED, DEFAULT_SOFTWARE)


def test_attributes_after_message_integrity_are_not_read() -> None:
    """RFC 8489 §14.5: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow it."""
    signed = build_message(BindingRequest(TID, "u").to_message(), key=b"k")
    data = relength(signed + struct.pack(">HH", 0x7FFF, 4) + b"late")
    message = parse_message(data)
    assert [a.type for a in message.attributes] == [USERNAME.code, MESSAGE_INTEGRITY.code]
    assert check_integrity(message, b"k")
    assert answer_of(data) == BindingSuccess(TID, MAPPED, DEFAULT_SOFTWARE)


# --- success responses (RFC 8489 §14.2) -------------------------------------------------------


def test_plain_server_answers_with_xor_mapped_address_software_and_fingerprint() -> None:
    answer = answer_binding(request(), SOURCE)
    assert answer is not None
    message = parse_message(answer)
    assert [a.type for a in message.attributes] == [
        SOFTWARE.code,
        XOR_MAPPED_ADDRESS.code,
        FINGERPRINT.code,
    ]
    assert parse_binding(answer) == BindingSuccess(TID, MAPPED, DEFAULT_SOFTWARE)


def test_server_without_software_leaves_it_out() -> None:
    assert answer_of(request(), BindingServer(software=None)) == BindingSuccess(TID, MAPPED)


@pytest.mark.parametrize(
    ("source", "mapped"),
    [
        (("2001:db8::7", 5060), "2001:db8::7"),
        (("2001:db8::7", 5060, 0, 0), "2001:db8::7"),  # asyncio's IPv6 address tuple
        (("::ffff:198.51.100.9", 5060), "198.51.100.9"),  # dual-stack socket, IPv4 peer
    ],
)
def test_ipv6_and_mapped_sources(source: tuple[str, int], mapped: str) -> None:
    answer = answer_binding(request(), source)
    assert answer is not None
    success = parse_binding(answer)
    assert isinstance(success, BindingSuccess)
    assert success.mapped == TransportAddress(ip_address(mapped), 5060)


def test_ipv6_round_trip_through_the_wire() -> None:
    address = TransportAddress(ip_address("2001:db8:1234:5678:11:2233:4455:6677"), 65535)
    data = build_message(BindingSuccess(TID, address).to_message(), fingerprint=True)
    assert len(data) == 20 + 4 + 20 + 8
    assert parse_binding(data) == BindingSuccess(TID, address)


@pytest.mark.parametrize("source", [("not an address", 1), ("192.0.2.1", 65536), ("", -1)])
def test_unusable_source_is_dropped(source: tuple[str, int]) -> None:
    assert answer_binding(request(), source) is None


def test_mapped_address_is_read_from_rfc3489_servers() -> None:
    """RFC 8489 §14.1: MAPPED-ADDRESS, in the clear, when XOR-MAPPED-ADDRESS is absent."""
    plain = Message(BINDING, MessageClass.SUCCESS, TID, (MAPPED_ADDRESS.attribute(MAPPED, TID),))
    data = build_message(plain)
    assert data[-8:] == bytes.fromhex("0001 8055 c0000201")
    assert parse_binding(data) == BindingSuccess(TID, MAPPED)


def test_success_without_an_address_is_malformed() -> None:
    data = build_message(Message(BINDING, MessageClass.SUCCESS, TID))
    with pytest.raises(StunError, match="mapped address"):
        parse_binding(data)


def test_error_response_round_trip() -> None:
    """UNKNOWN-ATTRIBUTES with an odd count is padded like any attribute (RFC 8489 §14.9)."""
    error = BindingError(TID, ErrorCode(420, "Unknown Attribute"), (0x7FFF, 0x0003, 0x0004))
    data = build_message(error.to_message(), fingerprint=True)
    assert data[20:24] == bytes.fromhex("0009 0015")  # ERROR-CODE, 4 + 17 bytes
    assert data[24:28] == bytes.fromhex("0000 0414")  # class 4, number 20
    assert parse_binding(data) == error


def test_error_code_out_of_range_is_malformed() -> None:
    bad = Attribute(0x0009, bytes((0, 0, 7, 0)) + b"x")
    with pytest.raises(StunError, match="ERROR-CODE"):
        parse_message(build_message(Message(BINDING, MessageClass.ERROR, TID, (bad,))))


def test_indication_is_not_a_binding_request_or_response() -> None:
    with pytest.raises(StunError, match="indication"):
        parse_binding(build_message(Message(BINDING, MessageClass.INDICATION, TID)))


# --- short-term credentials (RFC 8489 §9.1.3) -------------------------------------------------

ICE = BindingServer(passwords={USER: PASSWORD})


def test_authenticated_request_gets_an_answer_signed_with_its_key() -> None:
    answer = answer_binding(REQUEST, SOURCE, ICE)
    assert answer is not None
    message = parse_message(answer)
    assert check_integrity(message, KEY)
    assert not message.has(USERNAME)  # §9.1.3: the response MUST NOT carry USERNAME
    assert [a.type for a in message.attributes][-2:] == [
        MESSAGE_INTEGRITY.code,
        FINGERPRINT.code,
    ]
    assert parse_binding(answer) == BindingSuccess(TID, MAPPED, DEFAULT_SOFTWARE)


def test_sha256_integrity_is_answered_in_kind() -> None:
    data = build_message(
        BindingRequest(TID, USER).to_message(), key=KEY, sha256=True, fingerprint=True
    )
    answer = answer_binding(data, SOURCE, ICE)
    assert answer is not None
    message = parse_message(answer)
    assert message.has(MESSAGE_INTEGRITY_SHA256)
    assert not message.has(MESSAGE_INTEGRITY)
    assert check_integrity(message, KEY)
    assert not check_integrity(message, b"another key")


def test_truncated_sha256_integrity_verifies_on_its_length() -> None:
    """RFC 8489 §14.6: MESSAGE-INTEGRITY-SHA256 may carry the HMAC's first 16 bytes."""
    head = build_message(BindingRequest(TID, USER).to_message())
    end = len(head) + 4 + 16
    mac = hmac.digest(KEY, with_length(head, end), "sha256")[:16]
    data = with_length(head, end) + struct.pack(">HH", MESSAGE_INTEGRITY_SHA256.code, 16) + mac
    assert check_integrity(parse_message(data), KEY)
    assert not check_integrity(parse_message(flipped(data, len(data) - 1)), KEY)
    assert answer_of(data, ICE) == BindingSuccess(TID, MAPPED, DEFAULT_SOFTWARE)


@pytest.mark.parametrize(
    ("server", "data", "code"),
    [
        pytest.param(ICE, request(), 400, id="no USERNAME, no MESSAGE-INTEGRITY"),
        pytest.param(ICE, request(USERNAME.attribute(USER, TID)), 400, id="USERNAME only"),
        pytest.param(BindingServer(passwords={USER: "wrong"}), REQUEST, 401, id="wrong password"),
        pytest.param(
            BindingServer(passwords={"someone:else": PASSWORD}), REQUEST, 401, id="unknown user"
        ),
    ],
)
def test_failed_authentication_is_answered_without_integrity(
    server: BindingServer, data: bytes, code: int
) -> None:
    answer = answer_binding(data, SOURCE, server)
    assert answer is not None
    error = parse_binding(answer)
    assert isinstance(error, BindingError)
    assert error.error.code == code
    assert [a.type for a in parse_message(answer).attributes] == [
        SOFTWARE.code,
        0x0009,  # ERROR-CODE
        FINGERPRINT.code,
    ]


def test_420_after_authentication_is_signed() -> None:
    message = Message(
        BINDING, MessageClass.REQUEST, TID, (USERNAME.attribute(USER, TID), Attribute(0x7FFE, b""))
    )
    answer = answer_binding(build_message(message, key=KEY, fingerprint=True), SOURCE, ICE)
    assert answer is not None
    assert check_integrity(parse_message(answer), KEY)
    error = parse_binding(answer)
    assert isinstance(error, BindingError)
    assert (error.error.code, error.unknown_attributes) == (420, (0x7FFE,))


# --- our own misuse is a different error -----------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: Message(BINDING, MessageClass.REQUEST, bytes(11)), id="short id"),
        pytest.param(lambda: Message(0x1000, MessageClass.REQUEST, TID), id="method > 12 bits"),
        pytest.param(lambda: TransportAddress(ip_address("192.0.2.1"), 65536), id="port"),
        pytest.param(lambda: ErrorCode(700, "no such class"), id="error code"),
        pytest.param(lambda: Attribute(0x10000, b""), id="attribute type"),
        pytest.param(lambda: BindingServer(software="x" * 128), id="SOFTWARE too long"),
        pytest.param(lambda: SOFTWARE.attribute("\ud800", TID), id="lone surrogate"),
        pytest.param(lambda: USERNAME.attribute("u" * 509, TID), id="USERNAME too long"),
        pytest.param(lambda: PRIORITY.attribute(1 << 32, TID), id="PRIORITY too big"),
        pytest.param(lambda: build_message(parse_message(REQUEST), key=KEY), id="signed twice"),
        pytest.param(lambda: build_message(parse_message(REQUEST), fingerprint=True), id="2 FP"),
        pytest.param(
            lambda: build_message(Message(BINDING, MessageClass.REQUEST, TID), padding=b""),
            id="padding",
        ),
        pytest.param(
            lambda: build_message(
                Message(BINDING, MessageClass.REQUEST, TID, (Attribute(0x8000, bytes(0xFFF8)),)),
                fingerprint=True,
            ),
            id="too long for the length field",
        ),
    ],
)
def test_misuse_raises_stun_misuse(build: Callable[[], object]) -> None:
    with pytest.raises(StunMisuse):
        build()


def test_stun_error_is_a_value_error_that_says_what_to_answer() -> None:
    error = StunError("attribute 0x0006 overruns the message", status=400)
    assert isinstance(error, ValueError)
    assert repr(error) == "StunError('attribute 0x0006 overruns the message', status=400)"
    assert not issubclass(StunMisuse, StunError)
