"""Real phones in the NAT lab: one-way audio without anchoring, both ways with it (issue 4.5).

The lab of ``bench/sipbench/natlab.py``: the edge (198.51.100.1:5060 UDP) and our relay
(ng on 127.0.0.1, media on 198.51.100.1) run in the PBX's namespace; phone A is baresip
behind the masquerading router, phone B is baresip on the internet. Each registers to
the edge through its own namespace's network — A's REGISTER arrives from the router's
address, and the edge's rport/received handling is what lets the call reach B and its
answer reach A. A calls B, B auto-answers; A plays 440 Hz and B 1,000 Hz for 20 s, and
both record what they hear (``sndfile``).

* ``media: {anchor: false}``: B hears A's tone; A hears nothing — B's RTP goes to the
  private address in A's SDP. The one-way audio of a phone behind a home router.
* Anchoring on: both hear the other's tone for the whole call. Loss is measured where
  the packets arrive: iptables counters in each phone's own namespace
  (:meth:`NatLab.count_media`; for A, behind its NAT) count the RTP each phone sent to
  198.51.100.1 and the RTP that arrived from it. Two parts of it no relay can avoid,
  counted apart: what B sends before A's first packet (the relay learns A's public
  address only from it, and sends to the private one in A's SDP until then: the relay's
  send errors), and what a phone sends after the hang-up's BYE passed it (the edge has
  had the relay end the call: a closed port answers ICMP port unreachable). The
  recordings (samples heard against samples sent) and the relay's counters are checked
  as well.

baresip's ctrl_tcp listens on 127.0.0.1 *inside* a phone's namespace, so each phone is
driven by ``bench/sipbench/netns_phone.py`` started in that namespace, which writes a
JSON result and leaves the recordings in the test's folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.baresip import analyse_tone, read_wav, write_tone_wav
from sipbench.natlab import PBX, PHONE_A, PHONE_B, Flow, NatLab

from .conftest import PASSWORDS, write_tenant

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "bench" / "sipbench" / "netns_phone.py"
A_TONE, B_TONE = 440, 1000
CALL_SECONDS = 20.0
NG_PORT, METRICS_PORT = 2223, 9161
RELAY_PORTS = "30000-30999"
#: 20 ms of PCMU at 8 kHz: one RTP packet, of IP 20 + UDP 8 + RTP 12 + 160 bytes.
PACKET_SAMPLES, PACKET_BYTES = 160, 200
#: Packets B sends before A's first one latches it; packets sent after the hang-up's BYE:
#: the few of a call's edges, never a gap in it.
FEW_PACKETS = 5
#: 100 ms blocks of analyse_tone: the tone must fill 95 % of the call.
LOUD_BLOCKS = int(0.95 * CALL_SECONDS * 10)

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("iptables") is None or shutil.which("baresip") is None,
        reason="the NAT lab needs root, iptables (network namespaces) and baresip",
    ),
    pytest.mark.timeout(CALL_SECONDS + 100),  # a 20 s call: beyond the suite's 60 s
]


@pytest.fixture
def lab() -> Iterator[NatLab]:
    with NatLab() as built:
        yield built


def _stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextmanager
def relay(lab: NatLab, log: Path) -> Iterator[None]:
    argv = [sys.executable, "-m", "mediarelay", "serve", "--ng", f"127.0.0.1:{NG_PORT}"]
    argv += ["--bind", PBX, "--advertise", PBX, "--ports", RELAY_PORTS]
    argv += ["--metrics-port", str(METRICS_PORT), "--log-level", "warning"]
    with log.open("w") as sink:
        process = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns["pbx"], *argv], stdout=sink, stderr=sink, cwd=ROOT
        )
    try:
        yield
        assert process.poll() is None, log.read_text()
    finally:
        _stop(process)


@contextmanager
def edge(lab: NatLab, tmp: Path, tenant: str, domain: str, *, anchor: bool) -> Iterator[None]:
    manifests = tmp / "manifests"
    manifests.mkdir()
    write_tenant(manifests, tenant, domain)
    if not anchor:
        path = manifests / f"{tenant}.yaml"
        text = path.read_text().replace("  limits:", "  media: {anchor: false}\n  limits:")
        path.write_text(text)
    argv = [sys.executable, "-m", "sipedge", "serve", "--listen", f"udp:{PBX}:5060"]
    argv += ["--manifests", str(manifests), "--relay", f"127.0.0.1:{NG_PORT}"]
    log = tmp / "edge.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns["pbx"], *argv],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            cwd=ROOT,
        )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 15
        while process.stdout.readline().strip() != "READY":
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
        yield
        assert process.poll() is None, log.read_text()
    finally:
        if process.stdout is not None:
            process.stdout.close()
        _stop(process, 15)


def relay_metrics(lab: NatLab) -> dict[str, float]:
    """The relay's Prometheus samples (``name{labels}`` -> value), scraped in its namespace."""
    script = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read().decode())"
    )
    found = {}
    for line in lab.exec("pbx", sys.executable, "-c", script).splitlines():
        if line.startswith("relay_") and " " in line:
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def relay_totals(lab: NatLab, calls: int) -> dict[str, float]:
    """The relay's counters once ``calls`` calls were deleted (the edge deletes a call on
    its BYE; the relay refreshes its metrics once a second)."""
    deadline = time.monotonic() + 10
    while True:
        found = relay_metrics(lab)
        if found['relay_sessions_ended_total{how="deleted"}'] >= calls:
            return found
        assert time.monotonic() < deadline, f"the edge did not delete the call: {found}"
        time.sleep(0.2)


def call(lab: NatLab, tmp: Path, domain: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (behind the NAT) calls B for CALL_SECONDS; each phone's JSON result."""
    ready = tmp / "b.ready"
    common = ["--domain", domain, "--registrar", f"{PBX}:5060", "--ready", str(ready)]
    common += ["--seconds", str(CALL_SECONDS)]
    started = []
    for role, user, host, tone, part in (
        ("phb", "2002", PHONE_B, B_TONE, ["--answer"]),
        ("pha", "2001", PHONE_A, A_TONE, ["--dial", f"sip:2002@{domain}"]),
    ):
        wav = write_tone_wav(tmp / f"{user}.wav", tone, CALL_SECONDS + 15)
        argv = [sys.executable, str(DRIVER), "--workdir", str(tmp / f"phone-{user}")]
        argv += ["--user", user, "--password", PASSWORDS[user], "--host", host]
        argv += ["--wav", str(wav), "--out", str(tmp / f"{user}.json"), *common, *part]
        started.append(lab.popen(role, argv, cwd=ROOT))
    try:
        for process in started:
            process.wait(CALL_SECONDS + 90)
    finally:
        for process in started:
            _stop(process)
    results = []
    for user in ("2001", "2002"):
        result: dict[str, Any] = json.loads((tmp / f"{user}.json").read_text())
        assert result["ok"], result.get("error")
        assert result["exit_code"] == 0, result
        results.append(result)
    return results[0], results[1]


def samples(path: str | None) -> int:
    return 0 if path is None else len(read_wav(path).samples)


def measured(tmp: Path, record: Callable[[str, object], None], **values: object) -> None:
    """Keep the numbers (``measured.json`` and the junit properties) for the report."""
    (tmp / "measured.json").write_text(json.dumps(values, indent=1, default=str))
    for key, value in values.items():
        record(key, value)


def test_without_anchoring_only_b_hears(
    lab: NatLab, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    tenant = "natlab"
    with (
        relay(lab, tmp_path / "relay.log"),
        edge(lab, tmp_path, tenant, f"{tenant}.pbx.test", anchor=False),
    ):
        for role in ("pha", "phb"):
            lab.count_media(role)  # to and from anyone: the phones talk directly
        a, b = call(lab, tmp_path, f"{tenant}.pbx.test")
        relayed = relay_metrics(lab)
        counted = {"A": lab.media_counts("pha"), "B": lab.media_counts("phb")}
    assert a["call_seconds"] >= CALL_SECONDS
    # B hears A's tone through the router's NAT: A sends to B's public address.
    heard_by_b = analyse_tone(b["heard"], A_TONE)
    assert heard_by_b.present(min_share=0.9, min_loud_blocks=LOUD_BLOCKS), heard_by_b
    # A hears nothing: B sends to 192.0.2.10, A's private address, unreachable.
    heard_by_a = None if a["heard"] is None else analyse_tone(a["heard"], B_TONE)
    assert heard_by_a is None or heard_by_a.loud_blocks == 0, heard_by_a
    # The tenant's calls never touched the relay.
    assert relayed['relay_sessions_ended_total{how="deleted"}'] == 0
    assert relayed['relay_packets_total{direction="caller_to_callee"}'] == 0
    measured(
        tmp_path,
        record_property,
        heard_by_b=heard_by_b,
        heard_by_a=heard_by_a,
        samples_heard_by_a=samples(a["heard"]),
        counted={name: dataclasses.asdict(flows["rtp"]) for name, flows in counted.items()},
    )
    # Counted in the phones' namespaces: A's RTP reaches B, not one packet reaches A (B's
    # kernel has no route to a private address: B's RTP never even leaves).
    a_rtp, b_rtp = counted["A"]["rtp"], counted["B"]["rtp"]
    assert a_rtp.sent >= CALL_SECONDS * 50 * 0.99, a_rtp
    assert b_rtp.arrived >= a_rtp.sent - a_rtp.refused, (a_rtp, b_rtp)
    assert a_rtp.arrived == 0, a_rtp


def rtp_loss(sender: dict[str, Flow], receiver: dict[str, Flow], pre_latch: int) -> dict[str, Any]:
    """One direction's RTP as the phones' own kernels counted it, and its loss: in total;
    after latching, without the ``pre_latch`` packets the relay could not send yet; in
    the call, also without those sent after the hang-up's BYE. Some of those still
    arrive, and counters cannot tell them from the call's own: the call lost at least
    what arrived short of it, at most what neither arrived nor was refused."""
    rtp, arrived = sender["rtp"], receiver["rtp"].arrived
    in_call = rtp.sent - pre_latch - rtp.after_bye
    lost_at_least = max(0, in_call - arrived)
    return {
        "sent": rtp.sent,
        "arrived": arrived,
        "pre_latch": pre_latch,
        "after_bye": rtp.after_bye,
        "refused": rtp.refused,
        "lost_in_call_at_least": lost_at_least,
        "lost_in_call_at_most": rtp.sent - pre_latch - rtp.refused - arrived,
        "loss_total": 1 - arrived / rtp.sent,
        "loss_after_latching": 1 - arrived / (rtp.sent - pre_latch),
        "loss_in_call": lost_at_least / in_call,
    }


def phone_loss(a: dict[str, Flow], b: dict[str, Flow], send_errors: int) -> dict[str, Any]:
    """Both directions of RTP; the relay's send errors are B's packets before A latched.

    Only A's address is unknown to the relay before A's first packet (B's SDP names B's
    real one), so every send error is a packet of B's to A, RTP or RTCP (A's RTCP port
    latches on A's first RTCP). The errors are charged to B's RTCP that did not arrive
    first, the rest to its RTP: that never understates RTP loss.
    """
    rtcp_missing = b["rtcp"].sent - b["rtcp"].refused - a["rtcp"].arrived
    return {
        "A_to_B": rtp_loss(a, b, 0),
        "B_to_A": rtp_loss(b, a, send_errors - rtcp_missing) | {"rtcp_pre_latch": rtcp_missing},
    }


def test_with_anchoring_both_hear(
    lab: NatLab, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    tenant = "natlab"
    with (
        relay(lab, tmp_path / "relay.log"),
        edge(lab, tmp_path, tenant, f"{tenant}.pbx.test", anchor=True),
    ):
        for role in ("pha", "phb"):
            lab.count_media(role, PBX)  # A's own view, behind its NAT
        a, b = call(lab, tmp_path, f"{tenant}.pbx.test")
        relayed = relay_totals(lab, 1)
        counted = {"A": lab.media_counts("pha"), "B": lab.media_counts("phb")}
    assert a["call_seconds"] >= CALL_SECONDS
    # Nothing dropped at the relay: both phones latched, nobody else sent.
    drops = {key: value for key, value in relayed.items() if key.startswith("relay_drops")}
    assert not any(drops.values()), drops
    numbers: dict[str, object] = {"relay": relayed}
    for name, phone, other, far_hz, own_hz, direction in (
        ("A", a, b, B_TONE, A_TONE, "callee_to_caller"),
        ("B", b, a, A_TONE, B_TONE, "caller_to_callee"),
    ):
        heard = analyse_tone(phone["heard"], far_hz)
        assert heard.present(min_share=0.9, min_loud_blocks=LOUD_BLOCKS), (name, heard)
        assert analyse_tone(phone["heard"], own_hz).median_share < 0.01
        # What this phone encoded is what its kernel saw leave: 20 ms PCMU packets.
        encoded = samples(phone["sent"]) // PACKET_SAMPLES
        own = counted[name]["rtp"]
        assert abs(own.sent - encoded) <= 2, (name, encoded, own)
        assert own.sent_bytes == own.sent * PACKET_BYTES, (name, own)
        # The relay forwarded the other's RTP (plus RTCP every ~5 s) to this phone ...
        sent = samples(other["sent"]) // PACKET_SAMPLES
        forwarded = relayed[f'relay_packets_total{{direction="{direction}"}}']
        assert sent * 0.999 <= forwarded <= sent + 20, (name, sent, forwarded)
        # ... and it decoded nearly all: its jitter buffer holds 5-10 packets at the hang-up.
        decoded = samples(phone["heard"]) // PACKET_SAMPLES
        assert decoded >= sent - 15, (name, sent, decoded)
        numbers[name] = {
            "tone": heard,
            "sent_by_other": sent,
            "forwarded_by_relay": forwarded,
            "decoded": decoded,
        }
    numbers["counted"] = {
        name: {kind: dataclasses.asdict(flow) for kind, flow in flows.items()}
        for name, flows in counted.items()
    }
    send_errors = int(relayed["relay_send_errors_total"])
    loss = phone_loss(counted["A"], counted["B"], send_errors)
    numbers["rtp"] = loss
    measured(tmp_path, record_property, **numbers)
    # The relay's send errors are the few packets B sent before A's first one, and A
    # lacks each of them (as the senders lack each refused one): "at most" is no less.
    assert send_errors <= FEW_PACKETS, loss
    assert 0 <= loss["B_to_A"]["pre_latch"] <= send_errors, loss
    for way, rtp in loss.items():
        assert rtp["lost_in_call_at_most"] >= 0, (way, rtp)
        # The relay closed the call's ports at the hang-up, not before; a short tail.
        assert rtp["refused"] <= rtp["after_bye"] <= FEW_PACKETS, (way, rtp)
        assert rtp["loss_in_call"] < 0.001, (way, rtp)  # under 0.1 %
