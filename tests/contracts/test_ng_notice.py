"""A relay's unasked notice: round trip, and anything else is not one."""

from __future__ import annotations

import pytest

from contracts.ng.control import Ping, Reply, command_datagram, reply_datagram
from contracts.ng.notice import TIMEOUT, Notice, notice_datagram, parse_notice


def test_a_timeout_notice_round_trips() -> None:
    notice = Notice(TIMEOUT, "a84b4c76e66710@pc33.example.com")
    datagram = notice_datagram(b"n1", notice)
    assert datagram.startswith(b"n1 d")
    assert parse_notice(datagram) == notice


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"no-space",
        b"c1 not-bencode",
        b"c1 li1ee",
        b"c1 d6:notice7:timeoute",  # no call-id
        b"c1 d7:call-id1:x6:noticei1ee",  # notice not a string
        b"c1 d7:call-id1:\xff6:notice7:timeoute",  # not UTF-8
        command_datagram(b"c2", Ping()),
        reply_datagram(b"c3", Reply.pong()),
    ],
)
def test_anything_else_is_not_a_notice(datagram: bytes) -> None:
    assert parse_notice(datagram) is None
