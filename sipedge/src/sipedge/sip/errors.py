"""Errors of the SIP core, each saying whose fault it is and what to answer.

A :class:`ParseError` is the peer's fault and carries the SIP status to reply with
(RFC 3261 §21.4: 400 with a reason phrase naming the problem, 505, 513, 416, 420 ...).
A :class:`FramingError` means the message boundary itself is lost: a datagram is
discarded, a stream connection is closed. :class:`ProtocolMisuse` is our own bug
(sending a response in a state that allows none); it is never answered on the wire.
"""

from __future__ import annotations


class SipError(Exception):
    """Base of every error the SIP core raises."""


class ParseError(SipError):
    """The peer sent something we cannot accept; answer ``status`` with ``reason``.

    ``reason`` is a Reason-Phrase fit to put on the wire (ASCII, no CR or LF), for
    example ``"Bad Request: Max-Forwards is not a number"``.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason.replace("\r", " ").replace("\n", " ")
        #: Header fields the answer must carry (Unsupported for a 420, Allow for a 405...).
        self.reply_headers: list[tuple[str, str]] = []

    def add_header(self, name: str, value: str) -> None:
        """Ask that the error answer carry this header field."""
        self.reply_headers.append((name, value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class FramingError(ParseError):
    """The message boundary is lost: discard the datagram or close the stream."""


class MessageTooLarge(FramingError):
    """A message, header line or value count exceeds a configured limit (513)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=513)


class ProtocolMisuse(SipError):
    """Our own code asked the core for something the protocol forbids."""
