"""What a relay tells its controller unasked: a call it ended (no media for too long).

Not part of rtpengine's *ng* protocol: rtpengine reports a media timeout by calling back
a URL of its controller (``--b2b-url``, XML-RPC). Ours is a datagram to the *ng* client
that last negotiated the call, framed as a command is, ``<cookie> <bencoded dictionary>``,
the dictionary ``{"notice": "timeout", "call-id": ...}``. A client that does not know
notices (Kamailio's rtpengine module) finds no request pending under that cookie and drops
it, as it drops a stray reply; our edge ends the call and bills it.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.ng import bencode
from contracts.ng.bencode import BencodeError

#: The events a relay reports.
TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Notice:
    """``event`` (:data:`TIMEOUT`) happened to the call ``call_id``."""

    event: str
    call_id: str


def notice_datagram(cookie: bytes, notice: Notice) -> bytes:
    """The datagram a relay sends; the cookie only has to differ from pending requests'."""
    return cookie + b" " + bencode.encode({"notice": notice.event, "call-id": notice.call_id})


def parse_notice(datagram: bytes) -> Notice | None:
    """The notice a datagram carries, or None for anything else (a reply, garbage)."""
    _, space, payload = datagram.partition(b" ")
    if not space:
        return None
    try:
        fields = bencode.decode(payload)
    except BencodeError:
        return None
    if not isinstance(fields, dict):
        return None
    event, call_id = fields.get(b"notice"), fields.get(b"call-id")
    if not isinstance(event, bytes) or not isinstance(call_id, bytes):
        return None
    try:
        return Notice(event.decode(), call_id.decode())
    except UnicodeDecodeError:
        return None
