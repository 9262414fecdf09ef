"""RFC 7983 §7: the first octet of a datagram on a shared media port says what it carries."""

from __future__ import annotations

import pytest

from mediarelay.demux import PacketKind, classify

# The figure of RFC 7983 §7, edge by edge; everything between the ranges is dropped.
TABLE = [
    (0, PacketKind.STUN),
    (3, PacketKind.STUN),
    (4, PacketKind.DROP),
    (15, PacketKind.DROP),
    (16, PacketKind.ZRTP),
    (19, PacketKind.ZRTP),
    (20, PacketKind.DTLS),
    (63, PacketKind.DTLS),
    (64, PacketKind.TURN_CHANNEL),
    (79, PacketKind.TURN_CHANNEL),
    (80, PacketKind.DROP),
    (127, PacketKind.DROP),
    (128, PacketKind.RTP_RTCP),
    (191, PacketKind.RTP_RTCP),
    (192, PacketKind.DROP),
    (255, PacketKind.DROP),
]


@pytest.mark.parametrize(("first_octet", "kind"), TABLE)
def test_first_octet(first_octet: int, kind: PacketKind) -> None:
    assert classify(bytes([first_octet]) + bytes(11)) is kind


def test_every_octet_has_exactly_the_kind_of_its_range() -> None:
    counts = dict.fromkeys(PacketKind, 0)
    for octet in range(256):
        counts[classify(bytes([octet]))] += 1
    assert counts == {
        PacketKind.STUN: 4,
        PacketKind.ZRTP: 4,
        PacketKind.DTLS: 44,
        PacketKind.TURN_CHANNEL: 16,
        PacketKind.RTP_RTCP: 64,
        PacketKind.DROP: 124,
    }


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (b"", PacketKind.DROP),
        (bytes.fromhex("000100002112a442") + bytes(12), PacketKind.STUN),  # Binding request
        (bytes.fromhex("16fefd"), PacketKind.DTLS),  # DTLS 1.2 handshake record
        (bytes.fromhex("4000000c"), PacketKind.TURN_CHANNEL),  # channel 0x4000
        (bytes.fromhex("8000"), PacketKind.RTP_RTCP),  # RTP version 2
        (bytes.fromhex("80c8"), PacketKind.RTP_RTCP),  # RTCP sender report
    ],
)
def test_real_packets(datagram: bytes, kind: PacketKind) -> None:
    assert classify(datagram) is kind
