"""The Redis key layout: exact names, one tenant never reaches another's keys."""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.keys import (
    PREFIX,
    SNAPSHOT_CHANNEL,
    active_calls_key,
    bindings_index_key,
    bindings_key,
    dialog_key,
    domain_index_key,
    escape,
    nat_bindings_key,
    parse_snapshot_notice,
    snapshot_key,
    snapshot_notice,
    tenant_key_pattern,
    trunk_channels_key,
    trunk_lease_key,
    trunk_status_key,
    unescape,
)

KEYS = [
    (domain_index_key(), "cloudpbx:v1:domains"),
    (SNAPSHOT_CHANNEL, "cloudpbx:v1:snapshots"),
    (snapshot_key("demo"), "cloudpbx:v1:{demo}:snapshot"),
    (
        bindings_key("demo", "1001@demo.cloudpbx.test"),
        "cloudpbx:v1:{demo}:bindings:1001@demo.cloudpbx.test",
    ),
    (
        dialog_key("demo", "a84b4c76e66710@pc33.atlanta.com"),
        "cloudpbx:v1:{demo}:dialog:a84b4c76e66710@pc33.atlanta.com",
    ),
    (dialog_key("demo", "f81d4fae:7dec 11d0"), "cloudpbx:v1:{demo}:dialog:f81d4fae%3A7dec%2011d0"),
    (bindings_index_key("demo"), "cloudpbx:v1:{demo}:bindings-index"),
    (nat_bindings_key("demo"), "cloudpbx:v1:{demo}:bindings-nat"),
    (active_calls_key("demo"), "cloudpbx:v1:{demo}:active-calls"),
    (trunk_lease_key("demo", "carrier-a"), "cloudpbx:v1:{demo}:trunk-lease:carrier-a"),
    (trunk_channels_key("demo", "carrier-a"), "cloudpbx:v1:{demo}:trunk-channels:carrier-a"),
    (trunk_status_key("demo", "carrier-a"), "cloudpbx:v1:{demo}:trunk-status:carrier-a"),
    (tenant_key_pattern("demo"), "cloudpbx:v1:{demo}:*"),
]


@pytest.mark.parametrize(("key", "expected"), KEYS)
def test_exact_names(key: str, expected: str) -> None:
    assert key == expected
    assert key.startswith(PREFIX)


@pytest.mark.parametrize(
    ("part", "escaped"),
    [
        ("1001", "1001"),
        ("alice+home@demo.cloudpbx.test", "alice+home@demo.cloudpbx.test"),
        ("a:b", "a%3Ab"),
        ("100%", "100%25"),
        ("{x}", "%7Bx%7D"),
        ("*?[]\\", "%2A%3F%5B%5D%5C"),
        (" \r\n", "%20%0D%0A"),
        ("Zoë", "Zo%C3%AB"),
        ("\udc80", "%ED%B2%80"),
    ],
)
def test_escape(part: str, escaped: str) -> None:
    assert escape(part) == escaped
    assert unescape(escaped) == part


TenantKey = Callable[[str, str], str]
PER_PART: list[TenantKey] = [bindings_key, dialog_key, trunk_lease_key, trunk_status_key]


@pytest.mark.parametrize("key", PER_PART)
def test_parts_cannot_shift_between_tenant_and_id(key: TenantKey) -> None:
    assert key("a", "b:c") != key("a:b", "c")
    assert key("a", "}:x") != key("a}", "x")
    assert key("a%3Ab", "c") != key("a:b", "c")


def test_kinds_never_collide() -> None:
    assert bindings_key("demo", "x") != dialog_key("demo", "x")
    assert snapshot_key("demo") != bindings_key("demo", "snapshot")


def test_empty_parts_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        snapshot_key("")
    with pytest.raises(ValueError, match="must not be empty"):
        bindings_key("demo", "")


parts = st.text(min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PER_PART), parts, parts, parts, parts)
def test_keys_are_one_to_one(
    key: TenantKey, tenant1: str, id1: str, tenant2: str, id2: str
) -> None:
    assert (key(tenant1, id1) == key(tenant2, id2)) == ((tenant1, id1) == (tenant2, id2))


@settings(max_examples=300, deadline=None)
@given(parts, parts)
def test_the_hash_tag_is_the_tenant_and_parts_hold_no_separator(tenant: str, part: str) -> None:
    key = bindings_key(tenant, part)
    assert key[key.index("{") + 1 : key.index("}")] == escape(tenant)
    assert unescape(escape(part)) == part
    assert not set(escape(part)) & set(":{} *?[]\\\r\n")


@settings(max_examples=300, deadline=None)
@given(parts, parts, parts)
def test_a_tenant_pattern_matches_that_tenant_only(tenant: str, other: str, part: str) -> None:
    pattern = tenant_key_pattern(tenant)
    assert fnmatchcase(snapshot_key(tenant), pattern)
    assert fnmatchcase(dialog_key(tenant, part), pattern)
    assert fnmatchcase(bindings_key(other, part), pattern) == (other == tenant)


@pytest.mark.parametrize(
    ("tenant", "version", "message"), [("demo", 7, "demo 7"), ("a b", 1, "a%20b 1")]
)
def test_snapshot_notice(tenant: str, version: int, message: str) -> None:
    assert snapshot_notice(tenant, version) == message
    assert parse_snapshot_notice(message) == (tenant, version)
    assert parse_snapshot_notice(message.encode()) == (tenant, version)


@pytest.mark.parametrize(
    "message", ["", "demo", "demo ", " 7", "demo x", "demo 0", "demo -1", "demo ７"]
)
def test_malformed_notices_are_refused(message: str) -> None:
    with pytest.raises(ValueError, match="not a snapshot notice"):
        parse_snapshot_notice(message)


def test_notice_versions_are_positive() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        snapshot_notice("demo", 0)
