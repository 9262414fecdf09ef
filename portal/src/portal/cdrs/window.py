"""The time window of an export: ``--since`` and ``--until`` as epoch milliseconds.

Each bound is a UTC day (``2026-11-01``: its midnight, UTC) or an RFC 3339 instant with
its offset (``2026-11-01T09:30:00Z``, ``2026-11-01T10:30:00.5+01:00``); a time without an
offset is refused rather than guessed. The window holds the CDRs that *ended* in
``[since, until)``, as :meth:`~contracts.billing.store.BillingStore.cdrs` reads them, so
``--since 2026-11-01 --until 2026-12-01`` is November. A bound finer than a millisecond
is rounded up to the next one (``end_ms >= x.5`` is ``end_ms >= x + 1``). Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class WindowError(ValueError):
    """A bound that is not a day or an RFC 3339 instant, or a window that is empty by
    construction (the user's fault: the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Window:
    since_ms: int
    until_ms: int

    @classmethod
    def parse(cls, since: str, until: str) -> Window:
        window = cls(epoch_ms(since, "--since"), epoch_ms(until, "--until"))
        if window.until_ms <= window.since_ms:
            raise WindowError(f"--until {until} is not after --since {since}")
        return window


def epoch_ms(text: str, name: str = "time") -> int:
    """A UTC day or an RFC 3339 instant as epoch milliseconds (module docstring)."""
    if not (_DAY.fullmatch(text) or _INSTANT.fullmatch(text)):
        raise WindowError(
            f"{name} {text!r} is neither a day (2026-11-01) nor an RFC 3339 time "
            "with its offset (2026-11-01T09:30:00Z)"
        )
    try:
        if len(text) == len("2026-11-01"):
            instant = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            instant = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError as error:  # a day or time that does not exist (2026-02-30, 25:00)
        raise WindowError(f"{name} {text!r} is not a real date and time ({error})") from None
    return -(-(instant - _EPOCH) // _MS)  # ceiling: a sub-millisecond bound rounds up
