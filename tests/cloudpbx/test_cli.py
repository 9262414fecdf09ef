"""The ``cloudpbx`` launcher starts the parts by module name: ``cloudpbx cdrs export``
becomes ``python -m portal.cdrs export`` (its output and exit status)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from portal.stores import open_billing_store

from ..portal.conftest import KNOWN_CSV, fill_known


def cloudpbx(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cloudpbx.cli", *args], capture_output=True, timeout=30, check=False
    )


async def known_cdrs(url: str) -> None:
    store = await open_billing_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()
    await fill_known(url)


def test_cdrs_export_reaches_the_portal(tmp_path: Path) -> None:
    (tmp_path / "billing.sqlite3").touch()
    url = f"sqlite:///{tmp_path}/billing.sqlite3"
    asyncio.run(known_cdrs(url))
    done = cloudpbx(
        "cdrs", "export", "--store", url, "--tenant", "acme",
        "--since", "2026-11-01", "--until", "2026-12-01",
    )  # fmt: skip
    assert (done.returncode, done.stderr, done.stdout.decode()) == (0, b"", KNOWN_CSV)


def test_its_bad_input_is_the_portals(tmp_path: Path) -> None:
    done = cloudpbx(
        "cdrs", "export", "--store", f"sqlite:///{tmp_path}/none", "--tenant", "acme",
        "--since", "2026-11-01", "--until", "2026-12-01",
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode().startswith("python -m portal.cdrs: no SQLite database at")


def test_an_unknown_command_prints_the_usage() -> None:
    for args in [(), ("export",), ("cdr",)]:
        done = cloudpbx(*args)
        assert done.returncode == 2
        assert b"cloudpbx cdrs export --store URL" in done.stderr
