"""The baresip harness (bench/sipbench/baresip.py) against Kamailio as a stand-in registrar.

Real processes on 127.0.0.1 only: Kamailio with bench/kamailio/baresip_lab.cfg (digest
registrar + location + record-routing proxy) and headless baresip phones driven over
ctrl_tcp. Kamailio relays no media: the phones' RTP flows directly between them, so each
phone's recording of what it heard must carry the other phone's tone.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pytest

from sipbench.baresip import (
    BaresipError,
    KamailioLab,
    PhoneFactory,
    analyse_tone,
    phones_on,
    tone_share,
    write_tone_wav,
)

LAB_CONFIG = Path(__file__).resolve().parents[2] / "bench" / "kamailio" / "baresip_lab.cfg"
DOMAIN = "lab.test"
# The fixed passwords baked into baresip_lab.cfg.
PASSWORDS = {user: f"lab-{user}-secret" for user in ("1001", "1002", "1003", "1004")}

CALLER_HZ = 440  # multiples of 10 Hz: whole periods in the 100 ms analysis blocks
CALLEE_HZ = 1000


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[KamailioLab]:
    with KamailioLab(LAB_CONFIG, tmp_path / "kamailio", children=1) as kamailio:
        yield kamailio


@pytest.fixture
def make_phone(lab: KamailioLab, tmp_path: Path) -> Iterator[PhoneFactory]:
    """Phones on free loopback ports; all quit (exit 0) before Kamailio stops."""
    with phones_on(tmp_path, PASSWORDS, DOMAIN, lab.host, lab.port, count=4) as make:
        yield make


def test_register_call_and_hang_up(make_phone: PhoneFactory) -> None:
    caller = make_phone("1001")
    callee = make_phone("1002", auto_answer=True)
    caller.wait_registered(10)
    callee.wait_registered(10)

    caller.dial(callee.aor)
    out = caller.wait_event("CALL_ESTABLISHED", 10)
    inc = callee.wait_event("CALL_ESTABLISHED", 10)
    assert out.data["direction"] == "outgoing"
    assert out.peer_uri == callee.aor
    assert inc.data["direction"] == "incoming"
    assert inc.peer_uri == caller.aor
    # The lab proxy keeps the Call-ID: both ends name the same call.
    assert out.call_id is not None
    assert out.call_id == inc.call_id

    caller.hangup()
    closed_out = caller.wait_event("CALL_CLOSED", 10, call_id=out.call_id)
    closed_in = callee.wait_event("CALL_CLOSED", 10, call_id=inc.call_id)
    assert "reset by user" in closed_out.data["param"]
    # The callee learnt of the hang-up from the BYE (routed through Kamailio's Record-Route).
    assert "reset by peer" in closed_in.data["param"]


def test_two_way_audio_through_direct_rtp(make_phone: PhoneFactory, tmp_path: Path) -> None:
    caller = make_phone(
        "1001", audio_wav=write_tone_wav(tmp_path / "caller.wav", CALLER_HZ, 30), record=True
    )
    callee = make_phone(
        "1002",
        auto_answer=True,
        audio_wav=write_tone_wav(tmp_path / "callee.wav", CALLEE_HZ, 30),
        record=True,
    )
    caller.wait_registered(10)
    callee.wait_registered(10)

    caller.dial(callee.aor)
    caller.wait_event("CALL_ESTABLISHED", 10)
    callee.wait_event("CALL_ESTABLISHED", 10)
    # Keep the call up until each side has heard 1.5 s (polled on the dump's size).
    caller.wait_audio(1.5, timeout=10)
    callee.wait_audio(1.5, timeout=10)
    caller.hangup()
    caller.wait_event("CALL_CLOSED", 10)
    callee.wait_event("CALL_CLOSED", 10)

    heard_by_caller = caller.wait_recording("dec", timeout=5)
    heard_by_callee = callee.wait_recording("dec", timeout=5)
    for heard, far_hz, own_hz in (
        (heard_by_caller, CALLEE_HZ, CALLER_HZ),
        (heard_by_callee, CALLER_HZ, CALLEE_HZ),
    ):
        far = analyse_tone(heard, far_hz)
        own = analyse_tone(heard, own_hz)
        assert far.seconds >= 1.0, far
        assert far.present(min_share=0.9, min_loud_blocks=10), far
        assert own.median_share < 0.01, own
    # What the caller sent was its own tone (sndfile's encoder-side dump).
    assert analyse_tone(caller.wait_recording("enc"), CALLER_HZ).present(min_share=0.9)


def test_manual_accept_and_callee_hangs_up(make_phone: PhoneFactory) -> None:
    caller = make_phone("1001")
    callee = make_phone("1003")  # no auto-answer
    caller.wait_registered(10)
    callee.wait_registered(10)

    caller.dial("sip:1003@lab.test")
    incoming = callee.wait_event("CALL_INCOMING", 10)
    assert incoming.peer_uri == caller.aor
    caller.wait_event("CALL_RINGING", 10)
    # Still ringing: nothing is established until the callee answers.
    assert not any(e.type == "CALL_ESTABLISHED" for e in caller.events + callee.events)

    callee.accept()
    caller.wait_event("CALL_ESTABLISHED", 10)
    callee.wait_event("CALL_ESTABLISHED", 10)
    callee.hangup()
    assert "reset by peer" in caller.wait_event("CALL_CLOSED", 10).data["param"]
    assert "reset by user" in callee.wait_event("CALL_CLOSED", 10).data["param"]


def test_call_to_unregistered_user_is_refused(make_phone: PhoneFactory) -> None:
    caller = make_phone("1001")
    caller.wait_registered(10)
    caller.dial("sip:1004@lab.test")  # a valid user with no binding
    closed = caller.wait_event("CALL_CLOSED", 10)
    assert "404" in closed.data["param"]
    assert not any(e.type == "CALL_ESTABLISHED" for e in caller.events)


def test_wrong_password_is_refused(make_phone: PhoneFactory) -> None:
    intruder = make_phone("1002", password="not-the-password")
    with pytest.raises(BaresipError, match="registration failed"):
        intruder.wait_registered(10)
    assert intruder.registration_status() == "ERR"


def test_goertzel_measures_tones_without_processes(tmp_path: Path) -> None:
    wav = write_tone_wav(tmp_path / "tone.wav", 440, 1.0)
    present = analyse_tone(wav, 440)
    absent = analyse_tone(wav, 1000)
    assert present.blocks == present.loud_blocks == 10
    assert present.median_share > 0.99
    assert absent.median_share < 0.001
    assert tone_share([0.0] * 800, 8000, 440) == 0.0
