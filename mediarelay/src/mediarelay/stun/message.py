"""STUN messages: header, attributes in order, MESSAGE-INTEGRITY and FINGERPRINT.

Owns RFC 8489 §5 (the 20-byte header, the method and class bits of the message type, the
transaction id), §6.3 (the checks a receiver makes first, dropping silently what fails),
§14 (attributes padded to 32 bits; more than :data:`MAX_ATTRIBUTES` are refused, which
bounds the work one datagram can cause), §14.5-14.7 (the HMACs, computed with the length
field covering the attribute; the CRC-32 XOR 0x5354554E that must come last) and §9.1.1
(the short-term key). The values of the attributes are :mod:`.attributes`'s.
"""

from __future__ import annotations

import enum
import hmac
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mediarelay.stun.attributes import (
    ATTRIBUTES,
    FINGERPRINT,
    MAGIC_COOKIE,
    MAX_BODY_BYTES,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    Attribute,
    AttributeType,
)
from mediarelay.stun.errors import StunError, StunMisuse, malformed

HEADER_BYTES = 20
TRANSACTION_ID_BYTES = 12
#: RFC 8489 §14.7: FINGERPRINT is CRC-32 of the message XOR this ("STUN" in ASCII).
FINGERPRINT_XOR = 0x5354554E
#: More attributes than any STUN usage sends; refusing them bounds the work per datagram.
MAX_ATTRIBUTES = 64

_HEADER = struct.Struct(">HHI12s")
_ATTR_HEADER = struct.Struct(">HH")
_COOKIE = MAGIC_COOKIE.to_bytes(4, "big")
_FINGERPRINT_HEADER = _ATTR_HEADER.pack(FINGERPRINT.code, 4)
_FINGERPRINT_BYTES = 8

T = TypeVar("T")


class MessageClass(enum.IntEnum):
    """The class bits C1 C0 of the message type (RFC 8489 §5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


def message_type(method: int, cls: MessageClass) -> int:
    """The 14-bit type: M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 §5, figure 3)."""
    if not 0 <= method <= 0xFFF:
        raise StunMisuse(f"method {method:#x} does not fit in 12 bits")
    method_bits = ((method & 0xF80) << 2) | ((method & 0x070) << 1) | (method & 0x00F)
    return method_bits | ((cls & 0b10) << 7) | ((cls & 0b01) << 4)


def split_message_type(value: int) -> tuple[int, MessageClass]:
    """(method, class) of a 14-bit message type, the inverse of :func:`message_type`."""
    method = ((value & 0x3E00) >> 2) | ((value & 0x00E0) >> 1) | (value & 0x000F)
    return method, MessageClass(((value >> 7) & 0b10) | ((value >> 4) & 0b01))


# RFC 8489 §14.5, §14.6: what a receiver still reads after an integrity attribute.
_READ_AFTER = {
    MESSAGE_INTEGRITY.code: frozenset({MESSAGE_INTEGRITY_SHA256.code, FINGERPRINT.code}),
    MESSAGE_INTEGRITY_SHA256.code: frozenset({FINGERPRINT.code}),
}
_HASHES = {MESSAGE_INTEGRITY.code: "sha1", MESSAGE_INTEGRITY_SHA256.code: "sha256"}


@dataclass(frozen=True, slots=True)
class Message:
    """A STUN message: method, class, 96-bit transaction id and attributes, in wire order.

    A parsed message keeps the datagram in ``raw`` (for :func:`check_integrity`) and only
    the attributes a receiver reads: those after MESSAGE-INTEGRITY other than
    MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored (RFC 8489 §14.5).
    """

    method: int
    cls: MessageClass
    transaction_id: bytes
    attributes: tuple[Attribute, ...] = ()
    raw: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.transaction_id) != TRANSACTION_ID_BYTES:
            raise StunMisuse(f"a transaction id has 12 bytes, not {len(self.transaction_id)}")
        message_type(self.method, self.cls)  # checks the method fits

    def get(self, kind: AttributeType[T]) -> T | None:
        """The value of the first ``kind`` attribute (RFC 8489 §14: later ones are ignored)."""
        for attribute in self.attributes:
            if attribute.type == kind.code:
                return kind.decode(attribute.value, self.transaction_id)
        return None

    def has(self, kind: AttributeType[Any]) -> bool:
        return any(attribute.type == kind.code for attribute in self.attributes)

    def unknown_required(self) -> tuple[int, ...]:
        """Comprehension-required types not in :data:`ATTRIBUTES`, each once (RFC 8489 §6.3.1)."""
        unknown = (a.type for a in self.attributes if a.comprehension_required)
        return tuple(dict.fromkeys(code for code in unknown if code not in ATTRIBUTES))


def looks_like_stun(data: bytes) -> bool:
    """The cheap test of RFC 8489 §5 and RFC 7983: first two bits zero, the magic cookie, a
    length that is a multiple of 4 and matches the datagram. FINGERPRINT is not checked."""
    return (
        len(data) >= HEADER_BYTES
        and data[0] < 0x40
        and data[4:8] == _COOKIE
        and len(data) % 4 == 0
        and int.from_bytes(data[2:4], "big") == len(data) - HEADER_BYTES
    )


def parse_message(data: bytes) -> Message:
    """Read one STUN message from one datagram (RFC 8489 §5, §6.3, §14).

    Raises :class:`StunError`: without a status for what must be dropped (a bad header, a
    FINGERPRINT that is wrong or not last), with 400 for a malformed attribute.
    """
    message_type_, transaction_id = _check_header(data)
    _check_fingerprint(data)
    found = _walk(data)
    _check_fingerprint_is_last(data, found)
    attributes = tuple(Attribute(kind, value) for _, kind, value in _read_part(found))
    for attribute in attributes:
        known = ATTRIBUTES.get(attribute.type)
        if known is not None:
            known.decode(attribute.value, transaction_id)
    method, cls = split_message_type(message_type_)
    return Message(method, cls, transaction_id, attributes, raw=bytes(data))


def _check_header(data: bytes) -> tuple[int, bytes]:
    """(message type, transaction id) once the RFC 8489 §6.3 header checks pass."""
    if len(data) < HEADER_BYTES:
        raise StunError(f"{len(data)} bytes is shorter than a STUN header")
    message_type_, length, cookie, transaction_id = _HEADER.unpack_from(data)
    if message_type_ & 0xC000:
        raise StunError("the first two bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunError(f"magic cookie {cookie:#010x}")
    if length % 4:
        raise StunError(f"message length {length} is not a multiple of 4")
    if HEADER_BYTES + length != len(data):
        raise StunError(f"message length {length} but {len(data) - HEADER_BYTES} bytes follow")
    return message_type_, transaction_id


def _walk(data: bytes) -> list[tuple[int, int, bytes]]:
    """(offset, type, value) of every attribute; each must end within the message (§14)."""
    found: list[tuple[int, int, bytes]] = []
    offset = HEADER_BYTES
    while offset < len(data):
        if len(found) == MAX_ATTRIBUTES:
            raise malformed(f"more than {MAX_ATTRIBUTES} attributes")
        start = offset + _ATTR_HEADER.size
        kind, length = _ATTR_HEADER.unpack_from(data, offset) if start <= len(data) else (0, 0)
        if start + length > len(data):
            raise malformed(f"attribute {kind:#06x} at offset {offset} overruns the message")
        found.append((offset, kind, bytes(data[start : start + length])))
        offset = start + length + (-length % 4)
    return found


def _check_fingerprint(data: bytes) -> None:
    """RFC 8489 §14.7: a message ending in FINGERPRINT ends in CRC-32(all before it) XOR
    0x5354554E. Checked before the attributes are walked: a failure means the datagram may
    not be STUN at all (§7.3), so it is dropped silently, whatever else is wrong with it.
    """
    at = len(data) - _FINGERPRINT_BYTES
    if at < HEADER_BYTES or data[at : at + 4] != _FINGERPRINT_HEADER:
        return
    if data[at + 4 :] != _crc(data[:at]):
        raise StunError("FINGERPRINT does not match the message")


def _check_fingerprint_is_last(data: bytes, found: list[tuple[int, int, bytes]]) -> None:
    """Any FINGERPRINT must be the 4-byte attribute :func:`_check_fingerprint` verified."""
    end = len(data) - _FINGERPRINT_BYTES
    for offset, kind, value in found:
        if kind == FINGERPRINT.code and (offset != end or len(value) != 4):
            raise StunError("FINGERPRINT is not the last attribute")


def _read_part(found: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The attributes a receiver reads: after an integrity attribute, only those of §14.5-6."""
    kept: list[tuple[int, int, bytes]] = []
    allowed: frozenset[int] | None = None
    for entry in found:
        kind = entry[1]
        if allowed is not None and kind not in allowed:
            continue
        kept.append(entry)
        allowed = _READ_AFTER.get(kind, allowed)
    return kept


def _crc(head: bytes) -> bytes:
    return ((zlib.crc32(head) ^ FINGERPRINT_XOR) & 0xFFFFFFFF).to_bytes(4, "big")


def _with_length(data: bytes, end: int) -> bytes:
    """``data`` with the header's length field saying the message ends at ``end``."""
    if end - HEADER_BYTES > MAX_BODY_BYTES:
        raise StunMisuse(f"a message of {end} bytes exceeds the 16-bit length field")
    return data[:2] + (end - HEADER_BYTES).to_bytes(2, "big") + data[4:]


def _hmac(code: int, key: bytes, head: bytes, end: int) -> bytes:
    """HMAC over the message before the integrity attribute, its length field counting up
    to the end of that attribute (RFC 8489 §14.5 SHA-1, §14.6 SHA-256)."""
    return hmac.digest(key, _with_length(head, end), _HASHES[code])


def check_integrity(message: Message, key: bytes) -> bool:
    """Does the parsed ``message`` carry a MESSAGE-INTEGRITY that verifies under ``key``?

    MESSAGE-INTEGRITY-SHA256 is checked when present, else MESSAGE-INTEGRITY (RFC 8489
    §9.1.3); a truncated SHA-256 value is compared on its length (§14.6). False when there
    is neither, or the message was not parsed from bytes.
    """
    found = [entry for entry in _read_part(_walk_parsed(message)) if entry[1] in _HASHES]
    if not found:
        return False
    offset, code, value = max(found, key=lambda entry: entry[1])  # SHA-256's code is higher
    expected = _hmac(code, key, message.raw[:offset], offset + 4 + len(value))
    return hmac.compare_digest(expected[: len(value)], value)


def _walk_parsed(message: Message) -> list[tuple[int, int, bytes]]:
    return _walk(message.raw) if len(message.raw) >= HEADER_BYTES else []


def build_message(
    message: Message,
    *,
    key: bytes | None = None,
    sha256: bool = False,
    fingerprint: bool = False,
    padding: bytes = b"\x00",
) -> bytes:
    """The wire form of ``message``; then MESSAGE-INTEGRITY under ``key`` (or
    MESSAGE-INTEGRITY-SHA256 with ``sha256``) and FINGERPRINT, in that order (RFC 8489
    §14.5-14.7).

    ``padding`` fills each attribute to 32 bits: zero, as RFC 8489 §14 says to send; RFC
    5769's vectors were made with ``b" "`` (receivers ignore padding).
    """
    _check_build(message, key, fingerprint, padding)
    body = b"".join(_encode_attribute(attribute, padding) for attribute in message.attributes)
    head = _HEADER.pack(
        message_type(message.method, message.cls), 0, MAGIC_COOKIE, message.transaction_id
    )
    data = _with_length(head + body, len(head) + len(body))
    if key is not None:
        data = _append_integrity(data, key, sha256)
    return _append_fingerprint(data) if fingerprint else data


def _check_build(message: Message, key: bytes | None, fingerprint: bool, padding: bytes) -> None:
    if len(padding) != 1:
        raise StunMisuse("padding is one byte")
    if (key is not None or fingerprint) and message.has(FINGERPRINT):
        raise StunMisuse("the message already ends with FINGERPRINT")
    if key is not None and (
        message.has(MESSAGE_INTEGRITY) or message.has(MESSAGE_INTEGRITY_SHA256)
    ):
        raise StunMisuse("the message already carries MESSAGE-INTEGRITY")


def _encode_attribute(attribute: Attribute, padding: bytes) -> bytes:
    """Type, length, value and padding to a 32-bit boundary (RFC 8489 §14)."""
    length = len(attribute.value)
    return _ATTR_HEADER.pack(attribute.type, length) + attribute.value + padding * (-length % 4)


def _append_integrity(data: bytes, key: bytes, sha256: bool) -> bytes:
    kind = MESSAGE_INTEGRITY_SHA256 if sha256 else MESSAGE_INTEGRITY
    size = 32 if sha256 else 20
    end = len(data) + _ATTR_HEADER.size + size
    mac = _hmac(kind.code, key, data, end)
    return _with_length(data, end) + _ATTR_HEADER.pack(kind.code, size) + mac


def _append_fingerprint(data: bytes) -> bytes:
    head = _with_length(data, len(data) + _FINGERPRINT_BYTES)
    return head + _FINGERPRINT_HEADER + _crc(head)


def short_term_key(password: str) -> bytes:
    """The HMAC key of short-term credentials: OpaqueString(password) (RFC 8489 §9.1.1).

    OpaqueString (RFC 8265 §4.2) is applied in part: non-ASCII spaces become U+0020 and the
    text is NFC-normalized (the identity for ASCII, which ICE passwords are); its
    prohibitions are not enforced, since the password is ours, not the peer's.
    """
    spaced = "".join(
        " " if char != " " and unicodedata.category(char) == "Zs" else char for char in password
    )
    return unicodedata.normalize("NFC", spaced).encode("utf-8", "surrogatepass")
