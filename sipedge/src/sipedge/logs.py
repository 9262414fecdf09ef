"""Structured logs: one JSON object per line, carrying the Call-ID when there is one.

Handlers pass ``extra={"call_id": ...}`` (and any other fields); the formatter writes
``ts``, ``level``, ``logger``, ``msg`` and those fields. No library needed for this
much: the standard ``logging`` module with a twenty-line formatter.
"""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
