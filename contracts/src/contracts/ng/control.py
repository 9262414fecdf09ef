"""rtpengine's *ng* control protocol, sans-IO: framing, the command model, replies, the client.

Owns the wire format of sipwise/rtpengine ``docs/ng_control_protocol.md`` for the commands
our relay serves and our SIP edge sends (to our relay or to rtpengine):

* **Framing** (§ "The ng Control Protocol"): a datagram is ``<cookie> <dictionary>``, one
  space between; the reply repeats the cookie. The dictionary is bencoded
  (:mod:`contracts.ng.bencode`; rtpengine's alternative, JSON, is refused with a clear
  reason). A datagram without a cookie cannot be answered (:class:`MalformedDatagram`:
  drop it); any other fault is answered ``{"result": "error", "error-reason": ...}``
  (:class:`RequestError`), with rtpengine's reason texts where it has one
  ("Unrecognized command", "No call-id in message"...).
* **Commands**: ``ping``, ``offer``, ``answer``, ``delete``, ``query``, each a frozen
  dataclass (:class:`Ping`, :class:`Offer`, :class:`Answer`, :class:`Delete`,
  :class:`Query`) whose fields carry their wire key and kind, so that one table decodes a
  request and encodes it again on the client side. As rtpengine does, a space in a key or
  in a ``flags``/``replace``/``ICE`` word means a hyphen (``"received from"`` is
  ``received-from``, ``"trust address"`` is ``trust-address``), and an empty byte string
  counts as absent. Keys this model does not read are reported in
  :attr:`Request.ignored_keys`, never silently dropped.
* **Replies** (§ "ping", "offer", "delete", "query"): ``ok`` (with ``sdp`` for offer and
  answer, an optional ``warning``), ``pong``, ``error`` with ``error-reason`` and nothing
  else, and the ``created``/``last signal``/``totals`` part of a ``query`` reply.

A server adapter does, per datagram: ``key = CacheKey(peer, split_datagram(data)[0])``;
answers ``cache.get(key, now)`` if there is one (:mod:`contracts.ng.replycache`);
otherwise ``parse_request(data)``, acts, builds :func:`reply_datagram` (or
:func:`error_datagram` on :class:`RequestError`) and ``cache.put(key, reply, now)``. A
client sends :func:`command_datagram` with a cookie of its choosing and reads the answer
with :func:`expect_reply`.

Standard library and :mod:`contracts.ng.bencode` only: no I/O, no clock, no randomness, so
that both sides of the wire, the relay's control server and the edge's relay client, share
one model.
Past ~400 lines on purpose: requests and replies share the framing, the error types and
the field kinds, and read best side by side.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar, Self, TypeAlias, TypeVar

from contracts.ng import bencode
from contracts.ng.bencode import BencodeError, Encodable, Value

#: The longest cookie accepted or sent; Kamailio's look like ``"12_345_6"``.
MAX_COOKIE_BYTES = 255

_WIRE = "ng_wire"
_T = TypeVar("_T")


class ControlError(ValueError):
    """Base of every error this module raises; ``reason`` is fit for ``error-reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedDatagram(ControlError):
    """The datagram has no usable cookie, so no reply can be matched to it: drop it."""


class RequestError(ControlError):
    """The peer's request is unusable: answer ``cookie`` with an error reply (see
    :func:`error_datagram`). ``cookie`` is empty while the datagram is not yet known."""

    def __init__(self, reason: str, cookie: bytes = b"") -> None:
        super().__init__(reason)
        self.cookie = cookie


class ReplyError(ControlError):
    """The relay's reply is malformed (client side): the command's outcome is unknown."""


class CookieMismatch(ReplyError):
    """A reply that answers another command (a late answer to an earlier cookie)."""


class ControlMisuse(ControlError):
    """Our own code asked for something the protocol cannot carry (a cookie with a space,
    an error reply without a reason...). Never answered on the wire."""


# --- framing -------------------------------------------------------------------------


def split_datagram(datagram: bytes) -> tuple[bytes, bytes]:
    """Split ``<cookie> <payload>`` at the first space (rtpengine ``control_ng.c``)."""
    cookie, space, payload = datagram.partition(b" ")
    if not space or not cookie:
        raise MalformedDatagram("no cookie: an ng datagram starts with '<cookie> '")
    if len(cookie) > MAX_COOKIE_BYTES:
        raise MalformedDatagram(f"cookie longer than {MAX_COOKIE_BYTES} bytes")
    return cookie, payload


def _frame(cookie: bytes, fields: Mapping[str, Encodable]) -> bytes:
    if not cookie or b" " in cookie or len(cookie) > MAX_COOKIE_BYTES:
        raise ControlMisuse(f"a cookie is 1 to {MAX_COOKIE_BYTES} bytes without a space")
    return cookie + b" " + bencode.encode(fields)


def _decode_dict(payload: bytes, error: type[ControlError]) -> dict[bytes, Value]:
    if not payload:
        raise error("Invalid data (no payload)")
    if payload.startswith(b"{"):
        raise error("Could not decode dictionary: JSON is not supported, send bencode")
    try:
        value = bencode.decode(payload)
    except BencodeError as err:
        raise error(f"Could not decode dictionary: {err}") from None
    if not isinstance(value, dict):
        raise error(f"Could not decode dictionary: the payload is {_a(value)}")
    return _hyphenate_keys(value, error)


def _hyphenate_keys(fields: dict[bytes, Value], error: type[ControlError]) -> dict[bytes, Value]:
    out: dict[bytes, Value] = {}
    for key, value in fields.items():
        hyphenated = key.replace(b" ", b"-")
        if hyphenated in out:
            raise error(f"key '{_show(hyphenated)}' given twice, with spaces and with hyphens")
        out[hyphenated] = value
    return out


# --- field kinds: how one wire value becomes a Python value and back ------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    decode: Callable[[str, Value], Any]
    encode: Callable[[Any], Encodable]


@dataclass(frozen=True, slots=True)
class _Wire:
    key: str
    kind: _Kind
    missing: str


def _ng(key: str, kind: _Kind, *, missing: str = "") -> dict[str, _Wire]:
    """Field metadata naming the ng key; ``missing`` is the error when a required key is absent."""
    return {_WIRE: _Wire(key, kind, missing or f"No {key} in message")}


def _a(value: Value) -> str:
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, bytes):
        return "a byte string"
    return "a list" if isinstance(value, list) else "a dictionary"


def _show(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _text(key: str, raw: Value) -> str:
    if not isinstance(raw, bytes):
        raise RequestError(f"'{key}' must be a byte string, not {_a(raw)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"'{key}' is not valid UTF-8") from None


def _bytes(key: str, raw: Value) -> bytes:
    if not isinstance(raw, bytes):
        raise RequestError(f"'{key}' must be a byte string, not {_a(raw)}")
    return raw


def _texts(key: str, raw: Value) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise RequestError(f"'{key}' must be a list of byte strings, not {_a(raw)}")
    return tuple(_text(f"{key}[{index}]", item) for index, item in enumerate(raw))


def _words(key: str, raw: Value) -> tuple[str, ...]:
    """A ``flags``/``replace`` list: "Spaces in each string may be replaced by hyphens"."""
    return tuple(word.replace(" ", "-") for word in _texts(key, raw))


def _direction(key: str, raw: Value) -> tuple[str, ...]:
    names = _texts(key, raw)
    if len(names) > 2:
        raise RequestError(f"'{key}' names {len(names)} interfaces; at most 2 (from, to)")
    return names


class Ice(StrEnum):
    """The ``ICE`` key's values (§ "offer": ``ICE``)."""

    REMOVE = "remove"
    FORCE = "force"
    DEFAULT = "default"
    FORCE_RELAY = "force-relay"
    OPTIONAL = "optional"


def _ice(key: str, raw: Value) -> Ice:
    word = _text(key, raw).replace(" ", "-")
    try:
        return Ice(word)
    except ValueError:
        choices = ", ".join(Ice)
        raise RequestError(f"'{key}' must be one of {choices}; not '{word}'") from None


class AddressFamily(StrEnum):
    IP4 = "IP4"
    IP6 = "IP6"


@dataclass(frozen=True, slots=True)
class ReceivedFrom:
    """The SIP message's source address (§ "offer": ``received from``)."""

    address: IPv4Address | IPv6Address

    @property
    def family(self) -> AddressFamily:
        return AddressFamily.IP4 if self.address.version == 4 else AddressFamily.IP6


def _received_from(key: str, raw: Value) -> ReceivedFrom:
    parts = _texts(key, raw)
    if len(parts) != 2:
        raise RequestError(f"'{key}' must be a list of two strings: [family, address]")
    family, address = parts
    try:
        parsed = ipaddress.ip_address(address)
        received = ReceivedFrom(parsed)
    except ValueError:
        raise RequestError(f"'{key}' address '{address}' is not an IP address") from None
    if family != received.family:
        raise RequestError(f"'{key}' address '{address}' is not of family '{family}'")
    return received


def _seconds(key: str, raw: Value) -> int:
    """A count of seconds; rtpengine also takes it as a decimal string (legacy clients)."""
    text = _text(key, raw) if isinstance(raw, bytes) else raw
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) < 19:
        return int(text)
    if isinstance(text, int) and text >= 0:
        return text
    raise RequestError(f"'{key}' must be a count of seconds (an integer of 0 or more)")


_TEXT = _Kind(_text, lambda value: value)
_BYTES = _Kind(_bytes, lambda value: value)
_WORDS = _Kind(_words, list)
_DIRECTION = _Kind(_direction, list)
_ICE = _Kind(_ice, str)
_RECEIVED_FROM = _Kind(_received_from, lambda value: [value.family.value, str(value.address)])
_SECONDS = _Kind(_seconds, lambda value: value)


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    """§ "ping": no other keys; answered ``pong``."""

    command: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Negotiation:
    """What ``offer`` and ``answer`` share (§ "offer" message)."""

    call_id: str = field(metadata=_ng("call-id", _TEXT))
    from_tag: str = field(metadata=_ng("from-tag", _TEXT))
    sdp: bytes = field(metadata=_ng("sdp", _BYTES, missing="No SDP body in message"))
    via_branch: str | None = field(default=None, metadata=_ng("via-branch", _TEXT))
    flags: tuple[str, ...] = field(default=(), metadata=_ng("flags", _WORDS))
    replace: tuple[str, ...] = field(default=(), metadata=_ng("replace", _WORDS))
    direction: tuple[str, ...] = field(default=(), metadata=_ng("direction", _DIRECTION))
    ice: Ice | None = field(default=None, metadata=_ng("ICE", _ICE))
    received_from: ReceivedFrom | None = field(
        default=None, metadata=_ng("received-from", _RECEIVED_FROM)
    )

    def has_flag(self, name: str) -> bool:
        """Whether ``flags`` holds ``name`` (spaces and hyphens alike)."""
        return name.replace(" ", "-") in self.flags


@dataclass(frozen=True, slots=True, kw_only=True)
class Offer(_Negotiation):
    """§ "offer": rewrite the caller's SDP; a re-offer may carry the to-tag."""

    command: ClassVar[str] = "offer"
    to_tag: str | None = field(default=None, metadata=_ng("to-tag", _TEXT))


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer(_Negotiation):
    """§ "answer": as ``offer``, with the callee's to-tag required."""

    command: ClassVar[str] = "answer"
    to_tag: str = field(metadata=_ng("to-tag", _TEXT))


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    """§ "delete": end a call, or the branch the tags name.

    The document says from-tag is required; rtpengine's ``call_delete_ng`` requires only
    call-id (without tags the whole call goes), and so do we.
    """

    command: ClassVar[str] = "delete"
    call_id: str = field(metadata=_ng("call-id", _TEXT))
    from_tag: str | None = field(default=None, metadata=_ng("from-tag", _TEXT))
    to_tag: str | None = field(default=None, metadata=_ng("to-tag", _TEXT))
    via_branch: str | None = field(default=None, metadata=_ng("via-branch", _TEXT))
    flags: tuple[str, ...] = field(default=(), metadata=_ng("flags", _WORDS))
    delete_delay_s: int | None = field(default=None, metadata=_ng("delete-delay", _SECONDS))

    @property
    def fatal(self) -> bool:
        """Whether an unknown call is an error rather than a warning (flag ``fatal``)."""
        return "fatal" in self.flags


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """§ "query": the call's timestamps and packet totals."""

    command: ClassVar[str] = "query"
    call_id: str = field(metadata=_ng("call-id", _TEXT))
    from_tag: str | None = field(default=None, metadata=_ng("from-tag", _TEXT))
    to_tag: str | None = field(default=None, metadata=_ng("to-tag", _TEXT))


Command: TypeAlias = Ping | Offer | Answer | Delete | Query
COMMANDS: Mapping[bytes, type[Command]] = {
    cls.command.encode(): cls for cls in (Ping, Offer, Answer, Delete, Query)
}


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded request datagram."""

    cookie: bytes
    command: Command
    #: Keys present but not read by this model (hyphenated), for the server to log.
    ignored_keys: tuple[str, ...] = ()


def parse_request(datagram: bytes) -> Request:
    """Decode ``<cookie> <dictionary>`` into a :class:`Request`.

    Raises :class:`MalformedDatagram` (drop it) or :class:`RequestError` carrying the
    cookie (answer it with :func:`error_datagram`).
    """
    cookie, payload = split_datagram(datagram)
    try:
        command, ignored = parse_command(payload)
    except RequestError as err:
        raise RequestError(err.reason, cookie) from None
    return Request(cookie, command, ignored)


def parse_command(payload: bytes) -> tuple[Command, tuple[str, ...]]:
    """Decode a bencoded request dictionary; also return the keys it did not read."""
    fields = _decode_dict(payload, RequestError)
    name = fields.pop(b"command", None)
    if name is None:
        raise RequestError('Dictionary contains no key "command"')
    if not isinstance(name, bytes):
        raise RequestError(f"'command' must be a byte string, not {_a(name)}")
    cls = COMMANDS.get(name)
    if cls is None:
        raise RequestError("Unrecognized command")
    kwargs: dict[str, Any] = {}
    for attr in dataclasses.fields(cls):
        wire: _Wire = attr.metadata[_WIRE]
        raw = fields.pop(wire.key.encode(), b"")
        if raw != b"":
            kwargs[attr.name] = wire.kind.decode(wire.key, raw)
        elif attr.default is dataclasses.MISSING:
            raise RequestError(wire.missing)
    return cls(**kwargs), tuple(sorted(_show(key) for key in fields))


def command_fields(command: Command) -> dict[str, Encodable]:
    """The request dictionary for ``command``; absent and empty options are left out."""
    fields: dict[str, Encodable] = {"command": command.command}
    for attr in dataclasses.fields(command):
        wire: _Wire = attr.metadata[_WIRE]
        value = getattr(command, attr.name)
        if value is not None and value != ():
            fields[wire.key] = wire.kind.encode(value)
    return fields


def command_datagram(cookie: bytes, command: Command) -> bytes:
    """The datagram a client sends; the caller picks a cookie unique among its pending ones."""
    return _frame(cookie, command_fields(command))


# --- replies ----------------------------------------------------------------------------


class Result(StrEnum):
    OK = "ok"
    PONG = "pong"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class StreamTotals:
    """One ``stats`` dictionary of a ``query`` reply (wire keys packets, bytes, errors)."""

    packets: int = 0
    octets: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class CallTotals:
    """The ``totals`` dictionary of a ``query`` or ``delete`` reply."""

    rtp: StreamTotals = StreamTotals()
    rtcp: StreamTotals = StreamTotals()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A reply dictionary. Build one with :meth:`ok`, :meth:`pong`, :meth:`error` or
    :meth:`query`; "If the result is error ... No other keys should be present"."""

    result: Result
    sdp: bytes | None = None
    warning: str | None = None
    error_reason: str | None = None
    created_s: int | None = None
    last_signal_s: int | None = None
    totals: CallTotals | None = None

    def __post_init__(self) -> None:
        others = (self.sdp, self.warning, self.created_s, self.last_signal_s, self.totals)
        if self.result is Result.ERROR and (
            not self.error_reason or any(value is not None for value in others)
        ):
            raise ControlMisuse("an error reply has an error-reason and nothing else")
        if self.result is not Result.ERROR and self.error_reason is not None:
            raise ControlMisuse(f"a '{self.result}' reply has no error-reason")
        if self.result is Result.PONG and any(value is not None for value in others):
            raise ControlMisuse("a pong reply has no other keys")

    @classmethod
    def ok(cls, *, sdp: bytes | None = None, warning: str | None = None) -> Self:
        """``ok``, with the rewritten SDP for offer and answer."""
        return cls(result=Result.OK, sdp=sdp, warning=warning)

    @classmethod
    def pong(cls) -> Self:
        return cls(result=Result.PONG)

    @classmethod
    def error(cls, reason: str) -> Self:
        return cls(result=Result.ERROR, error_reason=reason)

    @classmethod
    def query(
        cls, *, created_s: int, last_signal_s: int, totals: CallTotals, warning: str | None = None
    ) -> Self:
        """The minimal ``query`` reply: UNIX timestamps and the RTP/RTCP totals."""
        return cls(
            result=Result.OK,
            created_s=created_s,
            last_signal_s=last_signal_s,
            totals=totals,
            warning=warning,
        )


def reply_fields(reply: Reply) -> dict[str, Encodable]:
    """The reply dictionary; unset keys are left out."""
    fields: dict[str, Encodable] = {"result": reply.result.value}
    optional: dict[str, Encodable | None] = {
        "sdp": reply.sdp,
        "warning": reply.warning,
        "error-reason": reply.error_reason,
        "created": reply.created_s,
        "last signal": reply.last_signal_s,
        "totals": None if reply.totals is None else _totals_fields(reply.totals),
    }
    fields.update((key, value) for key, value in optional.items() if value is not None)
    return fields


def _totals_fields(totals: CallTotals) -> dict[str, Encodable]:
    return {"RTP": _stats_fields(totals.rtp), "RTCP": _stats_fields(totals.rtcp)}


def _stats_fields(stats: StreamTotals) -> dict[str, Encodable]:
    return {"packets": stats.packets, "bytes": stats.octets, "errors": stats.errors}


def reply_datagram(cookie: bytes, reply: Reply) -> bytes:
    """The datagram that answers the request ``cookie``."""
    return _frame(cookie, reply_fields(reply))


def error_datagram(error: RequestError) -> bytes:
    """The error reply to a rejected request (its cookie is known once framing held)."""
    return reply_datagram(error.cookie, Reply.error(error.reason))


# --- client side: reading a reply --------------------------------------------------------


def parse_reply(datagram: bytes) -> tuple[bytes, Reply]:
    """Decode a reply datagram into its cookie and :class:`Reply`.

    Keys other than those :class:`Reply` models (``tags``, ``SSRC``...) are skipped.
    Raises :class:`MalformedDatagram` without a cookie, :class:`ReplyError` otherwise.
    """
    cookie, payload = split_datagram(datagram)
    fields = _decode_dict(payload, ReplyError)
    result = _reply_result(fields)
    try:
        reply = Reply(
            result=result,
            sdp=_reply_value(fields, "sdp", bytes),
            warning=_reply_text(fields, "warning"),
            error_reason=_reply_text(fields, "error-reason"),
            created_s=_reply_value(fields, "created", int),
            last_signal_s=_reply_value(fields, "last-signal", int),
            totals=_reply_totals(fields),
        )
    except ControlMisuse as err:
        raise ReplyError(f"inconsistent '{result}' reply: {err.reason}") from None
    return cookie, reply


def _reply_result(fields: Mapping[bytes, Value]) -> Result:
    text = _reply_text(fields, "result")
    if text is None:
        raise ReplyError("reply has no 'result'")
    try:
        return Result(text)
    except ValueError:
        raise ReplyError(f"unknown result '{text}'") from None


def expect_reply(datagram: bytes, cookie: bytes) -> Reply:
    """Decode the reply to the command sent with ``cookie``.

    A reply carrying another cookie (a late answer to an earlier command) raises
    :class:`CookieMismatch`.
    """
    got, reply = parse_reply(datagram)
    if got != cookie:
        raise CookieMismatch(f"reply for cookie {_show(got)!r}, expected {_show(cookie)!r}")
    return reply


def _reply_value(fields: Mapping[bytes, Value], key: str, kind: type[_T]) -> _T | None:
    raw = fields.get(key.encode())
    if raw is None:
        return None
    if isinstance(raw, kind):
        return raw
    raise ReplyError(f"reply key '{key}' is {_a(raw)}")


def _reply_text(fields: Mapping[bytes, Value], key: str) -> str | None:
    raw = _reply_value(fields, key, bytes)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReplyError(f"reply key '{key}' is not valid UTF-8") from None


def _reply_totals(fields: Mapping[bytes, Value]) -> CallTotals | None:
    totals = _reply_value(fields, "totals", dict)
    if totals is None:
        return None
    return CallTotals(_reply_stats(totals, "RTP"), _reply_stats(totals, "RTCP"))


def _reply_stats(totals: Mapping[bytes, Value], key: str) -> StreamTotals:
    stats = _reply_value(totals, key, dict) or {}
    counts = [_reply_value(stats, name, int) or 0 for name in ("packets", "bytes", "errors")]
    return StreamTotals(*counts)
