"""Errors of the STUN codec, each saying whose fault it is and what to answer.

A :class:`StunError` is the peer's fault. Its ``status`` is what to answer if the message
was a request: 400 when it is STUN but malformed (RFC 8489 §6.3.1, §14.8); None when the
datagram must be dropped silently, because the header checks or FINGERPRINT of RFC 8489
§6.3 and §7.3 failed and it may not be STUN at all. :class:`StunMisuse` is our own code
asking for a message STUN forbids; it is never answered on the wire.
"""

from __future__ import annotations


class StunError(ValueError):
    """The peer sent something that is not an acceptable STUN message (see the module)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class StunMisuse(Exception):
    """Our own code asked for a message STUN forbids (a bad port, code or length)."""


def malformed(reason: str) -> StunError:
    """The error for a message that is STUN but malformed: a request earns 400."""
    return StunError(reason, status=400)
