"""Call control cases a scripted phone can spell out exactly, against a running edge.

Forking to every registered contact (first 2xx wins, the others are CANCELled), hold
and resume by re-INVITE and UPDATE passed through, Max-Forwards exhausted (483), and
the ring timeout (CANCEL to the callee, 480 to the caller).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.scripted import SDP, ScriptedPhone
from sipedge.sip.message import Request, Response

PASSWORDS = {"2001": "pw-2001-test", "2002": "pw-2002-test"}
HOLD_SDP = SDP + b"a=sendonly\r\n"


def phone(user: str, edge: Any) -> ScriptedPhone:
    return ScriptedPhone(user, edge.domain, PASSWORDS[user])


def invite(caller: ScriptedPhone, edge: Any, callee: str, max_forwards: int = 70) -> Request:
    """INVITE → 407 → ACK → INVITE with credentials; returns the second INVITE."""
    return caller.invite(edge.port, callee, max_forwards=max_forwards)


def ack_2xx(caller: ScriptedPhone, ok: Response, edge: Any) -> tuple[str, str]:
    """ACK our 2xx; returns (the edge's contact for the dialog, the To with its tag)."""
    target = str(ok.contacts[0].uri)  # type: ignore[index]
    to = ok.headers.get("To") or ""
    caller.send(caller.request("ACK", target, to, ok.call_id, ok.cseq.number), edge.port)
    return target, to


def test_forks_to_every_contact_and_cancels_the_losers(edge: Any) -> None:
    caller, desk, mobile = phone("2001", edge), phone("2002", edge), phone("2002", edge)
    try:
        desk.register(edge.port)
        mobile.register(edge.port)
        invite(caller, edge, "2002")
        to_desk, to_mobile = desk.receive_request("INVITE"), mobile.receive_request("INVITE")
        assert to_desk.call_id == to_mobile.call_id  # one B-leg call, two branches
        assert to_desk.branch != to_mobile.branch
        desk.answer(to_desk, 180, "Ringing", edge.port)
        mobile.answer(to_mobile, 200, "OK", edge.port, SDP)
        ok = caller.final()
        assert ok.status == 200
        assert ok.body == SDP
        cancel = desk.receive_request("CANCEL")
        assert cancel.branch == to_desk.branch
        desk.answer(cancel, 200, "OK", edge.port)
        desk.answer(to_desk, 487, "Request Terminated", edge.port)
        assert desk.receive_request("ACK").cseq.method == "ACK"  # the 487 is ACKed
        ack_2xx(caller, ok, edge)
        assert mobile.receive_request("ACK").call_id == to_mobile.call_id
        logged = [json.loads(line) for line in edge.log.read_text().splitlines()]
        answered = [entry for entry in logged if entry["msg"] == "call answered"]
        assert [(e["call_id"], e["b_call_id"]) for e in answered] == [
            (ok.call_id, to_mobile.call_id)
        ]
    finally:
        for p in (caller, desk, mobile):
            p.close()


def test_hold_and_resume_pass_through(edge: Any) -> None:
    caller, callee = phone("2001", edge), phone("2002", edge)
    try:
        callee.register(edge.port)
        first = invite(caller, edge, "2002")
        incoming = callee.receive_request("INVITE")
        callee.answer(incoming, 200, "OK", edge.port, SDP)
        ok = caller.final()
        target, to = ack_2xx(caller, ok, edge)
        callee.receive_request("ACK")

        hold = caller.request("INVITE", target, to, first.call_id, 3, body=HOLD_SDP)
        caller.send(hold, edge.port)
        reinvite = callee.receive_request("INVITE")
        assert reinvite.call_id == incoming.call_id  # the B leg's dialog
        assert reinvite.to.tag == callee.tag
        assert reinvite.body == HOLD_SDP
        callee.answer(reinvite, 200, "OK", edge.port, SDP + b"a=recvonly\r\n")
        held = caller.final()
        assert held.status == 200
        assert held.body.endswith(b"a=recvonly\r\n")
        caller.send(caller.request("ACK", target, to, first.call_id, 3), edge.port)

        # The callee resumes with UPDATE: it reaches the caller in the A leg's dialog.
        b_target = str(reinvite.contacts[0].uri)  # type: ignore[index]
        update = callee.request(
            "UPDATE", b_target, reinvite.headers.get("From") or "", incoming.call_id, 1, body=SDP
        )
        update.headers.set("From", f"<sip:2002@{edge.domain}>;tag={callee.tag}")
        callee.send(update, edge.port)
        relayed = caller.receive_request("UPDATE")
        assert relayed.call_id == first.call_id
        assert relayed.body == SDP
        caller.answer(relayed, 200, "OK", edge.port, SDP)
        assert callee.final().status == 200
    finally:
        caller.close()
        callee.close()


def test_max_forwards_exhausted_is_483(edge: Any) -> None:
    caller, callee = phone("2001", edge), phone("2002", edge)
    try:
        callee.register(edge.port)
        invite(caller, edge, "2002", max_forwards=0)
        final = caller.final()
        assert (final.status, final.reason) == (483, "Too Many Hops")
    finally:
        caller.close()
        callee.close()


def test_ring_timeout_cancels_the_callee_and_answers_480(edge: Any) -> None:
    caller, callee = phone("2001", edge), phone("2002", edge)
    try:
        callee.register(edge.port)
        invite(caller, edge, "2002")
        incoming = callee.receive_request("INVITE")
        callee.answer(incoming, 180, "Ringing", edge.port)
        ringing = caller.receive()
        assert isinstance(ringing, Response)
        assert ringing.status in (100, 180)
        cancel = callee.receive_request("CANCEL")  # after the tenant's 3 s ring timeout
        callee.answer(cancel, 200, "OK", edge.port)
        callee.answer(incoming, 487, "Request Terminated", edge.port)
        final = caller.final()
        assert final.status == 480
    finally:
        caller.close()
        callee.close()
