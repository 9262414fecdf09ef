"""STUN (RFC 8489) for the media relay, sans-IO: bytes in, bytes out, no socket, no clock.

Modules, lowest first: :mod:`.errors` (whose fault, what to answer), :mod:`.attributes`
(the attribute table and value codecs), :mod:`.message` (header, parse and build,
MESSAGE-INTEGRITY, FINGERPRINT), :mod:`.binding` (Binding requests and responses, and
:func:`answer_binding`, the server's pure answer to one datagram). RFC 5769's vectors pin
the bytes. Telling STUN from RTP and DTLS on a shared port is :mod:`mediarelay.demux`.

Written by hand rather than with aioice's codec (the STYLE.md pick) because issue 4 keeps
the relay's core free of new dependencies; the format is small and RFC 5769 pins it.
Bad input from a peer raises :class:`StunError` and nothing else; our own misuse raises
:class:`StunMisuse`; :func:`answer_binding` never raises.
"""

from mediarelay.stun.attributes import (
    ATTRIBUTES,
    ERROR_CODE,
    FINGERPRINT,
    ICE_CONTROLLED,
    ICE_CONTROLLING,
    MAGIC_COOKIE,
    MAPPED_ADDRESS,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    PRIORITY,
    SOFTWARE,
    UNKNOWN_ATTRIBUTES,
    USE_CANDIDATE,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    Attribute,
    AttributeType,
    ErrorCode,
    TransportAddress,
)
from mediarelay.stun.binding import (
    BINDING,
    DEFAULT_SOFTWARE,
    PLAIN_SERVER,
    BindingError,
    BindingRequest,
    BindingServer,
    BindingSuccess,
    Source,
    answer_binding,
    parse_binding,
)
from mediarelay.stun.errors import StunError, StunMisuse
from mediarelay.stun.message import (
    FINGERPRINT_XOR,
    HEADER_BYTES,
    MAX_ATTRIBUTES,
    TRANSACTION_ID_BYTES,
    Message,
    MessageClass,
    build_message,
    check_integrity,
    looks_like_stun,
    message_type,
    parse_message,
    short_term_key,
    split_message_type,
)

__all__ = [
    "ATTRIBUTES",
    "BINDING",
    "DEFAULT_SOFTWARE",
    "ERROR_CODE",
    "FINGERPRINT",
    "FINGERPRINT_XOR",
    "HEADER_BYTES",
    "ICE_CONTROLLED",
    "ICE_CONTROLLING",
    "MAGIC_COOKIE",
    "MAPPED_ADDRESS",
    "MAX_ATTRIBUTES",
    "MESSAGE_INTEGRITY",
    "MESSAGE_INTEGRITY_SHA256",
    "PLAIN_SERVER",
    "PRIORITY",
    "SOFTWARE",
    "TRANSACTION_ID_BYTES",
    "UNKNOWN_ATTRIBUTES",
    "USERNAME",
    "USE_CANDIDATE",
    "XOR_MAPPED_ADDRESS",
    "Attribute",
    "AttributeType",
    "BindingError",
    "BindingRequest",
    "BindingServer",
    "BindingSuccess",
    "ErrorCode",
    "Message",
    "MessageClass",
    "Source",
    "StunError",
    "StunMisuse",
    "TransportAddress",
    "answer_binding",
    "build_message",
    "check_integrity",
    "looks_like_stun",
    "message_type",
    "parse_binding",
    "parse_message",
    "short_term_key",
    "split_message_type",
]
