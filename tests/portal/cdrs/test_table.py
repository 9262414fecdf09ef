"""The CDR CSV (portal.cdrs.table): each value's text as a table, then whole rows."""

from __future__ import annotations

import io

import pytest

from contracts.billing.rating import Rate
from contracts.billing.store import Cdr, Disposition
from portal.cdrs.table import HEADER, cell_text, money_text, row, utc_text, write_header, write_rows


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (1_793_525_400_250, "2026-11-01T09:30:00.250Z"),
        (1_796_083_199_999, "2026-11-30T23:59:59.999Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),  # no float would keep this
        (None, ""),
    ],
)
def test_times_are_rfc3339_utc_to_the_millisecond(epoch_ms: int | None, text: str) -> None:
    assert utc_text(epoch_ms) == text


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (700_000, "0.700000"),
        (1_083_334, "1.083334"),
        (-1_500_000, "-1.500000"),
        (2**63 - 1, "9223372036854.775807"),  # exact where a float would round
    ],
)
def test_money_is_decimal_currency_units_from_micros(micros: int, text: str) -> None:
    assert money_text(micros) == text


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("+4930111", "+4930111"),
        ("-12", "-12"),
        ("1001", "1001"),
        ("Alice Smith", "Alice Smith"),
        ("=1+2", "'=1+2"),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("", ""),
    ],
)
def test_text_a_spreadsheet_would_run_gets_a_quote(value: str, cell: str) -> None:
    assert cell_text(value) == cell


def cdr(call_id: str, answered_ms: int | None, amount_micros: int, rate: Rate | None) -> Cdr:
    return Cdr(
        "acme", "alice", call_id, "a", "+4930111", "1002",
        Disposition.ANSWERED if answered_ms is not None else Disposition.NO_ANSWER,
        setup_ms=1_000, answered_ms=answered_ms, end_ms=61_500, billable_s=60 if answered_ms
        else 0, amount_micros=amount_micros, rate=rate, settled_ms=61_500,
    )  # fmt: skip


def test_a_row_has_a_cell_per_column() -> None:
    rate = Rate("49", 600_000, connect_fee_micros=100_000, name="Germany, all")
    assert dict(zip(HEADER, row(cdr("c1", 1_500, 700_000, rate), "EUR"), strict=True)) == {
        "call_id": "c1", "leg": "a", "account": "alice", "caller": "+4930111",
        "callee": "1002", "disposition": "answered",
        "setup_utc": "1970-01-01T00:00:01.000Z", "answered_utc": "1970-01-01T00:00:01.500Z",
        "ended_utc": "1970-01-01T00:01:01.500Z", "duration_ms": "60000", "billable_s": "60",
        "currency": "EUR", "amount": "0.700000", "rate_prefix": "49",
        "rate_name": "Germany, all", "rate_per_minute": "0.600000",
        "rate_connect_fee": "0.100000", "rate_initial_s": "60", "rate_increment_s": "60",
    }  # fmt: skip


def test_the_csv_quotes_only_what_needs_it_and_ends_lines_with_crlf() -> None:
    out = io.StringIO(newline="")
    write_header(out)
    write_rows(out, [], "EUR")
    write_rows(
        out,
        [
            cdr("c1", None, 0, None),
            cdr("c2", 1_500, 700_000, Rate("49", 600_000, name='say "hi", then\nhang up')),
        ],
        "EUR",
    )
    assert out.getvalue() == (
        ",".join(HEADER) + "\r\n"
        "c1,a,alice,+4930111,1002,no answer,1970-01-01T00:00:01.000Z,,"
        "1970-01-01T00:01:01.500Z,0,0,EUR,0.000000,,,,,,\r\n"
        "c2,a,alice,+4930111,1002,answered,1970-01-01T00:00:01.000Z,"
        "1970-01-01T00:00:01.500Z,1970-01-01T00:01:01.500Z,60000,60,EUR,0.700000,"
        '49,"say ""hi"", then\nhang up",0.600000,0.000000,60,60\r\n'
    )
