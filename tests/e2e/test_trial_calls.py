"""A trial tenant's calls (issue 5.3), through a real edge process with Redis.

* A call is cut at the trial's limit, 60 s after the answer: both phones get a BYE at
  60 ± 1 s, though neither hangs up.
* One call at a time: a second call while the first is up gets 403 with the reason.
* A number that is no extension and not verified gets 403 ``Trial Calls Internal Only``.
* Once the cut call is over, its slot is free again: the next call rings.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.scripted import ScriptedPhone
from sipedge.sip.message import Response

from .conftest import PASSWORDS, EdgeFactory, write_tenant

LIMIT_S = 60


def trial_tenant(name: str, domain: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        write_tenant(folder, name, domain)
        path = folder / f"{name}.yaml"
        text = path.read_text().replace("  limits:", "  billing: {plan: trial}\n  limits:")
        path.write_text(text)

    return write


def target_of(response: Response) -> str:
    contacts = response.contacts
    assert isinstance(contacts, tuple)
    return str(contacts[0].uri)


@pytest.mark.timeout(LIMIT_S + 60)
def test_a_trial_call_is_cut_at_60_s_and_only_one_runs_at_a_time(
    edge_factory: EdgeFactory,
) -> None:
    name = f"trial{secrets.token_hex(3)}"
    domain = f"{name}.pbx.test"
    edge = edge_factory(manifest=trial_tenant(name, domain), tenant=name, domain=domain)
    caller = ScriptedPhone("2001", domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", domain, PASSWORDS["2002"])
    try:
        callee.register(edge.port)
        invite = caller.invite(edge.port, "2002")
        incoming = callee.receive_request("INVITE")
        callee.answer(incoming, 200, "OK", edge.port)
        answer = caller.final()
        answered_at = time.monotonic()
        assert answer.status == 200
        ack = caller.request(
            "ACK", target_of(answer), answer.headers.get("To") or "", invite.call_id, 2
        )
        caller.send(ack, edge.port)

        # While it is up: a second call, and a call out to an unverified number.
        second = ScriptedPhone("2003", domain, PASSWORDS["2003"])
        try:
            second.invite(edge.port, "2002")
            busy = second.final()
            assert (busy.status, busy.reason) == (403, "Too Many Concurrent Calls")
            second.invite(edge.port, "4930123456")
            outside = second.final()
            assert (outside.status, outside.reason) == (403, "Trial Calls Internal Only")
        finally:
            second.close()

        # Neither phone hangs up: the edge does, at the limit, on both legs.
        for phone in (caller, callee):
            phone.sock.settimeout(LIMIT_S + 10)
            bye = phone.receive_request("BYE")
            phone.answer(bye, 200, "OK", edge.port)
            assert LIMIT_S - 1 <= time.monotonic() - answered_at <= LIMIT_S + 1
            phone.sock.settimeout(5)

        # The slot is free again: the next call rings the callee.
        caller.invite(edge.port, "2002")
        callee.receive_request("INVITE")
    finally:
        caller.close()
        callee.close()
