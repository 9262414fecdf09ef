"""The relay's RTP/RTCP port pairs: RFC 3550 §11 parity, random order, O(1) reuse, clear errors."""

from __future__ import annotations

import random
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediarelay.portpool import PoolExhausted, PortPool


def pool(low: int = 30000, high: int = 30019, seed: int = 7) -> PortPool:
    return PortPool(low, high, random.Random(seed).randrange)


def test_a_pair_is_an_even_rtp_port_and_the_odd_port_above_it() -> None:
    ports = pool()
    for _ in range(ports.capacity):
        rtp = ports.allocate()
        assert rtp % 2 == 0
        assert 30000 <= rtp < rtp + 1 <= 30019
        assert ports.is_allocated(rtp)
        assert ports.is_allocated(rtp + 1)


def test_the_whole_range_is_used_and_counted() -> None:
    ports = pool()
    assert (ports.capacity, ports.in_use, ports.available) == (10, 0, 10)
    handed_out = {ports.allocate() for _ in range(10)}
    assert handed_out == set(range(30000, 30020, 2))
    assert (ports.in_use, ports.available) == (10, 0)


def test_allocation_is_not_sequential() -> None:
    ports = pool(20000, 29999, seed=1)
    first_fifty = [ports.allocate() for _ in range(50)]
    assert first_fifty != sorted(first_fifty)
    assert first_fifty[0] != 20000


def test_production_draws_from_secrets() -> None:
    ports = PortPool(20000, 29999, secrets.randbelow)
    handed_out = {ports.allocate() for _ in range(100)}
    assert len(handed_out) == 100
    assert handed_out != set(range(20000, 20200, 2))


def test_the_injected_choice_decides_the_order() -> None:
    always_first = PortPool(40000, 40009, lambda n: 0)
    # Swap-remove: position 0 is refilled from the end of the free list.
    assert [always_first.allocate() for _ in range(5)] == [40000, 40008, 40006, 40004, 40002]


def test_exhaustion_says_what_is_full_and_what_to_do() -> None:
    ports = pool(30000, 30003)
    ports.allocate()
    ports.allocate()
    with pytest.raises(PoolExhausted, match=r"all 2 RTP/RTCP port pairs of 30000–30003 are in use"):
        ports.allocate()
    assert ports.in_use == 2


def test_a_released_pair_comes_back() -> None:
    ports = pool(30000, 30003)
    first, second = ports.allocate(), ports.allocate()
    ports.release(first)
    assert not ports.is_allocated(first)
    assert not ports.is_allocated(first + 1)
    assert ports.is_allocated(second)
    assert ports.allocate() == first


@pytest.mark.parametrize(
    ("low", "high", "first", "last", "capacity"),
    [
        (30000, 30001, 30000, 30001, 1),
        (30001, 30004, 30002, 30003, 1),  # odd low: 30001 alone is half a pair
        (30000, 30004, 30000, 30003, 2),  # even high: 30004 alone is half a pair
        (30001, 30006, 30002, 30005, 2),
        (1024, 65535, 1024, 65535, 32256),
    ],
)
def test_odd_and_even_bounds(low: int, high: int, first: int, last: int, capacity: int) -> None:
    ports = pool(low, high)
    assert ports.capacity == capacity
    handed_out = {ports.allocate() for _ in range(capacity)}
    assert min(handed_out) == first
    assert max(handed_out) + 1 == last


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (1023, 2000, r"port range 1023–2000 must lie within 1024–65535 with low ≤ high"),
        (60000, 65536, r"port range 60000–65536 must lie within 1024–65535"),
        (30010, 30000, r"port range 30010–30000 must lie within .* low ≤ high"),
        (30000, 30000, r"port range 30000–30000 holds no RTP/RTCP pair .*RFC 3550 §11"),
        (30001, 30002, r"port range 30001–30002 holds no RTP/RTCP pair"),
        (65535, 65535, r"holds no RTP/RTCP pair"),
    ],
)
def test_a_bad_range_is_refused(low: int, high: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PortPool(low, high, random.Random(0).randrange)


@pytest.mark.parametrize(
    ("port", "message"),
    [
        (30001, r"port 30001 is an RTCP port: release its RTP port 30000"),
        (29998, r"port 29998 is outside this pool's pairs 30000–30019"),
        (30020, r"outside this pool's pairs"),
        (30002, r"port 30002 is not in use \(released twice\?\)"),
    ],
)
def test_a_bad_release_is_refused(port: int, message: str) -> None:
    ports = pool()
    while ports.allocate() != 30000:
        pass
    if ports.is_allocated(30002):
        ports.release(30002)
    with pytest.raises(ValueError, match=message):
        ports.release(port)


def test_releasing_twice_is_refused() -> None:
    ports = pool()
    rtp = ports.allocate()
    ports.release(rtp)
    with pytest.raises(ValueError, match="not in use"):
        ports.release(rtp)
    assert ports.in_use == 0


def test_a_choice_outside_the_range_is_our_bug_and_said_so() -> None:
    ports = PortPool(30000, 30009, lambda n: n)
    with pytest.raises(ValueError, match=r"choose\(5\) returned 5, outside 0–4"):
        ports.allocate()
    assert ports.in_use == 0


def test_is_allocated_outside_the_range_is_false() -> None:
    ports = pool()
    assert not ports.is_allocated(29999)
    assert not ports.is_allocated(30020)


# --- properties --------------------------------------------------------------------------

# An operation is None (allocate) or an index into the pairs held (release that one).
operations = st.lists(st.none() | st.integers(0, 1000), max_size=200)


@settings(max_examples=200, deadline=None)
@given(
    low=st.integers(1024, 1100),
    width=st.integers(2, 40),  # 2 is the narrowest width that always holds a pair
    seed=st.integers(0, 2**32),
    script=operations,
)
def test_never_twice_and_every_port_comes_back(
    low: int, width: int, seed: int, script: list[int | None]
) -> None:
    high = min(low + width, 65535)
    ports = PortPool(low, high, random.Random(seed).randrange)
    held: list[int] = []
    for step in script:
        if step is None:
            if ports.available:
                rtp = ports.allocate()
                assert rtp not in held
                assert low <= rtp < rtp + 1 <= high
                assert rtp % 2 == 0
                held.append(rtp)
            else:
                with pytest.raises(PoolExhausted):
                    ports.allocate()
        elif held:
            ports.release(held.pop(step % len(held)))
        assert ports.in_use == len(held)
    for rtp in held:
        ports.release(rtp)
    assert ports.in_use == 0
    every = sorted(ports.allocate() for _ in range(ports.capacity))
    assert every == list(range(low + low % 2, low + low % 2 + 2 * ports.capacity, 2))
