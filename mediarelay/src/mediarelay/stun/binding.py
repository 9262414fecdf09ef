"""The Binding method: its requests and responses, and what a Binding server answers.

Owns RFC 8489 §3 and §6.3.1 for Binding (a success response reflects the source as
XOR-MAPPED-ADDRESS, §14.2; MAPPED-ADDRESS is read from RFC 3489 servers, §14.1), the error
responses of §14.8-14.9 (400, 401, 420 with UNKNOWN-ATTRIBUTES) and the short-term
credential check of §9.1.3, which ICE's connectivity checks use (RFC 8445 §7.3).
:func:`answer_binding` is a pure function: one datagram and its source in, the datagram
to send back (or None) out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from mediarelay.stun.attributes import (
    ERROR_CODE,
    MAPPED_ADDRESS,
    MAX_TEXT_CHARS,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    SOFTWARE,
    UNKNOWN_ATTRIBUTES,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    Attribute,
    AttributeType,
    ErrorCode,
    TransportAddress,
)
from mediarelay.stun.errors import StunError, malformed
from mediarelay.stun.message import (
    HEADER_BYTES,
    Message,
    MessageClass,
    build_message,
    check_integrity,
    looks_like_stun,
    parse_message,
    short_term_key,
)

#: RFC 8489 §18.2: the Binding method.
BINDING = 0x001
DEFAULT_SOFTWARE = "cloudpbx mediarelay"

_BINDING_REQUEST_TYPE = b"\x00\x01"

T = TypeVar("T")


# SOFTWARE comes first in each, as in RFC 5769's vectors, which then rebuild byte for byte.


@dataclass(frozen=True, slots=True)
class BindingRequest:
    """A Binding request; ICE's checks add PRIORITY, USE-CANDIDATE, ICE-CONTROLL(ED|ING),
    read from the :class:`Message` itself."""

    transaction_id: bytes
    username: str | None = None
    software: str | None = None

    def to_message(self) -> Message:
        tid = self.transaction_id
        attributes = _optional(SOFTWARE, self.software, tid)
        attributes += _optional(USERNAME, self.username, tid)
        return Message(BINDING, MessageClass.REQUEST, tid, attributes)

    @classmethod
    def from_message(cls, message: Message) -> BindingRequest:
        _expect(message, MessageClass.REQUEST)
        username, software = message.get(USERNAME), message.get(SOFTWARE)
        return cls(message.transaction_id, username, software)


@dataclass(frozen=True, slots=True)
class BindingSuccess:
    """A Binding success response: the client's reflexive address (RFC 8489 §14.2)."""

    transaction_id: bytes
    mapped: TransportAddress
    software: str | None = None

    def to_message(self) -> Message:
        tid = self.transaction_id
        attributes = _optional(SOFTWARE, self.software, tid)
        attributes += (XOR_MAPPED_ADDRESS.attribute(self.mapped, tid),)
        return Message(BINDING, MessageClass.SUCCESS, tid, attributes)

    @classmethod
    def from_message(cls, message: Message) -> BindingSuccess:
        """XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS from RFC 3489 servers (RFC 8489 §14.1)."""
        _expect(message, MessageClass.SUCCESS)
        mapped = message.get(XOR_MAPPED_ADDRESS)
        if mapped is None:
            mapped = message.get(MAPPED_ADDRESS)
        if mapped is None:
            raise malformed("Binding success response without a mapped address")
        return cls(message.transaction_id, mapped, message.get(SOFTWARE))


@dataclass(frozen=True, slots=True)
class BindingError:
    """A Binding error response: ERROR-CODE and, for 420, UNKNOWN-ATTRIBUTES (§14.8-9)."""

    transaction_id: bytes
    error: ErrorCode
    unknown_attributes: tuple[int, ...] = ()
    software: str | None = None

    def to_message(self) -> Message:
        tid = self.transaction_id
        attributes = _optional(SOFTWARE, self.software, tid)
        attributes += (ERROR_CODE.attribute(self.error, tid),)
        if self.unknown_attributes:
            attributes += (UNKNOWN_ATTRIBUTES.attribute(self.unknown_attributes, tid),)
        return Message(BINDING, MessageClass.ERROR, tid, attributes)

    @classmethod
    def from_message(cls, message: Message) -> BindingError:
        _expect(message, MessageClass.ERROR)
        error = message.get(ERROR_CODE)
        if error is None:
            raise malformed("Binding error response without ERROR-CODE")
        unknown = message.get(UNKNOWN_ATTRIBUTES) or ()
        return cls(message.transaction_id, error, unknown, message.get(SOFTWARE))


def _optional(kind: AttributeType[T], value: T | None, tid: bytes) -> tuple[Attribute, ...]:
    return () if value is None else (kind.attribute(value, tid),)


def _expect(message: Message, cls: MessageClass) -> None:
    if message.method != BINDING or message.cls is not cls:
        raise malformed(f"not a Binding {cls.name.lower()} (method {message.method:#x})")


def parse_binding(data: bytes) -> BindingRequest | BindingSuccess | BindingError:
    """A Binding request or response from one datagram; StunError for anything else."""
    message = parse_message(data)
    if message.cls is MessageClass.REQUEST:
        return BindingRequest.from_message(message)
    if message.cls is MessageClass.SUCCESS:
        return BindingSuccess.from_message(message)
    if message.cls is MessageClass.ERROR:
        return BindingError.from_message(message)
    raise malformed("an indication is not a Binding request or response")


@dataclass(frozen=True, slots=True)
class BindingServer:
    """What a Binding server says about itself and whom it authenticates.

    ``passwords`` maps USERNAME to password for short-term credentials (RFC 8489 §9.1;
    ICE's connectivity checks): when given, every request must carry both, and answers
    carry MESSAGE-INTEGRITY under the same key. None answers anyone (a plain STUN server).
    """

    software: str | None = DEFAULT_SOFTWARE
    passwords: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.software is not None:
            SOFTWARE.encode(self.software, b"")  # a bad name fails here, not per packet


PLAIN_SERVER = BindingServer()
#: Where a datagram came from, as asyncio gives it: (ip, port), or (ip, port, flow, scope).
Source: TypeAlias = tuple[str, int] | tuple[str, int, int, int]


def answer_binding(
    data: bytes, source: Source, server: BindingServer = PLAIN_SERVER
) -> bytes | None:
    """The datagram a Binding server sends back to ``source``, or None to drop ``data``.

    RFC 8489 §6.3: a bad header or FINGERPRINT, responses (we sent no requests),
    indications (keep-alives) and other methods are dropped. A malformed Binding request
    earns 400; credentials are checked next (§9.1.3: 400 without them, 401 when wrong);
    then unknown comprehension-required attributes earn 420 with UNKNOWN-ATTRIBUTES
    (§6.3.1); else a success response with XOR-MAPPED-ADDRESS (§14.2). Answers carry
    SOFTWARE and FINGERPRINT. An IPv4-mapped IPv6 source is answered as IPv4. Never raises.
    """
    mapped = _source_address(source)
    if mapped is None:
        return None
    try:
        message = parse_message(data)
        if message.method != BINDING or message.cls is not MessageClass.REQUEST:
            return None
        return _answer_request(message, mapped, server)
    except StunError as exc:
        return _answer_malformed(data, exc, server)


def _source_address(source: Source) -> TransportAddress | None:
    try:
        ip = ipaddress.ip_address(source[0])
    except ValueError:
        return None
    port = source[1]
    if not 0 <= port <= 0xFFFF:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return TransportAddress(ip, port)


def _answer_request(message: Message, mapped: TransportAddress, server: BindingServer) -> bytes:
    tid = message.transaction_id
    key: bytes | None = None
    if server.passwords is not None:
        verdict = _authenticate(message, server.passwords)
        if isinstance(verdict, ErrorCode):
            return _send(BindingError(tid, verdict, software=server.software))
        key = verdict
    sha256 = message.has(MESSAGE_INTEGRITY_SHA256)
    unknown = message.unknown_required()
    if unknown:
        error = ErrorCode(420, "Unknown Attribute")
        return _send(BindingError(tid, error, unknown, server.software), key, sha256)
    return _send(BindingSuccess(tid, mapped, server.software), key, sha256)


def _authenticate(message: Message, passwords: Mapping[str, str]) -> bytes | ErrorCode:
    """The key of a request that passes RFC 8489 §9.1.3, else the error to answer."""
    username = message.get(USERNAME)
    if username is None or not _has_integrity(message):
        return ErrorCode(400, "Bad Request: USERNAME and MESSAGE-INTEGRITY required")
    password = passwords.get(username)
    if password is None:
        return ErrorCode(401, "Unauthenticated")
    key = short_term_key(password)
    return key if check_integrity(message, key) else ErrorCode(401, "Unauthenticated")


def _has_integrity(message: Message) -> bool:
    return message.has(MESSAGE_INTEGRITY) or message.has(MESSAGE_INTEGRITY_SHA256)


def _answer_malformed(data: bytes, exc: StunError, server: BindingServer) -> bytes | None:
    """400 to a Binding request that is STUN but malformed; drop everything else."""
    if exc.status is None or not looks_like_stun(data) or data[:2] != _BINDING_REQUEST_TYPE:
        return None
    error = ErrorCode(exc.status, f"Bad Request: {exc.reason}"[:MAX_TEXT_CHARS])
    return _send(BindingError(data[8:HEADER_BYTES], error, software=server.software))


def _send(
    answer: BindingSuccess | BindingError, key: bytes | None = None, sha256: bool = False
) -> bytes:
    return build_message(answer.to_message(), key=key, sha256=sha256, fingerprint=True)
