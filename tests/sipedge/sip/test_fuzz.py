"""Run the parser fuzz target briefly; ``FUZZ_RUNS`` (environment) makes it run longer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SEEDS = HERE.parents[1] / "data" / "sip-torture"


@pytest.mark.fuzz
@pytest.mark.timeout(300)
def test_fuzz_parser_briefly(tmp_path: Path) -> None:
    runs = int(os.environ.get("FUZZ_RUNS", "10000"))
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_parser.py"),
            f"-runs={runs}",
            "-seed=4475",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path),
            str(SEEDS),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report = result.stderr[-3000:]
    assert result.returncode == 0, report
    assert f"Done {runs} runs" in result.stderr, report
    assert not list(tmp_path.glob("crash-*")), report
