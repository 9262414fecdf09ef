"""``python -m portal.cdrs export`` end to end, as a subprocess: the CSV on standard
output or in a file, and bad input refused with exit status 2, one line on standard
error and nothing written; and, in process, a store that fails part way through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contracts.billing.rating import RateTable
from contracts.billing.store import Balance, Cdr
from portal.cdrs.cli import write_export
from portal.cdrs.export import CdrSource
from portal.cdrs.window import Window
from portal.stores import open_billing_store

from ..conftest import DEC_1_MS, HEADER, KNOWN_CSV, NOV_1_MS, StoreUrl

PROG = "python -m portal.cdrs"


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "portal.cdrs", *args], capture_output=True, timeout=30, check=False
    )


def export(url: str, *args: str, tenant: str = "acme") -> subprocess.CompletedProcess[bytes]:
    return run("export", "--store", url, "--tenant", tenant, *args)


def test_a_month_to_standard_output(known_cdrs: StoreUrl) -> None:
    done = export(known_cdrs.url, "--since", "2026-11-01", "--until", "2026-12-01")
    assert (done.returncode, done.stderr, done.stdout.decode()) == (0, b"", KNOWN_CSV)


def test_rfc3339_bounds_and_a_file(known_cdrs: StoreUrl, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "november.csv"
    done = export(
        known_cdrs.url, "--since", "2026-11-01T10:30:00.250+01:00",  # = 09:30:00.250Z
        "--until", "2026-11-01T09:31:03.750Z", "--out", str(out),  # c1's end: excluded
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, b"")
    assert done.stderr.decode() == f"{PROG}: 1 CDRs of acme written to {out}\n"
    assert out.read_bytes().decode() == HEADER + KNOWN_CSV.split("\r\n")[2] + "\r\n"
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_an_empty_window_is_the_header_alone(known_cdrs: StoreUrl) -> None:
    done = export(known_cdrs.url, "--since", "2027-01-01", "--until", "2027-02-01", "--out", "-")
    assert (done.returncode, done.stderr, done.stdout.decode()) == (0, b"", HEADER)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--since", "2026-11-01", "--until", "2026-11-01"],
         "--until 2026-11-01 is not after --since 2026-11-01"),
        (["--since", "2026-12-01", "--until", "2026-11-01"], "is not after"),
        (["--since", "2026-11-31", "--until", "2026-12-01"],
         "--since '2026-11-31' is not a real date and time"),
        (["--since", "2026-11-01T00:00:00", "--until", "2026-12-01"],
         "--since '2026-11-01T00:00:00' is neither a day (2026-11-01) nor an RFC 3339 time"),
        (["--since", "2026-11-01"], "the following arguments are required: --until"),
        (["--since", "2026-11-01", "--until", "2026-12-01", "--out", "/nonexistent/x.csv"],
         "--out /nonexistent/x.csv: no such directory"),
        (["--since", "2026-11-01", "--until", "2026-12-01", "--tenant", "nobody"],
         "unknown tenant 'nobody'"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_one_line(
    known_cdrs: StoreUrl, tmp_path: Path, args: list[str], error: str
) -> None:
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "out.csv"
    done = export(known_cdrs.url, "--out", str(out), *args)
    assert (done.returncode, done.stdout) == (2, b"")
    (line,) = done.stderr.decode().splitlines()
    assert line.startswith(f"{PROG}: ")
    assert error in line
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("mysql://db/billing", "is neither postgresql://... nor sqlite:///..."),
        ("sqlite://billing.db", "a SQLite store URL is sqlite:///PATH"),
        ("sqlite:///{tmp}/missing.sqlite3", "no SQLite database at"),
        ("sqlite:///{tmp}/not-billing.sqlite3", "cannot read billing data from"),
        ("postgresql://cloudpbx:s3cret@127.0.0.1:1/x", "cannot connect to "
         "postgresql://cloudpbx:***@127.0.0.1:1/x"),
    ],
)  # fmt: skip
def test_a_store_that_cannot_be_read_is_refused(tmp_path: Path, url: str, error: str) -> None:
    (tmp_path / "not-billing.sqlite3").touch()  # a database, but not migrated
    done = export(url.format(tmp=tmp_path), "--since", "2026-11-01", "--until", "2026-12-01")
    assert (done.returncode, done.stdout) == (2, b"")
    (line,) = done.stderr.decode().splitlines()
    assert error in line
    assert "s3cret" not in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["not-billing.sqlite3"]


def test_usage() -> None:
    done = run()
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        f"{PROG}: the following arguments are required: command (see --help)"
    ]
    assert b"--until" in run("export", "--help").stdout


class FailingStore:
    """A store whose connection drops after the first day of CDRs."""

    def __init__(self, store: CdrSource) -> None:
        self.store = store
        self.reads = 0

    async def rates(self, tenant: str) -> RateTable:
        return await self.store.rates(tenant)

    async def balance(self, tenant: str, account: str) -> Balance:
        return await self.store.balance(tenant, account)

    async def cdrs(self, tenant: str, *, since_ms: int, until_ms: int) -> tuple[Cdr, ...]:
        self.reads += 1
        if self.reads > 1:
            raise ConnectionResetError("the server went away")
        return await self.store.cdrs(tenant, since_ms=since_ms, until_ms=until_ms)


@pytest.mark.asyncio
async def test_a_store_failing_part_way_leaves_the_file_alone(
    known_cdrs: StoreUrl, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "november.csv"
    out.parent.mkdir()
    out.write_text("last month's export\n")
    store = await open_billing_store(known_cdrs.url)
    try:
        with pytest.raises(ConnectionResetError):
            await write_export(FailingStore(store), "acme", Window(NOV_1_MS, DEC_1_MS), str(out))
    finally:
        await store.close()
    assert list(out.parent.iterdir()) == [out]
    assert out.read_text() == "last month's export\n"
