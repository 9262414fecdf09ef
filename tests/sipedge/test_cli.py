"""The edge's command line: what it refuses before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipedge.cli import main


def test_serve_needs_a_folder_or_redis_for_its_tenants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "udp:127.0.0.1:0"]) == 2
    assert "serve needs --manifests DIR, or --redis" in capsys.readouterr().err


def test_several_workers_need_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--listen", "udp:127.0.0.1:0", "--workers", "2"]) == 2
    assert "--workers > 1 needs --redis" in capsys.readouterr().err


def test_only_tenant_is_for_snapshots_not_folders(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["serve", "--listen", "udp:127.0.0.1:0", "--manifests", str(tmp_path)]
    assert main([*argv, "--only-tenant", "acme"]) == 2
    assert "--only-tenant picks among the snapshots" in capsys.readouterr().err
