"""The NAT lab: one-way audio without the relay, both ways with it (issue 4, point 5).

Phone A sits behind a masquerading router and writes its private address in its SDP;
phone B and the PBX are on the internet (``bench/sipbench/natlab.py``). Each phone is a
small RTP endpoint (``bench/sipbench/rtp_phone.py``) sending its own tone, 440 Hz from A
and 1,000 Hz from B.

* Without anchoring, each phone sends to the address the other's SDP names. B's media
  never reaches A's private address; A's reaches B. The packet counts and the tones
  heard show exactly the one-way audio a phone behind a home router gets.
* With anchoring, the relay runs in the PBX's namespace and is told about the call over
  *ng*, exactly as the edge tells it (offer with A's SDP, answer with B's). Each phone
  sends to the relay port in the rewritten SDP it was given; the relay latches A at the
  router's public address and B at its own, and each phone hears the other's tone, with
  under 0.1 % loss.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.natlab import PBX, PHONE_A, PHONE_B, ROUTER_WAN, NatLab

ROOT = Path(__file__).resolve().parents[2]
PHONE = ROOT / "bench" / "sipbench" / "rtp_phone.py"
A_PORT, B_PORT = 40000, 50000
A_TONE, B_TONE = 440.0, 1000.0

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None,
    reason="the NAT lab needs root and iptables (network namespaces)",
)


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab() as built:
        yield built


def phone(
    lab: NatLab, role: str, bind: str, to: str, tone: float, seconds: float, delay: float, out: Path
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(PHONE), "--bind", bind, "--to", to]
    argv += ["--tone", str(tone), "--seconds", str(seconds), "--delay", str(delay)]
    return lab.popen(role, [*argv, "--out", str(out)])


Heard = dict[str, Any]


def talk(lab: NatLab, a_to: str, b_to: str, seconds: float, tmp: Path) -> tuple[Heard, Heard]:
    """Both phones talk at once for ``seconds``; what each of them sent and heard."""
    # Both listen at once; A talks first, as the caller behind NAT whose first packet
    # opens its pinhole: what anyone sends to A before that cannot arrive, relay or not.
    a = phone(lab, "pha", f"{PHONE_A}:{A_PORT}", a_to, A_TONE, seconds, 1.0, tmp / "a.json")
    b = phone(lab, "phb", f"{PHONE_B}:{B_PORT}", b_to, B_TONE, seconds, 1.3, tmp / "b.json")
    assert a.wait(seconds + 30) == 0
    assert b.wait(seconds + 30) == 0
    return json.loads((tmp / "a.json").read_text()), json.loads((tmp / "b.json").read_text())


def test_without_anchoring_audio_is_one_way(lab: NatLab, tmp_path: Path) -> None:
    # Each phone sends where the other's SDP says: B to A's private address.
    heard_by_a, heard_by_b = talk(lab, f"{PHONE_B}:{B_PORT}", f"{PHONE_A}:{A_PORT}", 2.0, tmp_path)
    assert heard_by_b["received"] >= 0.99 * heard_by_a["sent"]
    assert heard_by_b["tone"] == A_TONE
    # B sees A at the router's public address, never at the one in A's SDP.
    assert all(source.startswith(f"{ROUTER_WAN}:") for source in heard_by_b["sources"])
    assert heard_by_a["received"] == 0  # the classic: A hears nothing
    assert heard_by_a["tone"] is None


NG_CALL = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {bench!r})
    from contracts.ng.control import Answer, Offer
    from sipbench.relays import NgClient, relay_address, sdp_for
    client = NgClient(("127.0.0.1", {ng}))
    client.wait_ready(10.0)
    def sdp(host, port):
        return sdp_for(port, 1).replace(b"127.0.0.1", host.encode())
    for_b = client.call(Offer(call_id="lab", from_tag="a", sdp=sdp({a!r}, {a_port})))
    for_a = client.call(Answer(call_id="lab", from_tag="a", to_tag="b", sdp=sdp({b!r}, {b_port})))
    def where(raw):
        return raw.split(b"c=IN IP4 ")[1].split(b"\\r\\n")[0].decode(), int(
            raw.split(b"m=audio ")[1].split(b" ")[0])
    print(json.dumps({{"a_to": where(for_a), "b_to": where(for_b)}}))
    """
)


def test_with_anchoring_both_phones_hear_each_other(lab: NatLab, tmp_path: Path) -> None:
    ng = 2223
    relay = lab.popen(
        "pbx",
        [
            sys.executable,
            "-m",
            "mediarelay",
            "serve",
            "--ng",
            f"127.0.0.1:{ng}",
            "--bind",
            PBX,
            "--ports",
            "26000-26999",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    try:
        script = NG_CALL.format(
            bench=str(ROOT / "bench"), ng=ng, a=PHONE_A, a_port=A_PORT, b=PHONE_B, b_port=B_PORT
        )
        routes = json.loads(lab.exec("pbx", sys.executable, "-c", script))
        a_host, a_port = routes["a_to"]
        b_host, b_port = routes["b_to"]
        assert a_host == b_host == PBX  # both phones are sent to the relay, none to a LAN
        seconds = 20.0
        started = time.monotonic()
        heard_by_a, heard_by_b = talk(
            lab, f"{a_host}:{a_port}", f"{b_host}:{b_port}", seconds, tmp_path
        )
        assert time.monotonic() - started < seconds + 30
        assert heard_by_a["tone"] == B_TONE
        assert heard_by_b["tone"] == A_TONE
        for heard, sent_by_other in (
            (heard_by_a, heard_by_b["sent"]),
            (heard_by_b, heard_by_a["sent"]),
        ):
            assert heard["received"] >= 0.999 * sent_by_other  # under 0.1 % loss
            assert list(heard["sources"]) == [f"{PBX}:{a_port if heard is heard_by_a else b_port}"]
    finally:
        relay.terminate()
        relay.wait(10)
