"""Two (and three) real softphones, baresip from Debian, on a running edge.

They register to a tenant with digest auth, call each other through the B2BUA (one
auto-answers, one answers by hand), hear each other's tone both ways, and hang up from
either side. No media relay yet: the SDP passes through, RTP flows phone to phone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pytest

from sipbench.baresip import (
    PhoneFactory,
    analyse_tone,
    phones_on,
    write_tone_wav,
)

PASSWORDS = {"2001": "pw-2001-test", "2002": "pw-2002-test", "2003": "pw-2003-test"}
CALLER_HZ, CALLEE_HZ = 440, 1000


@pytest.fixture
def make_phone(edge: Any, tmp_path: Path) -> Iterator[PhoneFactory]:
    with phones_on(tmp_path, PASSWORDS, edge.domain, "127.0.0.1", edge.port, count=3) as make:
        yield make


def test_call_established_and_torn_down(make_phone: PhoneFactory) -> None:
    caller = make_phone("2001")
    callee = make_phone("2002", auto_answer=True)
    caller.wait_registered(10)
    callee.wait_registered(10)
    caller.dial(callee.aor)
    out = caller.wait_event("CALL_ESTABLISHED", 10)
    inc = callee.wait_event("CALL_ESTABLISHED", 10)
    assert out.data["direction"] == "outgoing"
    assert inc.data["direction"] == "incoming"
    assert out.call_id != inc.call_id  # a B2BUA: two dialogs, two Call-IDs
    caller.hangup()
    assert "reset by user" in caller.wait_event("CALL_CLOSED", 10).data["param"]
    assert "reset by peer" in callee.wait_event("CALL_CLOSED", 10).data["param"]


def test_both_hear_each_other(make_phone: PhoneFactory, tmp_path: Path) -> None:
    caller = make_phone(
        "2001", audio_wav=write_tone_wav(tmp_path / "a.wav", CALLER_HZ, 30), record=True
    )
    callee = make_phone(
        "2002",
        auto_answer=True,
        record=True,
        audio_wav=write_tone_wav(tmp_path / "b.wav", CALLEE_HZ, 30),
    )
    caller.wait_registered(10)
    callee.wait_registered(10)
    caller.dial(callee.aor)
    caller.wait_event("CALL_ESTABLISHED", 10)
    callee.wait_event("CALL_ESTABLISHED", 10)
    caller.wait_audio(1.5, timeout=10)
    callee.wait_audio(1.5, timeout=10)
    caller.hangup()
    caller.wait_event("CALL_CLOSED", 10)
    callee.wait_event("CALL_CLOSED", 10)
    for phone, far_hz, own_hz in ((caller, CALLEE_HZ, CALLER_HZ), (callee, CALLER_HZ, CALLEE_HZ)):
        heard = phone.wait_recording("dec", timeout=5)
        assert analyse_tone(heard, far_hz).present(min_share=0.9, min_loud_blocks=10)
        assert analyse_tone(heard, own_hz).median_share < 0.01


def test_answered_by_hand_and_callee_hangs_up(make_phone: PhoneFactory) -> None:
    caller = make_phone("2001")
    callee = make_phone("2003")
    caller.wait_registered(10)
    callee.wait_registered(10)
    caller.dial(callee.aor)
    callee.wait_event("CALL_INCOMING", 10)
    caller.wait_event("CALL_RINGING", 10)
    callee.accept()
    caller.wait_event("CALL_ESTABLISHED", 10)
    callee.wait_event("CALL_ESTABLISHED", 10)
    callee.hangup()
    assert "reset by peer" in caller.wait_event("CALL_CLOSED", 10).data["param"]
    assert "reset by user" in callee.wait_event("CALL_CLOSED", 10).data["param"]


def test_unregistered_extension_is_480(make_phone: PhoneFactory, edge: Any) -> None:
    caller = make_phone("2001")
    caller.wait_registered(10)
    caller.dial(f"sip:2003@{edge.domain}")
    assert "480" in caller.wait_event("CALL_CLOSED", 10).data["param"]
    caller.dial(f"sip:2999@{edge.domain}")
    assert "404" in caller.wait_event("CALL_CLOSED", 10).data["param"]
