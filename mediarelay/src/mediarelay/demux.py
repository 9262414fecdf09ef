"""Which protocol a datagram on a shared media port carries, by its first octet.

Owns RFC 7983 §7 (updating RFC 5764 §5.1.2): STUN, ZRTP, DTLS, TURN channel data and
RTP/RTCP share one 5-tuple when ICE and DTLS-SRTP are used, and the first octet tells
them apart. Anything outside the table is dropped. Telling RTP from RTCP (RFC 5761 §4)
is the RTP module's; confirming STUN is :func:`mediarelay.stun.looks_like_stun`'s.
"""

from __future__ import annotations

import enum


class PacketKind(enum.Enum):
    """Where RFC 7983 §7 forwards a packet."""

    STUN = "stun"
    ZRTP = "zrtp"
    DTLS = "dtls"
    TURN_CHANNEL = "turn-channel"
    RTP_RTCP = "rtp/rtcp"
    DROP = "drop"


# RFC 7983 §7, the figure: inclusive ranges of the first octet.
_RANGES = (
    (0, 3, PacketKind.STUN),
    (16, 19, PacketKind.ZRTP),
    (20, 63, PacketKind.DTLS),
    (64, 79, PacketKind.TURN_CHANNEL),
    (128, 191, PacketKind.RTP_RTCP),
)


def _kind_of(first_octet: int) -> PacketKind:
    for low, high, kind in _RANGES:
        if low <= first_octet <= high:
            return kind
    return PacketKind.DROP


_BY_FIRST_OCTET = tuple(_kind_of(octet) for octet in range(256))


def classify(datagram: bytes) -> PacketKind:
    """The kind of ``datagram`` by its first octet (RFC 7983 §7); an empty one is dropped."""
    return _BY_FIRST_OCTET[datagram[0]] if datagram else PacketKind.DROP
