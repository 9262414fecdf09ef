"""The export's window (portal.cdrs.window): UTC days and RFC 3339 times as epoch ms."""

from __future__ import annotations

import pytest

from portal.cdrs.window import Window, WindowError, epoch_ms

NOV_1_MS = 1_793_491_200_000  # 2026-11-01T00:00:00.000Z


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-11-01", NOV_1_MS),
        ("2026-11-01T00:00:00Z", NOV_1_MS),
        ("2026-11-01t00:00:00z", NOV_1_MS),
        ("2026-11-01 00:00:00Z", NOV_1_MS),
        ("2026-11-01T01:00:00+01:00", NOV_1_MS),
        ("2026-10-31T19:00:00-05:00", NOV_1_MS),
        ("2026-11-01T09:30:00.25Z", NOV_1_MS + 34_200_250),
        ("2026-11-01T00:00:00.000001Z", NOV_1_MS + 1),  # below a millisecond: rounds up
        ("1970-01-01", 0),
    ],
)
def test_days_and_rfc3339_times(text: str, ms: int) -> None:
    assert epoch_ms(text) == ms


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("2026-11-01T09:30:00", "neither a day"),  # no offset: refused, not guessed
        ("20261101", "neither a day"),
        ("2026-11", "neither a day"),
        ("yesterday", "neither a day"),
        ("", "neither a day"),
        ("2026-02-30", "not a real date"),
        ("2026-11-01T25:00:00Z", "not a real date"),
        ("2026-11-01T00:00:00+24:00", "not a real date"),
    ],
)
def test_what_is_not_a_day_or_time(text: str, error: str) -> None:
    with pytest.raises(WindowError, match=error):
        epoch_ms(text, "--since")


def test_a_window_is_since_inclusive_until_exclusive_and_not_empty() -> None:
    assert Window.parse("2026-11-01", "2026-11-02") == Window(NOV_1_MS, NOV_1_MS + 86_400_000)
    with pytest.raises(WindowError, match="--until 2026-11-01 is not after --since 2026-11-01"):
        Window.parse("2026-11-01", "2026-11-01")
    with pytest.raises(WindowError, match="not after"):
        Window.parse("2026-11-02", "2026-11-01T23:59:59Z")
