"""Prepaid and postpaid calls through a real edge with its billing store (issue 5.2–5.5).

Each test runs twice: the edge with ``--billing sqlite:///…`` (the embedded store) and
with ``--billing postgresql://…`` (a schema of its own on the real server), and with
``--credit-slice 2``, so a call holds 2 s of talk time ahead and extends it as it runs.
The tenant is prepaid and rates its internal calls: 0.60 a minute by the second (1/1),
0.05 to connect. The test tops the account up through the store, as the portal would,
and reads the CDRs back from it.

* No money: the INVITE gets ``402 Insufficient Balance`` before any B leg, and a CDR.
* Money for 3 s: the call is answered, then cut on both legs with BYE at 3 ± 1 s; its CDR
  charges the connect fee and 3 s; the balance is 0, never below.
* Three concurrent calls share money for 9 s: each runs until an extension is refused
  and is cut within 1 s of its own limit; the charges add up to the money there was.
* Every attempt has one CDR per leg: the caller's (``A``, charged) and, once the callee
  was tried, the callee's (``B``, free); a number that does not exist gets the caller's.
* A phone retrying with the same Call-ID (after 488, as phones falling back from SRTP
  do) makes a new attempt: it goes through, under legs of its own (``A.<CSeq>``).
* Postpaid: no balance, never cut off (however many slices it outlives), priced in full
  on its CDR, no money moved.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from contracts.billing.store import Cdr, Disposition
from contracts.stores.url import open_store
from sipbench.scripted import ScriptedPhone
from sipedge.sip.message import Response

from .conftest import PASSWORDS, EdgeFactory, EdgeProc, write_tenant

POSTGRES_DSN = os.environ.get(
    "CLOUDPBX_TEST_POSTGRES_DSN", "postgresql://cloudpbx:cloudpbx@127.0.0.1:5432/cloudpbx_test"
)
FEE_MICROS = 50_000
PER_SECOND_MICROS = 10_000  # 0.60 a minute
BILLING = (
    "  billing:\n    plan: prepaid\n    currency: EUR\n    rateInternalCalls: true\n"
    '    rates: [{prefix: "", perMinute: "0.60", connectFee: "0.05", increments: 1/1}]\n'
)


@pytest.fixture(params=["sqlite", "postgres"])
def billing_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The edge's billing store, each in turn: the embedded SQLite file, and a schema of
    its own on the real Postgres server ``./pbx test`` starts (dropped afterwards), where
    authorize and settle run as the store's server-side functions, batched."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'billing.db'}"
        return
    schema = f"e2e_billing_{secrets.token_hex(6)}"
    postgres_admin(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_DSN}?search_path={schema}"  # asyncpg: a server setting
    finally:
        postgres_admin(f"DROP SCHEMA {schema} CASCADE")


def postgres_admin(sql: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def prepaid_tenant(
    name: str, domain: str, billing: str = BILLING, *, uid: str = ""
) -> Callable[[Path], None]:
    """The tenant's manifest; with ``uid`` (as a cluster's Tenant has) it is billed under
    that, not its name."""

    def write(folder: Path) -> None:
        write_tenant(folder, name, domain)
        path = folder / f"{name}.yaml"
        text = path.read_text().replace("  limits:", billing + "  limits:")
        if uid:
            text = text.replace(f"  name: {name}\nspec:", f"  name: {name}\n  uid: {uid}\nspec:")
        path.write_text(text)

    return write


@contextmanager
def prepaid_edge(
    edge_factory: EdgeFactory, url: str, billing: str = BILLING
) -> Iterator[tuple[EdgeProc, str]]:
    name = f"pre{secrets.token_hex(3)}"
    edge = edge_factory(
        manifest=prepaid_tenant(name, f"{name}.pbx.test", billing),
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


def cdrs_and_balance(url: str, tenant: str, legs: int) -> tuple[list[Cdr], int]:
    """The tenant's CDRs once ``legs`` are there (the edge settles after the BYE), and
    the account's balance."""
    return cdrs_and_balance_within(url, tenant, legs, timeout_s=10)


def by_leg(cdrs: list[Cdr]) -> tuple[list[Cdr], list[Cdr]]:
    """The caller legs' CDRs and the callee legs', each in call order, checking that
    each call's callee leg has its caller leg's disposition and times, free."""
    callers = sorted((c for c in cdrs if c.leg == "A"), key=lambda c: c.call_id)
    callees = sorted((c for c in cdrs if c.leg == "B"), key=lambda c: c.call_id)
    assert len(callers) + len(callees) == len(cdrs)
    by_call = {c.call_id: c for c in callers}
    for callee in callees:
        caller = by_call[callee.call_id]
        assert (callee.disposition, callee.setup_ms, callee.answered_ms, callee.end_ms) == (
            caller.disposition, caller.setup_ms, caller.answered_ms, caller.end_ms,
        )  # fmt: skip
        assert (callee.amount_micros, callee.rate) == (0, None)
    return callers, callees


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


@contextmanager
def phones(domain: str, port: int) -> Iterator[tuple[ScriptedPhone, ScriptedPhone]]:
    """2001 to call and 2002, registered through ``port``, to be called; closed after."""
    caller = ScriptedPhone("2001", domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", domain, PASSWORDS["2002"])
    try:
        callee.register(port)
        yield caller, callee
    finally:
        caller.close()
        callee.close()


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
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    with prepaid_edge(edge_factory, billing_url) as (edge, url):
        with phones(edge.domain, edge.port) as (caller, callee):
            caller.invite(edge.port, "2002")
            refused = caller.final()
            assert (refused.status, refused.reason) == (402, "Insufficient Balance")
            callee.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                callee.receive_request("INVITE")
        (cdr,), balance = cdrs_and_balance(url, edge.tenant, 1)
        assert (cdr.leg, cdr.disposition, cdr.amount_micros) == ("A", Disposition.REFUSED, 0)
        assert balance == 0
        time.sleep(0.5)  # no callee leg was tried: its CDR does not come later
        assert len(cdrs_and_balance_within(url, edge.tenant, 2, timeout_s=0)[0]) == 1


def test_money_for_3_s_cuts_the_call_at_3_s_and_charges_exactly_that(
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    with prepaid_edge(edge_factory, billing_url) as (edge, url):
        top_up(url, edge.tenant, FEE_MICROS + 3 * PER_SECOND_MICROS)
        with phones(edge.domain, edge.port) as (caller, callee):
            answered_at = answered_call(edge, caller, callee)
            for phone in (caller, callee):
                phone.answer(phone.receive_request("BYE"), 200, "OK", edge.port)
                assert 2 <= time.monotonic() - answered_at <= 4
        cdrs, balance = cdrs_and_balance(url, edge.tenant, 2)
    (cdr,), (_callee,) = by_leg(cdrs)
    assert cdr.disposition == Disposition.CUT_OFF
    assert cdr.answered_ms is not None
    assert abs((cdr.end_ms - cdr.answered_ms) - 3000) < 1000
    assert cdr.billable_s == 3  # cut at its limit: no increment begun after it
    assert cdr.amount_micros == FEE_MICROS + 3 * PER_SECOND_MICROS
    assert balance == 0


def test_three_concurrent_calls_share_the_money_and_are_all_cut_at_their_limits(
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    money = 3 * FEE_MICROS + 9 * PER_SECOND_MICROS
    with prepaid_edge(edge_factory, billing_url) as (edge, url):
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
        every_leg, balance = cdrs_and_balance(url, edge.tenant, 6)
    cdrs, callees = by_leg(every_leg)
    assert (len(cdrs), len(callees)) == (3, 3)
    for cdr in cdrs:
        assert cdr.disposition == Disposition.CUT_OFF, cdr
        assert cdr.answered_ms is not None
        # Cut at what it was granted, its billed seconds (1/1 increments), and charged them.
        assert cdr.end_ms - cdr.answered_ms == cdr.billable_s * 1000, cdr
        assert cdr.amount_micros == FEE_MICROS + cdr.billable_s * PER_SECOND_MICROS, cdr
    assert balance >= 0
    assert sum(cdr.amount_micros for cdr in cdrs) == money - balance
    assert balance < PER_SECOND_MICROS  # the money ran out: no whole second was left


def test_a_retry_with_the_same_call_id_is_a_new_attempt_with_legs_of_its_own(
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    with prepaid_edge(edge_factory, billing_url) as (edge, url):
        top_up(url, edge.tenant, FEE_MICROS + 3 * PER_SECOND_MICROS)
        with phones(edge.domain, edge.port) as (caller, callee):
            first = caller.invite(edge.port, "2002")  # CSeq 1 challenged, 2 with credentials
            callee.answer(callee.receive_request("INVITE"), 488, "Not Acceptable Here", edge.port)
            refused = caller.final()
            assert refused.status == 488
            caller.ack_failure(first, refused, edge.port)
            # The same Call-ID again, with another offer: CSeq 3 challenged, 4 goes through.
            again = caller.invite(edge.port, "2002", call_id=first.call_id, cseq=3)
            callee.answer(callee.receive_request("INVITE"), 200, "OK", edge.port)
            answer = caller.final()
            assert (answer.status, answer.reason) == (200, "OK")
            to = answer.headers.get("To") or ""
            caller.send(caller.request("ACK", target_of(answer), to, again.call_id, 4), edge.port)
            for phone in (caller, callee):  # cut off when the money for 3 s is spent
                phone.answer(phone.receive_request("BYE"), 200, "OK", edge.port)
        cdrs, balance = cdrs_and_balance(url, edge.tenant, 4)
    legs = {cdr.leg: cdr for cdr in cdrs}
    assert sorted(legs) == ["A", "A.4", "B", "B.4"]
    assert {cdr.call_id for cdr in cdrs} == {first.call_id}
    assert (legs["A"].disposition, legs["A"].amount_micros) == (Disposition.FAILED, 0)
    assert legs["B"].disposition == Disposition.FAILED
    retried = legs["A.4"]
    assert retried.disposition == Disposition.CUT_OFF
    assert retried.amount_micros == FEE_MICROS + 3 * PER_SECOND_MICROS
    assert (legs["B.4"].disposition, legs["B.4"].amount_micros) == (Disposition.CUT_OFF, 0)
    assert balance == 0


@pytest.mark.timeout(120)
def test_an_edge_killed_mid_call_leaves_exactly_one_cdr_written_by_another(
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    """kill -9 of the edge that carries a call: nothing settles it there; its reservation
    expires (no more extensions), and the other edge's recovery writes the leg's one CDR
    (and the callee's), charged up to the last activity plus the grace, never beyond what
    was reserved, then ends the call, which would otherwise run on: BYE to both phones.
    The tenant is a cluster's, billed under its Tenant's UID: the recovered CDR names the
    UID, and the survivor finds the call (stored by the tenant's name) all the same."""
    name = f"pre{secrets.token_hex(3)}"
    domain = f"{name}.pbx.test"
    url = billing_url
    args = ["--billing", url, "--credit-slice", "2"]
    uid = str(uuid.uuid4())
    shared = {"manifest": prepaid_tenant(name, domain, uid=uid), "tenant": name, "domain": domain}
    doomed = edge_factory(redis=True, extra_args=args, **shared)
    survivor = edge_factory(redis=True, extra_args=args, **shared)
    money = FEE_MICROS + 600 * PER_SECOND_MICROS
    top_up(url, uid, money)
    with phones(domain, doomed.port) as (caller, callee):
        answered_call(doomed, caller, callee)
        time.sleep(3)  # a few slices extended
        doomed.process.kill()
        doomed.process.wait(5)
        killed_at_ms = int(time.time() * 1000)
        every_leg, balance = cdrs_and_balance_within(url, uid, 2, timeout_s=60)
        (cdr,), (_callee,) = by_leg(every_leg)
        # The call still ran (nobody hung up): the edge that recovered it ends it.
        for phone in (caller, callee):
            phone.sock.settimeout(15)
            phone.answer(phone.receive_request("BYE"), 200, "OK", survivor.port)
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
    cdrs, again = cdrs_and_balance_within(url, uid, 3, timeout_s=0)
    assert (len(cdrs), again) == (2, balance)


POSTPAID = BILLING.replace("plan: prepaid", "plan: postpaid")


def test_a_postpaid_call_outlives_its_slices_uncut_and_is_priced_in_full(
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    """No balance at all: a postpaid call goes, runs past several 2 s slices (each
    extension only records that it still runs), and its CDR carries the whole price,
    which no money on the account paid: the tenant is invoiced from its CDRs."""
    with prepaid_edge(edge_factory, billing_url, POSTPAID) as (edge, url):
        with phones(edge.domain, edge.port) as (caller, callee):
            invite = caller.invite(edge.port, "2002")
            callee.answer(callee.receive_request("INVITE"), 200, "OK", edge.port)
            answer = caller.final()
            assert answer.status == 200, (answer.status, answer.reason)
            to = answer.headers.get("To") or ""
            target = target_of(answer)
            caller.send(caller.request("ACK", target, to, invite.call_id, 2), edge.port)
            callee.sock.settimeout(7)
            with pytest.raises(TimeoutError):  # no cut-off: nothing comes for 7 s
                callee.receive_request("BYE")
            caller.send(caller.request("BYE", target, to, invite.call_id, 3), edge.port)
            callee.sock.settimeout(5)
            callee.answer(callee.receive_request("BYE"), 200, "OK", edge.port)
            assert caller.final().status == 200
        every_leg, balance = cdrs_and_balance(url, edge.tenant, 2)
    (cdr,), (_callee,) = by_leg(every_leg)
    assert cdr.disposition == Disposition.ANSWERED
    assert cdr.answered_ms is not None
    assert 7 <= cdr.billable_s <= 9
    assert cdr.end_ms - cdr.answered_ms <= cdr.billable_s * 1000
    assert cdr.amount_micros == FEE_MICROS + cdr.billable_s * PER_SECOND_MICROS
    assert balance == 0


def test_an_attempt_at_a_number_that_does_not_exist_gets_its_cdr(
    edge_factory: EdgeFactory, billing_url: str
) -> None:
    with prepaid_edge(edge_factory, billing_url) as (edge, url):
        caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
        try:
            caller.invite(edge.port, "2999")
            assert caller.final().status == 404
        finally:
            caller.close()
        (cdr,), balance = cdrs_and_balance(url, edge.tenant, 1)
    assert (cdr.leg, cdr.callee, cdr.disposition) == ("A", "2999", Disposition.FAILED)
    assert (cdr.answered_ms, cdr.amount_micros, cdr.rate, balance) == (None, 0, None, 0)
