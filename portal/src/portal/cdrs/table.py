"""CDRs as CSV (RFC 4180): the columns of the export and how each value is written.

Pure: CDRs and the tenant's currency go in, CSV text goes to a text stream the caller
owns (opened with ``newline=""``), one row at a time, so an export of millions of CDRs
never becomes one string.

Every column says its unit: ``*_utc`` are RFC 3339 instants in UTC with milliseconds
(``2026-11-01T09:30:00.250Z``), empty when the event never happened (an unanswered leg
has no ``answered_utc``); ``*_ms`` and ``*_s`` are whole milliseconds and seconds. Money
(``amount``, ``rate_per_minute``, ``rate_connect_fee``) is decimal text in units of the
``currency`` column (the tenant's one ISO 4217 currency), with six decimals: exactly the
store's integer micros, converted without floats (``700000`` micros is ``0.700000``).
``rate_*`` are empty when the leg was never rated.

A text value a spreadsheet would run as a formula (one starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return, OWASP's "CSV injection") gets a leading ``'``: a caller
id arrives from outside in a SIP header. A plain signed number (``+4930111``) is data,
not a formula, and is written as it is.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from contracts.billing.rating import MICROS_PER_UNIT
from contracts.billing.store import Cdr

HEADER = (
    "call_id",
    "leg",
    "account",
    "caller",
    "callee",
    "disposition",
    "setup_utc",
    "answered_utc",
    "ended_utc",
    "duration_ms",
    "billable_s",
    "currency",
    "amount",
    "rate_prefix",
    "rate_name",
    "rate_per_minute",
    "rate_connect_fee",
    "rate_initial_s",
    "rate_increment_s",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DECIMALS = len(str(MICROS_PER_UNIT)) - 1
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9]+")


def utc_text(epoch_ms: int | None) -> str:
    """``epoch_ms`` as RFC 3339 in UTC with milliseconds; "" for None."""
    if epoch_ms is None:
        return ""
    instant = _EPOCH + timedelta(milliseconds=epoch_ms)  # integer arithmetic, exact
    return f"{instant:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def money_text(micros: int) -> str:
    """Integer micros as decimal text in currency units: ``-1500000`` is ``-1.500000``."""
    units, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    sign = "-" if micros < 0 else ""
    return f"{sign}{units}.{fraction:0{_DECIMALS}d}"


def cell_text(value: str) -> str:
    """Free text as a cell no spreadsheet runs as a formula (module docstring)."""
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def row(cdr: Cdr, currency: str) -> tuple[str, ...]:
    """One CDR's cells, in :data:`HEADER` order."""
    rate = cdr.rate
    rated: tuple[str, ...] = ("",) * 6
    if rate is not None:
        rated = (
            rate.prefix,
            cell_text(rate.name),
            money_text(rate.per_minute_micros),
            money_text(rate.connect_fee_micros),
            str(rate.initial_s),
            str(rate.increment_s),
        )
    duration_ms = 0 if cdr.answered_ms is None else cdr.end_ms - cdr.answered_ms
    return (
        cell_text(cdr.call_id),
        cell_text(cdr.leg),
        cell_text(cdr.account),
        cell_text(cdr.caller),
        cell_text(cdr.callee),
        str(cdr.disposition),
        utc_text(cdr.setup_ms),
        utc_text(cdr.answered_ms),
        utc_text(cdr.end_ms),
        str(duration_ms),
        str(cdr.billable_s),
        currency,
        money_text(cdr.amount_micros),
        *rated,
    )


def write_header(out: TextIO) -> None:
    csv.writer(out, lineterminator="\r\n").writerow(HEADER)


def write_rows(out: TextIO, cdrs: Iterable[Cdr], currency: str) -> None:
    """Append one row per CDR (RFC 4180 quoting: only cells that need it)."""
    csv.writer(out, lineterminator="\r\n").writerows(row(cdr, currency) for cdr in cdrs)
