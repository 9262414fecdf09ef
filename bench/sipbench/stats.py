"""SIPp's statistics file (``-trace_stat -stf FILE``) read into numbers, and the RESULT line.

SIPp writes one header line and then one row every ``-fd`` seconds plus a last row when it
exits; ``(P)`` columns are per period, ``(C)`` cumulative. :func:`read_stat_file` returns
the cumulative figures of the last row as a :class:`SippStats`: ``SuccessfulCall``,
``FailedCall`` (and every non-zero ``Failed*`` reason), ``Retransmissions``,
``OutOfCallMsgs``, ``DeadCallMsgs``, SIPp's own ``CallRate`` and the elapsed time, taken
from the row's epoch timestamps (``ElapsedTime`` has whole-second resolution only).

:func:`result_line` formats the one line a benchmark ends with, e.g.
``RESULT register cloudpbx=812/s kamailio=5630/s failed=0 retrans=0 ratio=0.14``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

NOT_AVAILABLE = "n/a"


class StatFileError(Exception):
    """A statistics file that is missing, empty or not SIPp's."""


@dataclass(frozen=True, slots=True)
class SippStats:
    """The cumulative counters of one SIPp run (the last row of its statistics file)."""

    successful: int
    failed: int
    retransmissions: int
    out_of_call: int
    dead_call: int
    created: int
    incoming: int
    outgoing: int
    current: int
    #: From the first row's StartTime to the last row's CurrentTime, in seconds.
    elapsed_s: float
    #: SIPp's CallRate(C): calls created per second over the whole run.
    call_rate: float
    #: Mean of "Response Time 1" (the ``rtd`` mark in the scenario), in milliseconds.
    response_time_ms: float
    #: The non-zero ``Failed...(C)`` reasons, e.g. ``{"FailedMaxUDPRetrans": 3}``.
    failures: Mapping[str, int] = field(default_factory=dict)

    @property
    def successful_rate(self) -> float:
        """Successful calls per second over the elapsed time (0 when nothing elapsed)."""
        return self.successful / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One human line: the counts a load claim must state."""
        reasons = ", ".join(f"{name}={count}" for name, count in self.failures.items())
        return (
            f"successful={self.successful} failed={self.failed}"
            + (f" ({reasons})" if reasons else "")
            + f" retrans={self.retransmissions} out_of_call={self.out_of_call}"
            f" dead_call={self.dead_call} elapsed={self.elapsed_s:.2f}s"
            f" rate={self.successful_rate:.1f}/s rt1={self.response_time_ms:.1f}ms"
        )


def _epoch(value: str) -> float:
    """``2026-11-26<TAB>06:42:31.711936<TAB>1795675351.711936`` → the epoch seconds."""
    return float(value.rsplit("\t", 1)[-1])


def _duration_ms(value: str) -> float:
    """``HH:MM:SS:UUUUUU`` (or ``HH:MM:SS``) → milliseconds."""
    parts = value.split(":")
    hours, minutes, seconds = (int(part) for part in parts[:3])
    micros = int(parts[3]) if len(parts) > 3 else 0
    return ((hours * 60 + minutes) * 60 + seconds) * 1000.0 + micros / 1000.0


def parse_stat_rows(text: str, delimiter: str = ";") -> list[dict[str, str]]:
    """Every data row of a statistics file, as column name → raw value."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    lines = [row for row in reader if row]
    if not lines:
        raise StatFileError("the statistics file is empty")
    header = [name.strip() for name in lines[0]]
    if "SuccessfulCall(C)" not in header:
        raise StatFileError(f"not a SIPp statistics file (header {header[:4]}...)")
    return [dict(zip(header, row, strict=False)) for row in lines[1:]]


def stats_from_row(row: Mapping[str, str]) -> SippStats:
    """The cumulative figures of one row."""

    def count(name: str) -> int:
        return int(float(row.get(f"{name}(C)", "0") or 0))

    failures = {
        name[: -len("(C)")]: int(value)
        for name, value in row.items()
        if name.startswith("Failed")
        and name.endswith("(C)")
        and name != "FailedCall(C)"
        and value.strip().isdigit()
        and int(value) > 0
    }
    return SippStats(
        successful=count("SuccessfulCall"),
        failed=count("FailedCall"),
        retransmissions=count("Retransmissions"),
        out_of_call=count("OutOfCallMsgs"),
        dead_call=count("DeadCallMsgs"),
        created=int(row.get("TotalCallCreated", "0") or 0),
        incoming=count("IncomingCall"),
        outgoing=count("OutgoingCall"),
        current=int(row.get("CurrentCall", "0") or 0),
        elapsed_s=max(0.0, _epoch(row["CurrentTime"]) - _epoch(row["StartTime"])),
        call_rate=float(row.get("CallRate(C)", "0") or 0),
        response_time_ms=_duration_ms(row.get("ResponseTime1(C)", "00:00:00:000000")),
        failures=failures,
    )


def read_stat_file(path: Path) -> SippStats:
    """The final cumulative statistics of the run that wrote ``path``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError as error:
        raise StatFileError(f"{path}: SIPp wrote no statistics file") from error
    rows = parse_stat_rows(text)
    if not rows:
        raise StatFileError(f"{path}: no statistics row yet")
    return stats_from_row(rows[-1])


def format_rate(value: float | None) -> str:
    """``812/s``; ``n/a`` for a side that was not measured."""
    return NOT_AVAILABLE if value is None else f"{value:.0f}/s"


def result_line(
    name: str,
    cloudpbx: float | None,
    kamailio: float | None,
    *,
    failed: int | None,
    retrans: int | None,
) -> str:
    """``RESULT <name> cloudpbx=<n>/s kamailio=<n>/s failed=<n> retrans=<n> ratio=<x>``.

    ``failed`` and ``retrans`` are cloudpbx's; every unmeasured value prints as ``n/a``.
    """
    ratio = (
        f"{cloudpbx / kamailio:.2f}"
        if cloudpbx is not None and kamailio is not None and kamailio > 0
        else NOT_AVAILABLE
    )
    shown_failed = NOT_AVAILABLE if failed is None else str(failed)
    shown_retrans = NOT_AVAILABLE if retrans is None else str(retrans)
    return (
        f"RESULT {name} cloudpbx={format_rate(cloudpbx)} kamailio={format_rate(kamailio)}"
        f" failed={shown_failed} retrans={shown_retrans} ratio={ratio}"
    )


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """A plain fixed-width table for the bench's progress output."""
    cells = [[str(header) for header in headers], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    )
