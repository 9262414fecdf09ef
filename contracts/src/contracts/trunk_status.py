"""A trunk's registration status as its holder publishes it (issue 6.2): the edge process
holding the trunk's lease writes it under ``contracts.keys.trunk_status_key`` after
every change and every lease renewal; the operator reads it for the Trunk's status. Pure:
no I/O.

A missing key means nobody holds the registration (no edge, or the holder died and its
status lapsed): the reader reports that, not an old "Registered".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

#: The states (sipedge.trunking.State's values).
STATES = ("Registering", "Registered", "Failed", "Disabled")


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    #: One of :data:`STATES`.
    state: str
    #: The provider's last final status and reason (0 and "" before any).
    status: int
    reason: str
    #: Consecutive failures (0 once registered).
    failures: int
    #: The edge process that holds the registration (host/pid).
    holder: str
    #: When the holder wrote it, epoch seconds.
    updated_at: float

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"a trunk state is one of {STATES}, not {self.state!r}")
        for name in ("status", "failures"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        for name in ("reason", "holder"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        if type(self.updated_at) not in (int, float):
            raise ValueError(f"updated_at must be epoch seconds, not {self.updated_at!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrunkStatus:
        """Decode what a holder wrote; ValueError when it is not a trunk status."""
        try:
            raw: Any = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"not JSON: {error}") from None
        fields = set(cls.__dataclass_fields__)
        if not isinstance(raw, dict) or set(raw) != fields:
            raise ValueError(f"a trunk status is an object with exactly {sorted(fields)}")
        return cls(**raw)
