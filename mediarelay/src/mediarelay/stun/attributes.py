"""STUN attributes: the table of those we understand and the codec of each value.

Owns RFC 8489 §14 (the attribute format, padding, comprehension-required types) and the
values of §14.1 MAPPED-ADDRESS, §14.2 XOR-MAPPED-ADDRESS, §14.3 USERNAME, §14.5-14.6
MESSAGE-INTEGRITY(-SHA256) (their size; the HMAC is :mod:`.message`'s), §14.7 FINGERPRINT,
§14.8 ERROR-CODE, §14.9 UNKNOWN-ATTRIBUTES, §14.14 SOFTWARE, and RFC 8445 §16.1's PRIORITY,
USE-CANDIDATE and ICE-CONTROLLED/ICE-CONTROLLING, which ICE's Binding requests carry.
Written once, as data: one :class:`AttributeType` per attribute, listed in
:data:`ATTRIBUTES`; what is not listed is unknown (420 when comprehension-required).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mediarelay.stun.errors import StunMisuse, malformed

#: RFC 8489 §5: the fixed second word of every STUN message; XOR-MAPPED-ADDRESS uses it.
MAGIC_COOKIE = 0x2112A442
#: The largest value of the 16-bit length field that is a multiple of 4 (RFC 8489 §5).
MAX_BODY_BYTES = 0xFFFC

_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
_MAX_TEXT_DECODE_BYTES = 763  # RFC 8489 §14.3, §14.8, §14.14: what RFC 5389 peers may send
_MAX_USERNAME_BYTES = 508  # RFC 8489 §14.3: "fewer than 509 bytes"
#: RFC 8489 §14.8, §14.14: reason phrases and SOFTWARE have fewer than 128 characters.
MAX_TEXT_CHARS = 127

T = TypeVar("T")


# --- values carried by attributes --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransportAddress:
    """An IP address and a port, as MAPPED-ADDRESS and XOR-MAPPED-ADDRESS carry them."""

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise StunMisuse(f"port {self.port} out of range")


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """ERROR-CODE (RFC 8489 §14.8): a code from 300 to 699 and a reason phrase."""

    code: int
    reason: str

    def __post_init__(self) -> None:
        if not 300 <= self.code <= 699:
            raise StunMisuse(f"error code {self.code} outside 300-699")


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute as it is on the wire, its value not yet interpreted (RFC 8489 §14)."""

    type: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFFFF or len(self.value) > MAX_BODY_BYTES - 4:
            raise StunMisuse(f"attribute {self.type:#x} of {len(self.value)} bytes")

    @property
    def comprehension_required(self) -> bool:
        """Types 0x0000-0x7FFF must be understood to process the message (RFC 8489 §14)."""
        return self.type < 0x8000


@dataclass(frozen=True, slots=True)
class AttributeType(Generic[T]):
    """An attribute this codec understands: its code, its name and how its value reads.

    Decoders take the value and the transaction id (XOR-MAPPED-ADDRESS needs it) and raise
    :class:`StunError` with status 400 on a malformed value; encoders raise
    :class:`StunMisuse` for a value the RFC forbids sending.
    """

    code: int
    name: str
    decode: Callable[[bytes, bytes], T] = field(repr=False)
    encode: Callable[[T, bytes], bytes] = field(repr=False)

    def attribute(self, value: T, transaction_id: bytes) -> Attribute:
        """The wire attribute carrying ``value`` in a message with ``transaction_id``."""
        return Attribute(self.code, self.encode(value, transaction_id))


# --- attribute codecs (RFC 8489 §14, RFC 8445 §16.1) ---------------------------------------

_FAMILY_BYTES = {0x01: 4, 0x02: 16}  # RFC 8489 §14.1: address family → address octets


def _split_address(value: bytes, name: str) -> tuple[int, bytes]:
    """(port, address octets) of a MAPPED-ADDRESS-shaped value; the first octet is ignored."""
    size = _FAMILY_BYTES.get(value[1]) if len(value) >= 4 else None
    if size is None or len(value) != 4 + size:
        raise malformed(f"{name} has a bad family or length ({len(value)} bytes)")
    return int.from_bytes(value[2:4], "big"), value[4:]


def _pack_address(port: int, packed_ip: bytes) -> bytes:
    family = 0x01 if len(packed_ip) == 4 else 0x02
    return struct.pack(">BBH", 0, family, port) + packed_ip


def _decode_address(value: bytes, _tid: bytes) -> TransportAddress:
    """MAPPED-ADDRESS (RFC 8489 §14.1): family, port and address, in the clear."""
    port, raw = _split_address(value, "MAPPED-ADDRESS")
    return TransportAddress(ipaddress.ip_address(raw), port)


def _encode_address(address: TransportAddress, _tid: bytes) -> bytes:
    return _pack_address(address.port, address.ip.packed)


def _xor(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask[:size], "big")).to_bytes(size, "big")


def _decode_xor_address(value: bytes, tid: bytes) -> TransportAddress:
    """XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the port XOR the cookie's high 16 bits, the
    address XOR the cookie (IPv4) or the cookie and the transaction id (IPv6)."""
    port, raw = _split_address(value, "XOR-MAPPED-ADDRESS")
    ip = ipaddress.ip_address(_xor(raw, _COOKIE + tid))
    return TransportAddress(ip, port ^ (MAGIC_COOKIE >> 16))


def _encode_xor_address(address: TransportAddress, tid: bytes) -> bytes:
    raw = _xor(address.ip.packed, _COOKIE + tid)
    return _pack_address(address.port ^ (MAGIC_COOKIE >> 16), raw)


def _decode_utf8(value: bytes, name: str) -> str:
    if len(value) > _MAX_TEXT_DECODE_BYTES:
        raise malformed(f"{name} of {len(value)} bytes is too long")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed(f"{name} is not UTF-8") from None


def _encode_utf8(text: str, name: str, max_chars: int, max_bytes: int) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise StunMisuse(f"{name} is not encodable as UTF-8") from None
    if len(text) > max_chars or len(raw) > max_bytes:
        raise StunMisuse(f"{name} too long ({len(text)} characters, {len(raw)} bytes)")
    return raw


def _encode_text(text: str, name: str) -> bytes:
    """SOFTWARE and reason phrases: fewer than 128 characters (RFC 8489 §14.8, §14.14)."""
    return _encode_utf8(text, name, MAX_TEXT_CHARS, 4 * MAX_TEXT_CHARS)


def _decode_username(value: bytes, _tid: bytes) -> str:
    """USERNAME (RFC 8489 §14.3): UTF-8; up to 763 bytes accepted from RFC 5389 peers."""
    return _decode_utf8(value, "USERNAME")


def _encode_username(username: str, _tid: bytes) -> bytes:
    return _encode_utf8(username, "USERNAME", _MAX_USERNAME_BYTES, _MAX_USERNAME_BYTES)


def _decode_software(value: bytes, _tid: bytes) -> str:
    """SOFTWARE (RFC 8489 §14.14): UTF-8, fewer than 128 characters."""
    return _decode_utf8(value, "SOFTWARE")


def _encode_software(software: str, _tid: bytes) -> bytes:
    return _encode_text(software, "SOFTWARE")


def _decode_error_code(value: bytes, _tid: bytes) -> ErrorCode:
    """ERROR-CODE (RFC 8489 §14.8): 21 reserved bits, class 3-6, number 0-99, reason."""
    if len(value) < 4 or not 3 <= value[2] & 0x07 <= 6 or value[3] > 99:
        raise malformed("ERROR-CODE is malformed")
    reason = _decode_utf8(value[4:], "ERROR-CODE reason")
    return ErrorCode((value[2] & 0x07) * 100 + value[3], reason)


def _encode_error_code(error: ErrorCode, _tid: bytes) -> bytes:
    cls, number = divmod(error.code, 100)
    return bytes((0, 0, cls, number)) + _encode_text(error.reason, "ERROR-CODE reason")


def _decode_unknown(value: bytes, _tid: bytes) -> tuple[int, ...]:
    """UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): 16-bit types, padded like any attribute."""
    if len(value) % 2:
        raise malformed("UNKNOWN-ATTRIBUTES has an odd length")
    return struct.unpack(f">{len(value) // 2}H", value)


def _encode_unknown(types: tuple[int, ...], _tid: bytes) -> bytes:
    if any(not 0 <= code <= 0xFFFF for code in types):
        raise StunMisuse(f"UNKNOWN-ATTRIBUTES {types!r}: not 16-bit types")
    return struct.pack(f">{len(types)}H", *types)


def _opaque(sizes: range, name: str) -> Callable[[bytes, bytes], bytes]:
    """A decoder for a value of fixed or bounded size that stays bytes (HMACs)."""

    def decode(value: bytes, _tid: bytes) -> bytes:
        if len(value) not in sizes:
            raise malformed(f"{name} of {len(value)} bytes")
        return value

    return decode


def _keep_bytes(value: bytes, _tid: bytes) -> bytes:
    return value


def _unsigned(
    size: int, name: str
) -> tuple[Callable[[bytes, bytes], int], Callable[[int, bytes], bytes]]:
    """Decoder and encoder of a big-endian unsigned integer of ``size`` bytes."""

    def decode(value: bytes, _tid: bytes) -> int:
        if len(value) != size:
            raise malformed(f"{name} of {len(value)} bytes, not {size}")
        return int.from_bytes(value, "big")

    def encode(number: int, _tid: bytes) -> bytes:
        if not 0 <= number < 1 << (8 * size):
            raise StunMisuse(f"{name} {number} does not fit in {size} bytes")
        return number.to_bytes(size, "big")

    return decode, encode


def _decode_flag(value: bytes, _tid: bytes) -> bool:
    """USE-CANDIDATE (RFC 8445 §16.1): present or not, no value."""
    if value:
        raise malformed("USE-CANDIDATE carries a value")
    return True


def _encode_flag(_present: bool, _tid: bytes) -> bytes:
    return b""


# The attribute table: RFC 8489 §18.3 registry entries and RFC 8445 §16.1's ICE attributes.
MAPPED_ADDRESS = AttributeType(0x0001, "MAPPED-ADDRESS", _decode_address, _encode_address)
USERNAME = AttributeType(0x0006, "USERNAME", _decode_username, _encode_username)
MESSAGE_INTEGRITY = AttributeType(
    0x0008, "MESSAGE-INTEGRITY", _opaque(range(20, 21), "MESSAGE-INTEGRITY"), _keep_bytes
)
ERROR_CODE = AttributeType(0x0009, "ERROR-CODE", _decode_error_code, _encode_error_code)
UNKNOWN_ATTRIBUTES = AttributeType(0x000A, "UNKNOWN-ATTRIBUTES", _decode_unknown, _encode_unknown)
MESSAGE_INTEGRITY_SHA256 = AttributeType(
    0x001C,
    "MESSAGE-INTEGRITY-SHA256",
    _opaque(range(16, 33, 4), "MESSAGE-INTEGRITY-SHA256"),  # §14.6: 16-32, multiple of 4
    _keep_bytes,
)
XOR_MAPPED_ADDRESS = AttributeType(
    0x0020, "XOR-MAPPED-ADDRESS", _decode_xor_address, _encode_xor_address
)
PRIORITY = AttributeType(0x0024, "PRIORITY", *_unsigned(4, "PRIORITY"))
USE_CANDIDATE = AttributeType(0x0025, "USE-CANDIDATE", _decode_flag, _encode_flag)
SOFTWARE = AttributeType(0x8022, "SOFTWARE", _decode_software, _encode_software)
FINGERPRINT = AttributeType(0x8028, "FINGERPRINT", *_unsigned(4, "FINGERPRINT"))
ICE_CONTROLLED = AttributeType(0x8029, "ICE-CONTROLLED", *_unsigned(8, "ICE-CONTROLLED"))
ICE_CONTROLLING = AttributeType(0x802A, "ICE-CONTROLLING", *_unsigned(8, "ICE-CONTROLLING"))

_TABLE: tuple[AttributeType[Any], ...] = (
    MAPPED_ADDRESS, USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, UNKNOWN_ATTRIBUTES,
    MESSAGE_INTEGRITY_SHA256, XOR_MAPPED_ADDRESS, PRIORITY, USE_CANDIDATE, SOFTWARE,
    FINGERPRINT, ICE_CONTROLLED, ICE_CONTROLLING,
)  # fmt: skip
#: Every attribute this codec understands, by type code.
ATTRIBUTES: Mapping[int, AttributeType[Any]] = {kind.code: kind for kind in _TABLE}
