"""A trial tenant's calls (issue 5.3), through a real edge process with Redis.

* A call is cut at the trial's limit, 60 s after the answer: both phones get a BYE at
  60 ± 1 s, though neither hangs up.
* One call at a time: a second call while the first is up gets 403 with the reason.
* A number that is no extension and not verified gets 403 ``Trial Calls Internal Only``.
* Once the cut call is over, its slot is free again: the next call rings.
"""

from __future__ import annotations

import datetime
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench import (
    BENCH_DOMAIN,
    SippOptions,
    SippProcess,
    call_options,
    free_udp_port,
    make_users,
    register_options,
    run_sipp,
    scenario,
    write_tenant_manifest,
    write_users_csv,
)
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


# --- the same cut-off with SIPp phones --------------------------------------------------


def message_times(log: Path) -> list[tuple[float, str]]:
    """(epoch s, first line) of each message in a SIPp ``-trace_msg`` log."""
    found: list[tuple[float, str]] = []
    lines = log.read_text(errors="replace").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("-----") and index + 3 < len(lines):
            start_line = next((text for text in lines[index + 1 :] if text.strip()), "")
            if "received" in start_line:
                first = next(text for text in lines[index + 2 :] if text.strip())
                stamp = " ".join(line.split()[-2:])  # 2026-11-26 21:18:41.159514
                at = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
                found.append((at, first.strip()))
    return found


@pytest.mark.timeout(LIMIT_S + 60)
def test_a_trial_call_held_by_sipp_for_5_minutes_gets_bye_at_60_s(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """The SIPp caller would hold the call for 5 minutes (it waits for the far end's BYE
    and gives up after 300 s); the SIPp callee answers and waits for a BYE too. The edge
    ends the call on both at the trial's 60 s."""
    users = make_users(2, first=310_000)
    callee, caller = users
    tenant = f"trial{secrets.token_hex(3)}"

    def manifest(folder: Path) -> None:
        path = write_tenant_manifest(folder / "trial.yaml", users, tenant=tenant)
        text = path.read_text().replace("spec:\n", "spec:\n  billing:\n    plan: trial\n", 1)
        path.write_text(text)

    edge = edge_factory(tenant=tenant, domain=BENCH_DOMAIN, manifest=manifest)
    remote = f"127.0.0.1:{edge.port}"
    port = free_udp_port()
    registered = run_sipp(
        register_options(
            remote,
            write_users_csv(tmp_path / "callee.csv", [callee]),
            scenario=scenario("register"),
            local_port=port,
            calls=1,
        ),
        tmp_path,
        timeout_s=20,
    )
    assert registered.ok, registered.describe()
    answering = SippOptions(
        scenario=scenario("uas"),
        local_port=port,
        calls=1,
        trace_messages=True,
        recv_timeout_ms=300_000,  # waits for the caller's BYE as long as the caller holds
    )
    with SippProcess(answering, tmp_path) as uas:
        uas.wait_listening()
        options = call_options(
            "uac_remote_bye",
            remote,
            write_users_csv(tmp_path / "caller.csv", [caller]),
            callee.number,
            calls=1,
            trace_messages=True,
            recv_timeout_ms=300_000,  # holds the call for 5 minutes unless a BYE comes
        )
        held = run_sipp(options, tmp_path, timeout_s=LIMIT_S + 30)
        assert held.ok, held.describe()
        assert uas.wait(timeout_s=15).ok
    times = message_times(held.files.messages)
    answered = next(at for at, first in times if first.startswith("SIP/2.0 200"))
    bye = next(at for at, first in times if first.startswith("BYE "))
    assert LIMIT_S - 1 <= bye - answered <= LIMIT_S + 1, (answered, bye)
