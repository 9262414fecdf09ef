"""SIPp against a running edge: the scenarios proven against Kamailio in bench_support.

REGISTER with digest, unregister, a call answered by a SIPp UAS, the caller's CANCEL,
a busy callee, and the callee hanging up. The tenant is the benchmark's (users
``300000...``, password ``"pw" + number``), written as Tenant + Secret manifests.
"""

from __future__ import annotations

import secrets
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pytest

from sipbench import (
    BENCH_DOMAIN,
    BENCH_TENANT,
    SippOptions,
    SippProcess,
    SippResult,
    User,
    call_options,
    free_udp_port,
    make_users,
    register_options,
    run_sipp,
    scenario,
    write_tenant_manifest,
    write_users_csv,
)

USERS = make_users(4, first=300_000)
CALLEE, CALLER, OTHER, NOBODY = USERS


@pytest.fixture
def bench_edge(edge_factory: Any) -> Any:
    def manifest(folder: Path) -> None:
        write_tenant_manifest(folder / "bench.yaml", USERS[:3])

    return edge_factory(tenant=BENCH_TENANT, domain=BENCH_DOMAIN, manifest=manifest)


def address(edge: Any) -> str:
    return f"127.0.0.1:{edge.port}"


def csv_of(tmp_path: Path, *users: User) -> Path:
    return write_users_csv(tmp_path / f"{'-'.join(u.number for u in users)}.csv", users)


def assert_calls(result: SippResult, successful: int = 1) -> None:
    assert result.ok, result.describe()
    assert result.stats is not None, result.describe()
    assert result.stats.successful == successful, result.describe()
    assert result.stats.failed == 0, result.describe()


def register(
    edge: Any, user: User, port: int, tmp_path: Path, name: str = "register"
) -> SippResult:
    options = register_options(
        address(edge),
        csv_of(tmp_path, user),
        scenario=scenario(name),
        local_port=port,
        calls=1,
        trace_messages=True,
        name=f"{name}-{user.number}-{port}",
    )
    return run_sipp(options, tmp_path, timeout_s=20)


@contextmanager
def phone(
    edge: Any, user: User, name: str, tmp_path: Path, hold_ms: int = 200
) -> Iterator[SippProcess]:
    """A registered SIPp phone running the UAS scenario ``name`` for one call."""
    port = free_udp_port()
    assert_calls(register(edge, user, port, tmp_path))
    options = SippOptions(
        scenario=scenario(name), local_port=port, calls=1, duration_ms=hold_ms, trace_messages=True
    )
    with SippProcess(options, tmp_path) as uas:
        uas.wait_listening()
        yield uas


def call(edge: Any, caller_scenario: str, tmp_path: Path, **more: Any) -> SippResult:
    options = call_options(
        caller_scenario,
        address(edge),
        csv_of(tmp_path, CALLER),
        CALLEE.number,
        calls=1,
        trace_messages=True,
        **more,
    )
    return run_sipp(options, tmp_path, timeout_s=30)


def test_register_refresh_and_unregister(bench_edge: Any, tmp_path: Path) -> None:
    port = free_udp_port()
    assert_calls(register(bench_edge, CALLER, port, tmp_path))
    assert_calls(register(bench_edge, CALLER, port, tmp_path))  # a refresh: still one binding
    assert_calls(register(bench_edge, CALLER, port, tmp_path, "unregister"))


def test_wrong_password_and_unknown_user_are_refused(bench_edge: Any, tmp_path: Path) -> None:
    for user in (User(CALLER.number, "wrong", BENCH_DOMAIN), NOBODY):
        options = register_options(
            address(bench_edge),
            csv_of(tmp_path, user),
            calls=1,
            recv_timeout_ms=3000,
            trace_messages=True,
        )
        result = run_sipp(options, tmp_path, timeout_s=20)
        assert result.returncode == 1, result.describe()
        messages = (tmp_path / "register.messages.log").read_text()
        assert "SIP/2.0 403 Forbidden" in messages


def test_call_answered_and_caller_hangs_up(bench_edge: Any, tmp_path: Path) -> None:
    with phone(bench_edge, CALLEE, "uas", tmp_path) as uas:
        assert_calls(call(bench_edge, "uac", tmp_path, duration_ms=300))
        assert_calls(uas.wait(timeout_s=15))
    messages = (tmp_path / "uac.messages.log").read_text()
    assert "SIP/2.0 407 Proxy Authentication Required" in messages


def test_caller_cancels_while_ringing(bench_edge: Any, tmp_path: Path) -> None:
    with phone(bench_edge, CALLEE, "uas_cancel", tmp_path) as uas:
        assert_calls(call(bench_edge, "uac_cancel", tmp_path, duration_ms=300))
        assert_calls(uas.wait(timeout_s=15))


def test_busy_callee(bench_edge: Any, tmp_path: Path) -> None:
    with phone(bench_edge, CALLEE, "uas_busy", tmp_path) as uas:
        assert_calls(call(bench_edge, "uac_busy", tmp_path))
        assert_calls(uas.wait(timeout_s=15))


def test_callee_hangs_up(bench_edge: Any, tmp_path: Path) -> None:
    with phone(bench_edge, CALLEE, "uas_bye", tmp_path, hold_ms=300) as uas:
        assert_calls(call(bench_edge, "uac_remote_bye", tmp_path))
        assert_calls(uas.wait(timeout_s=15))


def invites_received(metrics_port: int) -> float:
    page = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    prefix = 'sip_requests_received_total{method="INVITE"} '
    return sum(float(line[len(prefix) :]) for line in page.splitlines() if line.startswith(prefix))


def test_calls_spread_over_two_workers_all_complete(edge_factory: Any, tmp_path: Path) -> None:
    """Each caller has a socket of its own (SIPp -t un), so the kernel spreads the calls
    over both workers, while the callee answers every B leg from one address: about
    half of its responses reach the worker that did not send the request and must be
    handed over (WorkerGroup). Before that, about half of these calls failed."""
    calls = 24
    tenant = f"bench{secrets.token_hex(3)}"

    def manifest(folder: Path) -> None:
        write_tenant_manifest(folder / "bench.yaml", USERS[:3], tenant=tenant)

    edge = edge_factory(
        tenant=tenant, domain=BENCH_DOMAIN, manifest=manifest, redis=True, workers=2
    )
    port = free_udp_port()
    assert_calls(register(edge, CALLEE, port, tmp_path))
    uas_options = SippOptions(
        scenario=scenario("uas"), local_port=port, calls=calls, duration_ms=100, name="uas-many"
    )
    with SippProcess(uas_options, tmp_path) as uas:
        uas.wait_listening()
        caller = call_options(
            "uac",
            address(edge),
            csv_of(tmp_path, CALLER),
            CALLEE.number,
            calls=calls,
            rate=12,
            duration_ms=100,
            transport="un",
            name="uac-many",
        )
        assert_calls(run_sipp(caller, tmp_path, timeout_s=60), calls)
        assert_calls(uas.wait(timeout_s=20), calls)
    per_worker = [invites_received(edge.metrics_port + worker) for worker in (0, 1)]
    assert all(count > 0 for count in per_worker), per_worker  # both workers took calls
