"""The whole chain of issue 7's point 5: ``kubectl apply`` of a Tenant → the operator
(generated SIP credentials, the snapshot in Redis) → a running edge that takes its tenants
from the snapshots → SIPp phones: one registers with the password the operator generated
and calls the other. Then an update of the Tenant reaches the running edge (measured from
the new version's arrival in Redis to the edge serving it), and the Tenant's deletion ends
the call in progress and the phones' registrations.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..e2e.conftest import EdgeProc, start_edge, stop_edge
from .conftest import ALICE_PASSWORD, Lab
from .conftest import tenant_yaml as shared_tenant_yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench import (
    SippOptions,
    SippProcess,
    User,
    call_options,
    free_udp_port,
    register_options,
    run_sipp,
    scenario,
    write_users_csv,
)
from sipbench.scripted import ScriptedPhone

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sip-tester")


def tenant_yaml(lab: Lab, *, carol: bool = False) -> str:
    """The test's tenant on the default (postpaid) plan: its calls are recorded, free."""
    return shared_tenant_yaml(lab.tenant, lab.domain, billing=None, carol=carol)


@pytest.fixture
def edge(lab: Lab) -> Iterator[EdgeProc]:
    lab.operator.start()
    lab.apply(tenant_yaml(lab))
    lab.wait_for("Ready for generation 1", lambda: lab.ready(1))
    running = start_edge(
        lab.tmp_path,
        snapshots=True,
        tenant=lab.tenant,
        domain=lab.domain,
        extra_args=["--billing", lab.billing_url],  # the operator's Postgres schema
    )
    try:
        yield running
    finally:
        stop_edge(running)


def register(lab: Lab, edge: EdgeProc, user: User, port: int) -> Any:
    options = register_options(
        f"127.0.0.1:{edge.port}",
        write_users_csv(lab.tmp_path / f"{user.number}.csv", [user]),
        lab.domain,
        local_port=port,
        calls=1,
        trace_messages=True,
        name=f"register-{user.number}",
    )
    return run_sipp(options, lab.tmp_path, timeout_s=20)


def test_a_phone_with_generated_credentials_registers_and_calls(lab: Lab, edge: EdgeProc) -> None:
    generated = lab.secret_values(f"{lab.tenant}-sip-credentials")
    alice = User("1001", ALICE_PASSWORD, lab.domain)
    bob = User("1002", generated["1002"], lab.domain)
    port = free_udp_port()
    registered = register(lab, edge, alice, port)
    assert registered.ok, registered.describe()
    answering = SippOptions(
        scenario=scenario("uas"), local_port=port, calls=1, trace_messages=True, name="alice"
    )
    with SippProcess(answering, lab.tmp_path) as callee:
        callee.wait_listening()
        assert register(lab, edge, bob, free_udp_port()).ok  # the generated password works
        calling = call_options(
            "uac",
            f"127.0.0.1:{edge.port}",
            write_users_csv(lab.tmp_path / "bob-calls.csv", [bob]),
            "1001",
            lab.domain,
            calls=1,
            trace_messages=True,
            name="bob",
        )
        called = run_sipp(calling, lab.tmp_path, timeout_s=30)
        assert called.ok, called.describe()
        answered = callee.wait(timeout_s=15)
    assert answered.ok, answered.describe()
    # the call is recorded on the account the operator provisioned: the Tenant's UID's
    uid = (lab.get("tenants", lab.tenant) or {})["metadata"]["uid"]

    def both_legs() -> list[Any] | None:
        rows = lab.query("SELECT leg, caller, callee FROM cdrs WHERE tenant = $1", uid)
        return rows if len(rows) == 2 else None

    legs = lab.wait_for("both legs' CDRs", both_legs)
    assert sorted(tuple(r) for r in legs) == [("A", "1002", "1001"), ("B", "1002", "1001")]


def test_an_update_reaches_the_running_edge_and_a_deletion_ends_the_tenant(
    lab: Lab, edge: EdgeProc
) -> None:
    carol_phone = ScriptedPhone("1003", lab.domain, "unknown yet")
    try:
        applied = time.monotonic()
        lab.apply(tenant_yaml(lab, carol=True))
        lab.wait_for("version 2 in Redis", lambda: (lab.snapshot() or {}).get("version") == 2)
        stored = time.monotonic()
        carol_phone.password = lab.secret_values(f"{lab.tenant}-sip-credentials")["1003"]
        served = None
        while served is None and time.monotonic() - stored < 5:
            if carol_phone.register_status(edge.port) == 200:
                served = time.monotonic()
        assert served is not None, "the edge never served 1003"
        print(  # noqa: T201 (pytest -s)
            f"\nversion 2: in Redis {stored - applied:.3f} s after kubectl apply, "
            f"served by the edge {served - stored:.3f} s after that"
        )
        assert served - stored < 1.0

        lab.kubectl("delete", "tenant", lab.tenant, "--timeout=20s")
        lab.wait_for("the tenant disabled", lambda: (lab.snapshot() or {}).get("enabled") is False)
        deadline = time.monotonic() + 5
        while carol_phone.register_status(edge.port) == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert carol_phone.register_status(edge.port) == 403  # its phones register no more
    finally:
        carol_phone.close()
