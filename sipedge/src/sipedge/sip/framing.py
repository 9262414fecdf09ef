"""Message boundaries on datagrams and streams (RFC 3261 §7.5, §18.3, RFC 5626 §3.5.1).

UDP: one datagram is one message; without Content-Length the body is the rest of the
datagram, octets beyond Content-Length are ignored (RFC 4475 dblreq), and a
Content-Length larger than what arrived is a 400 (clerr). TCP: Content-Length is
mandatory; reads may split or join messages; a double CRLF between messages is a
keep-alive ping. When a stream's framing is lost (negative, non-numeric or repeated
Content-Length, an over-long message) the framer yields :class:`Broken` after the
messages that came before it, and the connection must be closed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipedge.sip.errors import FramingError, MessageTooLarge, ParseError
from sipedge.sip.message import Headers, Request, Response
from sipedge.sip.parser import DEFAULT_LIMITS, HeadError, Limits, parse_head

_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF ping on a stream; answer it with a single CRLF (RFC 5626 §4.4.1)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A stream message that framed cleanly but could not be parsed; the stream goes on."""

    error: ParseError


def content_length(headers: Headers) -> int | None:
    """The declared body length, ``None`` when absent; framing errors otherwise."""
    lines = headers.lines("Content-Length")
    if not lines:
        return None
    if len(lines) > 1:
        raise FramingError("Bad Request: more than one Content-Length")
    value = lines[0]
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise FramingError("Bad Request: malformed Content-Length")
    return int(value)


def parse_datagram(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one UDP datagram into one message."""
    if len(data) > limits.max_message_bytes:
        raise MessageTooLarge("Message Too Large")
    data = data.lstrip(b"\r\n")
    end = data.find(_END)
    if end < 0:
        if not data.endswith(b"\r\n"):
            raise FramingError("Bad Request: header section not terminated")
        end = len(data) - 2  # liberal: headers only, the empty line missing (baddn)
    message = parse_head(data[:end], limits)
    rest = data[end + 4 :]
    try:
        length = content_length(message.headers)
    except ParseError as exc:
        raise _with_headers(exc, message) from None
    if length is None:
        message.body = rest
    elif length > len(rest):
        raise _with_headers(ParseError("Bad Request: Content-Length exceeds datagram"), message)
    else:
        message.body = rest[:length]
    return message


def _with_headers(error: ParseError, message: Request | Response) -> HeadError:
    return HeadError(error.reason, error.status, message.headers, isinstance(message, Request))


@dataclass(frozen=True, slots=True)
class Broken:
    """The stream cannot be framed any more; close the connection (answer nothing)."""

    error: FramingError


StreamItem = Request | Response | KeepAlive | Rejected | Broken


class StreamFramer:
    """Cut a TCP/TLS byte stream into messages; feed bytes, take messages out."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._scanned = 0  # bytes already searched for the end of the header section
        self._pending: tuple[Request | Response, int, int] | None = None
        self._broken: Broken | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held; the adapter bounds how long they wait."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[StreamItem]:
        """Add bytes; return every item they complete, in order, :class:`Broken` last."""
        if self._broken is not None:
            return [self._broken]
        self._buffer += data
        out: list[StreamItem] = []
        try:
            while (item := self._next()) is not None:
                out.append(item)
        except FramingError as exc:
            self._broken = Broken(exc.with_traceback(None))  # no frame cycle to keep
            self._buffer.clear()
            out.append(self._broken)
        return out

    def _next(self) -> Request | Response | KeepAlive | Rejected | None:
        if self._pending is None:
            if self._skip_keepalives():
                return KeepAlive()
            head = self._take_head()
            if head is None:
                return None
            if isinstance(head, Rejected):
                return head
            self._pending = head
        message, start, length = self._pending
        if len(self._buffer) < start + length:
            return None
        message.body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        self._pending = None
        self._scanned = 0
        return message

    def _skip_keepalives(self) -> bool:
        """Consume leading CRLFs; True when they formed a CRLFCRLF ping."""
        if self._buffer.startswith(_END):
            del self._buffer[:4]
            return True
        if self._buffer.startswith(b"\r\n") and bytes(self._buffer[2:3]) not in (b"", b"\r"):
            del self._buffer[:2]  # a pong, or a stray CRLF before a start line (§7.5)
        return False

    def _take_head(self) -> tuple[Request | Response, int, int] | Rejected | None:
        end = self._buffer.find(_END, max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(self._buffer)
            if len(self._buffer) > self._limits.max_message_bytes:
                raise MessageTooLarge("Message Too Large: header section too long")
            return None
        start = end + 4
        try:
            message = parse_head(bytes(self._buffer[:end]), self._limits)
        except HeadError as exc:
            return self._reject(exc, exc.headers, start)
        except FramingError:
            raise
        except ParseError as error:  # not ``exc``: mypyc would type it HeadError, as above
            raise FramingError(error.reason, error.status) from None
        length = content_length(message.headers)
        if length is None:
            raise FramingError("Bad Request: Content-Length is mandatory on streams")
        if start + length > self._limits.max_message_bytes:
            raise MessageTooLarge("Message Too Large")
        return message, start, length

    def _reject(self, error: ParseError, headers: Headers, start: int) -> Rejected:
        """Skip a message whose start line is bad but whose length is known."""
        length = content_length(headers)
        if length is None:
            raise FramingError(error.reason, error.status)
        self._pending = None
        if len(self._buffer) < start + length:
            raise FramingError(error.reason, error.status)
        del self._buffer[: start + length]
        self._scanned = 0
        return Rejected(error)
