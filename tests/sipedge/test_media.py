"""Which relay anchors a call: the hash ring and the relays' health (sipedge.media).

A call's relay depends on its Call-ID only, the same in every edge process; adding a
relay moves about 1/n of the calls (all of them to the new relay); a down relay's calls
go to the next relay up the ring, and come back when it is up again.
"""

from __future__ import annotations

import pytest

from sipedge.media import RelayAddress, RelayPool, RelayRing

RELAYS = [
    RelayAddress("10.0.0.1", 2223),
    RelayAddress("10.0.0.2", 2223),
    RelayAddress("10.0.0.3", 2223),
]
CALL_IDS = [f"call-{number}@phone.test" for number in range(3000)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2223", RelayAddress("127.0.0.1", 2223)),
        ("relay-0.mediarelay:22222", RelayAddress("relay-0.mediarelay", 22222)),
        ("[::1]:2223", RelayAddress("::1", 2223)),
    ],
)
def test_relay_address_parses_and_prints_back(text: str, expected: RelayAddress) -> None:
    assert RelayAddress.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["127.0.0.1", ":2223", "host:0", "host:70000", "host:port"])
def test_bad_relay_address_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="bad relay address"):
        RelayAddress.parse(text)


def test_mapping_is_stable_and_independent_of_the_order_relays_are_listed() -> None:
    one, other = RelayRing(RELAYS), RelayRing(list(reversed(RELAYS)))
    assert [one.owner(c) for c in CALL_IDS] == [other.owner(c) for c in CALL_IDS]
    assert [one.owner(c) for c in CALL_IDS] == [RelayRing(RELAYS).owner(c) for c in CALL_IDS]


def test_calls_spread_evenly() -> None:
    ring = RelayRing(RELAYS)
    counts = dict.fromkeys(RELAYS, 0)
    for call_id in CALL_IDS:
        counts[ring.owner(call_id)] += 1
    for count in counts.values():
        assert 0.75 * 1000 < count < 1.25 * 1000


def test_adding_a_relay_moves_few_calls_and_only_to_it() -> None:
    before = RelayRing(RELAYS)
    new = RelayAddress("10.0.0.4", 2223)
    after = RelayRing([*RELAYS, new])
    moved = [c for c in CALL_IDS if before.owner(c) != after.owner(c)]
    assert all(after.owner(c) == new for c in moved)
    assert 0.15 * len(CALL_IDS) < len(moved) < 0.35 * len(CALL_IDS)  # about a quarter


def test_preference_names_every_relay_once_owner_first() -> None:
    ring = RelayRing(RELAYS)
    for call_id in CALL_IDS[:50]:
        order = list(ring.preference(call_id))
        assert sorted(order) == sorted(RELAYS)
        assert order[0] == ring.owner(call_id)


def test_a_down_relay_is_skipped_for_the_next_one_up_the_ring() -> None:
    pool = RelayPool(RELAYS)
    down = RELAYS[0]
    assert pool.mark(down, up=False) is True
    assert pool.mark(down, up=False) is False  # no change, nothing to log
    for call_id in CALL_IDS[:300]:
        order = list(pool.ring.preference(call_id))
        expected = [relay for relay in order if relay != down]
        assert pool.candidates(call_id) == expected
    assert pool.mark(down, up=True) is True
    assert pool.candidates(CALL_IDS[0])[0] == pool.ring.owner(CALL_IDS[0])


def test_calls_of_relays_that_stay_up_keep_their_relay() -> None:
    pool = RelayPool(RELAYS)
    owners = {c: pool.candidates(c)[0] for c in CALL_IDS}
    pool.mark(RELAYS[1], up=False)
    for call_id, owner in owners.items():
        if owner != RELAYS[1]:
            assert pool.candidates(call_id)[0] == owner


def test_no_relay_up_leaves_no_candidate() -> None:
    pool = RelayPool(RELAYS)
    for relay in RELAYS:
        pool.mark(relay, up=False)
    assert pool.candidates("x") == []
    assert list(pool.up()) == []


def test_a_ring_needs_a_relay() -> None:
    with pytest.raises(ValueError, match="at least one relay"):
        RelayRing([])
