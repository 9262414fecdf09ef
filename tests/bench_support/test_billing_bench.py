"""bench/billing.py on a few accounts: it creates and drops its own database (and any a
killed run left behind), every call is either granted or refused, its audit finds nothing
wrong, and its pgbench yardstick runs. No timing is asserted."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import asyncpg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import billing

pytestmark = pytest.mark.asyncio


async def bench_databases() -> list[str]:
    connection = await asyncpg.connect(billing.POSTGRES_DSN)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cloudpbx_bench_%'"
        )
    finally:
        await connection.close()
    return sorted(row["datname"] for row in rows)


async def test_a_small_run_audits_clean_and_drops_its_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin = await asyncpg.connect(billing.POSTGRES_DSN)
    try:  # what a run killed by SIGKILL leaves behind
        await admin.execute("CREATE DATABASE cloudpbx_bench_killed_run")
    finally:
        await admin.close()
    args = argparse.Namespace(
        dsn=billing.POSTGRES_DSN,
        accounts=4,
        calls=10,
        inflight=8,
        pool=3,
        batches=2,
        history=5,
        yardstick_s=1,
    )
    await billing.main_async(args)
    out = capsys.readouterr().out
    assert "WRONG" not in out
    summary = re.search(r"pairs=(\d+) refusals=(\d+) .* problems=(\d+)", out)
    assert summary is not None
    pairs, refusals, problems = (int(n) for n in summary.groups())
    assert pairs + refusals == 4 * 10
    assert problems == 0
    assert re.search(r"^YARDSTICK pgbench simple-update tps=\d+ ", out, re.M)
    assert re.search(r"^RESULT billing rate=\d+ p99_ms=\d+ double_grants=0$", out, re.M)
    assert out.rstrip().splitlines()[-1].startswith("RESULT ")
    assert await bench_databases() == []
