"""The retransmission cache: a retransmitted cookie gets the very bytes it got before."""

from __future__ import annotations

import pytest

from contracts.ng.replycache import CacheKey, ReplyCache

EDGE = "10.0.0.5:5060"
KEY = CacheKey(EDGE, b"5323_1")
PONG = b"5323_1 d6:result4:ponge"


def test_a_retransmission_gets_the_same_reply() -> None:
    cache = ReplyCache(ttl_s=30.0)
    assert cache.get(KEY, now=100.0) is None
    cache.put(KEY, PONG, now=100.0)
    assert cache.get(KEY, now=101.5) == PONG
    assert len(cache) == 1
    assert cache.stored_bytes == len(PONG)


def test_a_reply_is_kept_ttl_seconds() -> None:
    cache = ReplyCache(ttl_s=30.0)
    cache.put(KEY, PONG, now=100.0)
    assert cache.get(KEY, now=129.999) == PONG
    assert cache.get(KEY, now=130.0) is None
    assert len(cache) == 0
    assert cache.stored_bytes == 0


def test_the_same_cookie_from_another_peer_is_another_request() -> None:
    cache = ReplyCache()
    cache.put(KEY, PONG, now=0.0)
    assert cache.get(CacheKey("10.0.0.6:5060", b"5323_1"), now=0.0) is None


def test_putting_a_key_again_replaces_and_renews_it() -> None:
    cache = ReplyCache(ttl_s=10.0)
    cache.put(KEY, b"old", now=0.0)
    cache.put(KEY, b"newer", now=5.0)
    assert cache.get(KEY, now=14.0) == b"newer"
    assert cache.stored_bytes == len(b"newer")


def test_the_oldest_entries_go_first_past_max_entries() -> None:
    cache = ReplyCache(max_entries=2)
    keys = [CacheKey(EDGE, b"%d" % n) for n in range(3)]
    for n, key in enumerate(keys):
        cache.put(key, b"r%d" % n, now=float(n))
    assert [cache.get(key, now=3.0) for key in keys] == [None, b"r1", b"r2"]


def test_the_oldest_entries_go_first_past_max_bytes() -> None:
    cache = ReplyCache(max_bytes=10)
    first, second = CacheKey(EDGE, b"1"), CacheKey(EDGE, b"2")
    cache.put(first, b"x" * 6, now=0.0)
    cache.put(second, b"y" * 6, now=0.0)
    assert cache.get(first, now=0.0) is None
    assert cache.get(second, now=0.0) == b"y" * 6
    assert cache.stored_bytes == 6


def test_a_reply_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = ReplyCache(max_bytes=10)
    cache.put(KEY, b"z" * 11, now=0.0)
    assert cache.get(KEY, now=0.0) is None
    assert cache.stored_bytes == 0


def test_expire_drops_only_what_is_due() -> None:
    cache = ReplyCache(ttl_s=10.0)
    early, late = CacheKey(EDGE, b"1"), CacheKey(EDGE, b"2")
    cache.put(early, b"a", now=0.0)
    cache.put(late, b"b", now=5.0)
    cache.expire(now=12.0)
    assert len(cache) == 1
    assert cache.get(late, now=12.0) == b"b"


@pytest.mark.parametrize(
    "limits", [{"ttl_s": 0.0}, {"max_entries": 0}, {"max_bytes": 0}, {"ttl_s": -1.0}]
)
def test_limits_must_be_positive(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ReplyCache(**limits)  # type: ignore[arg-type]
