"""A trunk's published registration status (contracts.trunk_status): what the holder
writes is what the operator reads, and anything else is refused, not half-read."""

from __future__ import annotations

import pytest

from contracts.trunk_status import TrunkStatus

FAILED = TrunkStatus("Failed", 403, "Wrong password", 3, "edge-7f9c/412", 1_780_000_000.5)


def test_round_trip() -> None:
    assert TrunkStatus.from_json(FAILED.to_json()) == FAILED
    assert TrunkStatus.from_json(FAILED.to_json().encode()) == FAILED


def test_the_wire_form_is_pinned() -> None:
    assert FAILED.to_json() == (
        '{"failures":3,"holder":"edge-7f9c/412","reason":"Wrong password",'
        '"state":"Failed","status":403,"updated_at":1780000000.5}'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ("[]", "exactly"),
        ('{"state":"Registered"}', "exactly"),
        (FAILED.to_json()[:-1] + ',"extra":1}', "exactly"),
        (FAILED.to_json().replace('"Failed"', '"Up"'), "trunk state"),
        (FAILED.to_json().replace("403", "-1"), "status must be"),
        (FAILED.to_json().replace("403", '"403"'), "status must be"),
        (FAILED.to_json().replace(":3,", ":true,"), "failures must be"),
        (FAILED.to_json().replace('"edge-7f9c/412"', "7"), "holder must be"),
        (FAILED.to_json().replace("1780000000.5", '"now"'), "updated_at must be"),
    ],
)
def test_anything_else_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrunkStatus.from_json(text)
