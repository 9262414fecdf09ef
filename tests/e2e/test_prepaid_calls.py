"""Prepaid calls through a real edge with its billing store (issue 5.2, 5.4, 5.5).

The edge runs with ``--billing sqlite:///…`` (the embedded store; the store suite runs
the same operations on Postgres) and ``--credit-slice 2``, so a call holds 2 s of talk
time ahead and extends it as it runs. The tenant is prepaid and rates its internal calls:
0.60 a minute by the second (1/1), 0.05 to connect. The test tops the account up through
the store, as the portal would, and reads the CDRs back from it.

* No money: the INVITE gets ``402 Insufficient Balance`` before any B leg, and a CDR.
* Money for 3 s: the call is answered, then cut on both legs with BYE at 3 ± 1 s; its CDR
  charges the connect fee and 3 s; the balance is 0, never below.
* Three concurrent calls share money for 9 s: each runs until an extension is refused
  and is cut within 1 s of its own limit; the charges add up to the money there was.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from contracts.billing.store import Cdr, Disposition
from contracts.stores.url import open_store
from sipbench.scripted import ScriptedPhone
from sipedge.sip.message import Response

from .conftest import PASSWORDS, EdgeFactory, EdgeProc, write_tenant

FEE_MICROS = 50_000
PER_SECOND_MICROS = 10_000  # 0.60 a minute
BILLING = (
    "  billing:\n    plan: prepaid\n    currency: EUR\n    rateInternalCalls: true\n"
    '    rates: [{prefix: "", perMinute: "0.60", connectFee: "0.05", increments: 1/1}]\n'
)


def prepaid_tenant(name: str, domain: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        write_tenant(folder, name, domain)
        path = folder / f"{name}.yaml"
        path.write_text(path.read_text().replace("  limits:", BILLING + "  limits:"))

    return write


@contextmanager
def prepaid_edge(edge_factory: EdgeFactory, tmp_path: Path) -> Iterator[tuple[EdgeProc, str]]:
    name = f"pre{secrets.token_hex(3)}"
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    edge = edge_factory(
        manifest=prepaid_tenant(name, f"{name}.pbx.test"),
        tenant=name,
        domain=f"{name}.pbx.test",
        extra_args=["--billing", url, "--credit-slice", "2"],
    )
    yield edge, url


def top_up(url: str, tenant: str, micros: int) -> None:
    async def run() -> None:
        store = await open_store(url)
        try:
            await store.top_up(
                tenant, "main", micros, reference="test-top-up", now_ms=int(time.time() * 1000)
            )
        finally:
            await store.close()

    asyncio.run(run())


def cdrs_and_balance(url: str, tenant: str, calls: int) -> tuple[list[Cdr], int]:
    """The tenant's CDRs once ``calls`` are there (the edge settles after the BYE), and
    the account's balance."""
    return cdrs_and_balance_within(url, tenant, calls, timeout_s=10)


def cdrs_and_balance_within(
    url: str, tenant: str, calls: int, *, timeout_s: float
) -> tuple[list[Cdr], int]:
    async def run() -> tuple[list[Cdr], int]:
        store = await open_store(url)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                found = list(await store.cdrs(tenant, since_ms=0, until_ms=2**62))
                if len(found) >= calls or time.monotonic() > deadline:
                    balance = await store.balance(tenant, "main")
                    return found, balance.account.balance_micros
                await asyncio.sleep(0.1)
        finally:
            await store.close()

    return asyncio.run(run())


def target_of(response: Response) -> str:
    contacts = response.contacts
    assert isinstance(contacts, tuple)
    return str(contacts[0].uri)


def answered_call(edge: EdgeProc, caller: ScriptedPhone, callee: ScriptedPhone) -> float:
    """``caller`` calls 2002, ``callee`` answers; when the caller had the 200."""
    invite = caller.invite(edge.port, "2002")
    callee.answer(callee.receive_request("INVITE"), 200, "OK", edge.port)
    answer = caller.final()
    assert answer.status == 200, (answer.status, answer.reason)
    at = time.monotonic()
    to = answer.headers.get("To") or ""
    caller.send(caller.request("ACK", target_of(answer), to, invite.call_id, 2), edge.port)
    return at


def test_no_money_is_402_before_any_b_leg_and_still_a_cdr(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    with prepaid_edge(edge_factory, tmp_path) as (edge, url):
        caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
        callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
        try:
            callee.register(edge.port)
            caller.invite(edge.port, "2002")
            refused = caller.final()
            assert (refused.status, refused.reason) == (402, "Insufficient Balance")
            callee.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                callee.receive_request("INVITE")
        finally:
            caller.close()
            callee.close()
        (cdr,), balance = cdrs_and_balance(url, edge.tenant, 1)
        assert (cdr.disposition, cdr.amount_micros, balance) == (Disposition.REFUSED, 0, 0)


def test_money_for_3_s_cuts_the_call_at_3_s_and_charges_exactly_that(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    with prepaid_edge(edge_factory, tmp_path) as (edge, url):
        top_up(url, edge.tenant, FEE_MICROS + 3 * PER_SECOND_MICROS)
        caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
        callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
        try:
            callee.register(edge.port)
            answered_at = answered_call(edge, caller, callee)
            for phone in (caller, callee):
                phone.answer(phone.receive_request("BYE"), 200, "OK", edge.port)
                assert 2 <= time.monotonic() - answered_at <= 4
        finally:
            caller.close()
            callee.close()
        (cdr,), balance = cdrs_and_balance(url, edge.tenant, 1)
    assert cdr.disposition == Disposition.CUT_OFF
    assert cdr.answered_ms is not None
    assert abs((cdr.end_ms - cdr.answered_ms) - 3000) < 1000
    assert cdr.billable_s == 3  # cut at its limit: no increment begun after it
    assert cdr.amount_micros == FEE_MICROS + 3 * PER_SECOND_MICROS
    assert balance == 0


def test_three_concurrent_calls_share_the_money_and_are_all_cut_at_their_limits(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    money = 3 * FEE_MICROS + 9 * PER_SECOND_MICROS
    with prepaid_edge(edge_factory, tmp_path) as (edge, url):
        top_up(url, edge.tenant, money)
        callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
        callers = [ScriptedPhone("2001", edge.domain, PASSWORDS["2001"]) for _ in range(3)]
        try:
            callee.register(edge.port)
            for caller in callers:
                answered_call(edge, caller, callee)
            for caller in callers:
                caller.sock.settimeout(20)
                caller.answer(caller.receive_request("BYE"), 200, "OK", edge.port)
            for _ in callers:
                callee.sock.settimeout(5)
                callee.answer(callee.receive_request("BYE"), 200, "OK", edge.port)
        finally:
            for phone in (callee, *callers):
                phone.close()
        cdrs, balance = cdrs_and_balance(url, edge.tenant, 3)
    assert len(cdrs) == 3
    for cdr in cdrs:
        assert cdr.disposition == Disposition.CUT_OFF, cdr
        assert cdr.answered_ms is not None
        # Cut at what it was granted, its billed seconds (1/1 increments), and charged them.
        assert cdr.end_ms - cdr.answered_ms == cdr.billable_s * 1000, cdr
        assert cdr.amount_micros == FEE_MICROS + cdr.billable_s * PER_SECOND_MICROS, cdr
    assert balance >= 0
    assert sum(cdr.amount_micros for cdr in cdrs) == money - balance
    assert balance < PER_SECOND_MICROS  # the money ran out: no whole second was left


@pytest.mark.timeout(120)
def test_an_edge_killed_mid_call_leaves_exactly_one_cdr_written_by_another(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """kill -9 of the edge that carries a call: nothing settles it there; its reservation
    expires (no more extensions), and the other edge's recovery writes the leg's one CDR,
    charged up to the last activity plus the grace, never beyond what was reserved."""
    name = f"pre{secrets.token_hex(3)}"
    domain = f"{name}.pbx.test"
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    args = ["--billing", url, "--credit-slice", "2"]
    shared = {"manifest": prepaid_tenant(name, domain), "tenant": name, "domain": domain}
    doomed = edge_factory(redis=True, extra_args=args, **shared)
    survivor = edge_factory(redis=True, extra_args=args, **shared)
    money = FEE_MICROS + 600 * PER_SECOND_MICROS
    top_up(url, name, money)
    caller = ScriptedPhone("2001", domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", domain, PASSWORDS["2002"])
    try:
        callee.register(doomed.port)
        answered_call(doomed, caller, callee)
        time.sleep(3)  # a few slices extended
        doomed.process.kill()
        doomed.process.wait(5)
        killed_at_ms = int(time.time() * 1000)
        (cdr,), balance = cdrs_and_balance_within(url, name, 1, timeout_s=60)
    finally:
        caller.close()
        callee.close()
    assert survivor.alive()
    assert cdr.disposition == Disposition.RECOVERED
    assert cdr.answered_ms is not None
    assert 3000 <= cdr.end_ms - cdr.answered_ms <= killed_at_ms - cdr.answered_ms + 35_000
    # Charged for the talk it had reserved when its edge died (at least the 3 s it ran),
    # never beyond: the store's bound (contracts.billing.store).
    assert cdr.amount_micros >= FEE_MICROS + 3 * PER_SECOND_MICROS
    assert cdr.amount_micros <= FEE_MICROS + cdr.billable_s * PER_SECOND_MICROS
    assert balance == money - cdr.amount_micros
    # Later recoveries (every edge, every 10 s) find nothing more to settle.
    time.sleep(11)
    cdrs, again = cdrs_and_balance_within(url, name, 1, timeout_s=0)
    assert (len(cdrs), again) == (1, balance)
