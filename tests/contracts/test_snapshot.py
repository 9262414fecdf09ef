"""The tenant snapshot contract: golden JSON, round trips, and a strict decoder that names paths."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.billing.rating import Rate
from contracts.snapshot import (
    BillingPlan,
    Extension,
    Limits,
    MediaPolicy,
    SnapshotError,
    TenantSnapshot,
    is_valid_host,
    normalize_host,
)

GOLDEN_FILE = Path(__file__).parent / "data" / "tenant_snapshot.json"


def ha1(algorithm: str, number: str, realm: str, password: str) -> str:
    return hashlib.new(algorithm, f"{number}:{realm}:{password}".encode()).hexdigest()


# Every field differs from its default, so a swapped or dropped field shows.
GOLDEN = TenantSnapshot(
    name="acme",
    uid="6f1c2b4e-0d9a-4c55-9e3b-2a7d8c1f0e42",
    version=7,
    domain="sip.acme.example",
    aliases=("10.0.0.5", "[2001:db8::5]"),
    extensions=(
        Extension(
            number="100",
            display_name="Zoë at the front desk",
            ha1_md5=ha1("md5", "100", "sip.acme.example", "pw-100"),
            ha1_sha256=ha1("sha256", "100", "sip.acme.example", "pw-100"),
            max_contacts=2,
        ),
        Extension(
            number="4155550123",
            display_name="",
            ha1_md5=ha1("md5", "4155550123", "sip.acme.example", "pw-4155550123"),
            ha1_sha256=ha1("sha256", "4155550123", "sip.acme.example", "pw-4155550123"),
            max_contacts=3,
        ),
    ),
    limits=Limits(
        min_expires_s=120,
        max_expires_s=7200,
        default_expires_s=1800,
        max_contacts_per_aor=3,
        max_concurrent_calls=1,
        ring_timeout_s=25,
    ),
    media=MediaPolicy(anchor=False),
    billing=BillingPlan(
        plan="trial",
        currency="EUR",
        call_limit_s=90,
        verified_numbers=("4915112345678",),
        daily_minutes=30,
        expires_at_s=1_798_761_600,
        rates=(
            Rate("49", 20_000, connect_fee_micros=50_000, initial_s=30, increment_s=6, name="DE"),
        ),
        rate_internal_calls=True,
    ),
    enabled=False,
    trunk_manifests=(
        {
            "apiVersion": "cloudpbx.io/v1",
            "kind": "Trunk",
            "metadata": {"name": "carrier-a"},
            "spec": {
                "tenant": "acme",
                "host": "sip.carrier.example",
                "username": "4930555",
                "password": {"secretRef": {"name": "carrier-a", "key": "password"}},
                "dids": ["+4930555100"],
            },
        },
    ),
    dial_plan_manifests=(
        {
            "apiVersion": "cloudpbx.io/v1",
            "kind": "DialPlan",
            "metadata": {"name": "out"},
            "spec": {
                "tenant": "acme",
                "rules": [
                    {
                        "name": "national",
                        "match": {"prefix": "0"},
                        "route": {"trunks": ["carrier-a"]},
                    }
                ],
            },
        },
    ),
    trunk_passwords={"carrier-a": "s3cret-a"},
)

#: A trunk and a dial plan as the snapshot carries them (every other field at its default).
TRUNK = GOLDEN.trunk_manifests[0]
PLAN = GOLDEN.dial_plan_manifests[0]


def golden_document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
    return loaded


# --- the pinned format -------------------------------------------------------------------


def test_encoding_matches_the_golden_file_byte_for_byte() -> None:
    assert GOLDEN.to_json() + "\n" == GOLDEN_FILE.read_text(encoding="utf-8")


def test_golden_file_decodes_to_the_snapshot() -> None:
    assert TenantSnapshot.from_json(GOLDEN_FILE.read_text(encoding="utf-8")) == GOLDEN
    assert TenantSnapshot.from_json(GOLDEN_FILE.read_bytes()) == GOLDEN


def test_golden_file_field_names() -> None:
    document = golden_document()
    assert sorted(document) == [
        "aliases", "billing", "dial_plan_manifests", "domain", "enabled", "extensions",
        "limits", "media", "name", "trunk_manifests", "trunk_passwords", "uid", "version",
    ]  # fmt: skip
    assert sorted(document["extensions"][0]) == [
        "display_name", "ha1_md5", "ha1_sha256", "max_contacts", "number",
    ]  # fmt: skip
    assert sorted(document["limits"]) == [
        "default_expires_s", "max_concurrent_calls", "max_contacts_per_aor",
        "max_expires_s", "min_expires_s", "ring_timeout_s",
    ]  # fmt: skip
    assert document["media"] == {"anchor": False}
    assert sorted(document["billing"]) == [
        "call_limit_s", "currency", "daily_minutes", "expires_at_s", "plan",
        "rate_internal_calls", "rates", "verified_numbers",
    ]  # fmt: skip
    assert sorted(document["billing"]["rates"][0]) == [
        "connect_fee_micros", "increment_s", "initial_s", "name", "per_minute_micros", "prefix",
    ]  # fmt: skip


def test_canonical_text_has_sorted_keys_no_spaces_and_raw_utf8() -> None:
    text = GOLDEN.to_json()
    assert text.startswith('{"aliases":["10.0.0.5","[2001:db8::5]"],"billing":{"call_limit_s":90,')
    assert ": " not in text
    assert ", " not in text
    assert "Zoë" in text


def test_defaults() -> None:
    snapshot = TenantSnapshot(name="t", domain="t.example")
    assert (snapshot.uid, snapshot.version, snapshot.aliases, snapshot.extensions) == (
        "", 1, (), (),
    )  # fmt: skip
    assert snapshot.limits == Limits(
        min_expires_s=60,
        max_expires_s=3600,
        default_expires_s=3600,
        max_contacts_per_aor=5,
        max_concurrent_calls=0,
        ring_timeout_s=30,
    )
    assert snapshot.media == MediaPolicy(anchor=True)
    assert snapshot.enabled is True


def test_the_billing_key_is_the_tenants_uid_when_it_has_one_else_its_name() -> None:
    """A Tenant deleted and created again under its name is a new account."""
    assert TenantSnapshot(name="t", domain="t.example").billing_id == "t"
    keyed = TenantSnapshot(name="t", uid="0b6e-uid", domain="t.example")
    assert keyed.billing_id == "0b6e-uid"


# --- lookups -----------------------------------------------------------------------------


def test_trunks_and_dial_plans_compile_with_the_snapshot() -> None:
    (trunk,) = GOLDEN.trunks
    assert (trunk.name, trunk.host, trunk.username) == (
        "carrier-a",
        "sip.carrier.example",
        "4930555",
    )
    assert GOLDEN.trunk("carrier-a") is trunk
    assert GOLDEN.trunk("carrier-b") is None
    assert GOLDEN.trunk_password("carrier-a") == "s3cret-a"
    assert GOLDEN.trunk_of_did("+4930555100") is trunk
    assert GOLDEN.trunk_of_did("4930555100") is trunk
    assert GOLDEN.trunk_of_did("4930555101") is None
    routed = GOLDEN.dial_plans.route("0301234")
    assert routed is not None
    assert routed.rule == "national"


def test_trunk_passwords_stay_out_of_repr() -> None:
    assert "s3cret-a" not in repr(GOLDEN)


def test_a_bad_trunk_names_the_manifest_field() -> None:
    bad = copy.deepcopy(dict(TRUNK))
    bad["spec"]["port"] = 70_000
    with pytest.raises(SnapshotError) as caught:
        TenantSnapshot(
            name="acme",
            domain="sip.acme.example",
            trunk_manifests=(bad,),
            trunk_passwords={"carrier-a": "x"},
        )
    assert caught.value.path == "trunk_manifests"
    assert "Trunk carrier-a spec.port" in str(caught.value)


def test_a_plan_routing_to_a_missing_trunk_is_refused() -> None:
    with pytest.raises(SnapshotError) as caught:
        TenantSnapshot(name="acme", domain="sip.acme.example", dial_plan_manifests=(PLAN,))
    assert caught.value.path == "dial_plan_manifests"
    assert "carrier-a" in str(caught.value)


@pytest.mark.parametrize(
    ("passwords", "message"),
    [
        ({}, "has none for trunk 'carrier-a'"),
        ({"carrier-a": "x", "carrier-b": "y"}, "names no trunk: 'carrier-b'"),
        ({"carrier-a": ""}, "must be a non-empty string"),
    ],
)
def test_every_trunk_has_exactly_its_password(passwords: dict[str, str], message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        TenantSnapshot(
            name="acme",
            domain="sip.acme.example",
            trunk_manifests=(TRUNK,),
            trunk_passwords=passwords,
        )


def test_extension_lookup() -> None:
    assert GOLDEN.extension("100") is GOLDEN.extensions[0]
    assert GOLDEN.extension("4155550123") is GOLDEN.extensions[1]
    assert GOLDEN.extension("101") is None


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("sip.acme.example", True),
        ("SIP.Acme.Example", True),
        ("sip.acme.example.", True),
        ("10.0.0.5", True),
        ("[2001:DB8:0:0::5]", True),
        ("2001:db8::5", True),
        ("acme.example", False),
        ("10.0.0.6", False),
        ("", False),
    ],
)
def test_serves_domain_and_aliases_in_any_case(host: str, served: bool) -> None:
    assert GOLDEN.serves(host) is served


def test_hosts_are_domain_then_aliases() -> None:
    assert GOLDEN.hosts == ("sip.acme.example", "10.0.0.5", "[2001:db8::5]")


@pytest.mark.parametrize(
    ("host", "normal", "valid"),
    [
        ("demo.cloudpbx.test", "demo.cloudpbx.test", True),
        (" Demo.CloudPBX.Test. ", "demo.cloudpbx.test", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("localhost", "localhost", True),
        ("[::1]", "[::1]", True),
        ("[0:0::1]", "[::1]", True),
        ("::1", "[::1]", True),
        ("999.1.1.1", "999.1.1.1", False),
        ("bad_host", "bad_host", False),
        ("-x.example", "-x.example", False),
        ("[zz::1]", "[zz::1]", False),
        ("a..b", "a..b", False),
        ("", "", False),
        ("x" * 64 + ".example", "x" * 64 + ".example", False),
    ],
)
def test_host_normal_form(host: str, normal: str, valid: bool) -> None:
    assert normalize_host(host) == normal
    assert is_valid_host(normal) is valid


def test_ha1_stays_out_of_repr() -> None:
    text = repr(GOLDEN)
    for extension in GOLDEN.extensions:
        assert extension.ha1_md5 not in text
        assert extension.ha1_sha256 not in text
    assert "Extension(number='100', display_name='Zoë at the front desk', max_contacts=2)" in text


def test_snapshots_are_hashable_values() -> None:
    again = TenantSnapshot.from_json(GOLDEN.to_json())
    assert hash(again) == hash(GOLDEN)
    assert len({again, GOLDEN}) == 1


# --- the strict decoder --------------------------------------------------------------------

_STEP = re.compile(r"\.?([A-Za-z_0-9]+)|\[(\d+)\]")


def locate(document: Any, path: str) -> tuple[Any, Any]:
    """The container holding ``path`` (``extensions[1].number``) and the key in it."""
    steps: list[Any] = [int(index) if index else name for name, index in _STEP.findall(path)]
    for step in steps[:-1]:
        document = document[step]
    return document, steps[-1]


def decode_fault(document: Any) -> SnapshotError:
    with pytest.raises(SnapshotError) as caught:
        TenantSnapshot.from_json(json.dumps(document))
    return caught.value


@pytest.mark.parametrize(
    "path",
    ["uid", "aliases", "extensions", "enabled", "extensions[1].max_contacts",
     "extensions[0].ha1_sha256", "limits.ring_timeout_s", "media.anchor"],
)  # fmt: skip
def test_missing_field_is_named(path: str) -> None:
    document = golden_document()
    container, key = locate(document, path)
    del container[key]
    error = decode_fault(document)
    assert (error.path, error.message) == (path, "missing field")


@pytest.mark.parametrize(
    "path", ["tenant", "extensions[1].password", "limits.max_calls", "media.relay"]
)
def test_unknown_field_is_named(path: str) -> None:
    document = golden_document()
    container, key = locate(document, path)
    container[key] = 1
    error = decode_fault(document)
    assert (error.path, error.message) == (path, "unknown field")


BAD_VALUES: list[tuple[str, object, str]] = [
    ("name", 5, "must be a string, not an integer"),
    ("name", "Acme", "must be a lower-case DNS name, not 'Acme'"),
    ("name", "", "must be a lower-case DNS name, not ''"),
    ("uid", "has space", "must be at most 128 printable ASCII characters"),
    ("uid", None, "must be a string, not null"),
    ("version", 0, "must be between 1 and 9223372036854775807, not 0"),
    ("version", True, "must be an integer, not a boolean"),
    ("version", 7.0, "must be an integer, not a number"),
    ("version", "7", "must be an integer, not a string"),
    (
        "domain",
        "Sip.Acme.Example",
        "must be a lower-case host name or IP address, not 'Sip.Acme.Example'",
    ),
    ("domain", "bad_host", "must be a lower-case host name or IP address, not 'bad_host'"),
    ("aliases", "10.0.0.5", "must be a list, not a string"),
    ("aliases[0]", None, "must be a string, not null"),
    ("aliases[1]", "sip.acme.example", "repeats host 'sip.acme.example'"),
    (
        "aliases[1]",
        "[2001:db8:0::5]",
        "must be a lower-case host name or IP address, not '[2001:db8:0::5]'",
    ),
    ("extensions", {}, "must be a list, not an object"),
    ("extensions[0]", [], "must be an object, not a list"),
    ("extensions[1].number", 4155550123, "must be a string, not an integer"),
    ("extensions[1].number", "1", "must be 2 to 15 digits, not '1'"),
    ("extensions[1].number", "1234567890123456", "must be 2 to 15 digits, not '1234567890123456'"),
    ("extensions[1].number", "１２３", "must be 2 to 15 digits, not '１２３'"),
    ("extensions[1].number", "+4155550123", "must be 2 to 15 digits, not '+4155550123'"),
    ("extensions[1].number", "100", "repeats extension number '100'"),
    (
        "extensions[0].display_name",
        "Eve\r\nVia: x",
        "must not contain control characters or line breaks",
    ),
    ("extensions[0].display_name", "x" * 129, "must be at most 128 characters"),
    ("extensions[0].display_name", None, "must be a string, not null"),
    ("extensions[0].ha1_md5", "A" * 32, "must be 32 lower-case hex digits"),
    ("extensions[0].ha1_sha256", "a" * 32, "must be 64 lower-case hex digits"),
    ("extensions[0].max_contacts", 0, "must be between 1 and 1000, not 0"),
    ("extensions[0].max_contacts", 4, "must not exceed the tenant's contacts per extension (3)"),
    ("limits", None, "must be an object, not null"),
    ("limits.min_expires_s", 9000, "must not be greater than the maximum expires (7200 s)"),
    ("limits.min_expires_s", 0, "must be between 1 and 4294967295, not 0"),
    ("limits.max_expires_s", 2**32, "must be between 1 and 4294967295, not 4294967296"),
    ("limits.default_expires_s", 60, "must be between 120 and 7200, not 60"),
    ("limits.max_contacts_per_aor", 0, "must be between 1 and 1000, not 0"),
    ("limits.max_concurrent_calls", -1, "must be between 0 and 1000000, not -1"),
    ("limits.max_concurrent_calls", 2, "must be 1 on a trial plan (one call at a time)"),
    ("billing", None, "must be an object, not null"),
    ("billing.plan", "free", "must be one of prepaid, postpaid, trial, not 'free'"),
    ("billing.currency", "eur", "must be an ISO 4217 code (three capitals)"),
    ("billing.call_limit_s", 0, "must be between 1 and 86400, not 0"),
    ("billing.daily_minutes", 1441, "must be between 1 and 1440, not 1441"),
    ("billing.expires_at_s", -1, "must be between 0 and 9223372036854775807, not -1"),
    ("billing.verified_numbers", "4915112345678", "must be a list, not a string"),
    ("billing.rates", {}, "must be a list, not an object"),
    ("billing.rates[0].prefix", "4x", "rate prefix '4x' is not digits"),
    ("billing.rates[0].initial_s", 0, "rate '49': initial_s must be an integer in 1..3600, not 0"),
    ("billing.rates[0].per_minute_micros", 1.5, "must be an integer, not a number"),
    ("billing.rate_internal_calls", "yes", "must be a boolean, not a string"),
    ("billing.verified_numbers[0]", "+4915112345678", "must be E.164 digits without +"),
    ("billing.verified_numbers[0]", "0301234567", "must be E.164 digits without +"),
    ("limits.ring_timeout_s", 0, "must be between 1 and 600, not 0"),
    ("media.anchor", "yes", "must be a boolean, not a string"),
    ("enabled", 1, "must be a boolean, not an integer"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD_VALUES)
def test_bad_value_is_named(path: str, value: object, message: str) -> None:
    document = golden_document()
    container, key = locate(document, path)
    container[key] = value
    error = decode_fault(document)
    assert (error.path, error.message) == (path, message)
    assert str(error) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[]", "must be an object, not a list"),
        ("null", "must be an object, not null"),
        ('{"name": "a", "name": "b"}', "duplicate field 'name'"),
        ('{"version": NaN}', "NaN is not a JSON number"),
        ('{"version": -Infinity}', "-Infinity is not a JSON number"),
    ],
)
def test_document_faults_have_an_empty_path(text: str, message: str) -> None:
    with pytest.raises(SnapshotError) as caught:
        TenantSnapshot.from_json(text)
    assert (caught.value.path, caught.value.message) == ("", message)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(SnapshotError, match="not valid JSON") as caught:
        TenantSnapshot.from_json(b'{"name": "\xff"}')
    assert caught.value.path == ""


def test_construction_validates_like_decoding() -> None:
    with pytest.raises(SnapshotError) as caught:
        Extension(number="1x", ha1_md5="0" * 32, ha1_sha256="0" * 64)
    assert (caught.value.path, caught.value.message) == (
        "number",
        "must be 2 to 15 digits, not '1x'",
    )
    with pytest.raises(SnapshotError, match=r"^aliases: must be a tuple, not a list$"):
        TenantSnapshot(name="t", domain="t.example", aliases=["x.example"])  # type: ignore[arg-type]


# --- round trips ---------------------------------------------------------------------------

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(labels, min_size=1, max_size=3).map(".".join)
hosts = st.one_of(
    dns_names.filter(lambda host: not host.rsplit(".", 1)[-1].isdigit()),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda address: f"[{address.compressed}]"),
)
hex_digits = "0123456789abcdef"
display_names = st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=30)


@st.composite
def limits(draw: st.DrawFn) -> Limits:
    low = draw(st.integers(1, 2**32 - 1))
    high = draw(st.integers(low, 2**32 - 1))
    return Limits(
        min_expires_s=low,
        max_expires_s=high,
        default_expires_s=draw(st.integers(low, high)),
        max_contacts_per_aor=draw(st.integers(1, 1000)),
        max_concurrent_calls=draw(st.integers(0, 1_000_000)),
        ring_timeout_s=draw(st.integers(1, 600)),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> TenantSnapshot:
    tenant_limits = draw(limits())
    numbers = draw(st.lists(st.from_regex(r"[0-9]{2,15}", fullmatch=True), unique=True, max_size=5))
    extensions = tuple(
        Extension(
            number=number,
            display_name=draw(display_names),
            ha1_md5=draw(st.text(hex_digits, min_size=32, max_size=32)),
            ha1_sha256=draw(st.text(hex_digits, min_size=64, max_size=64)),
            max_contacts=draw(st.integers(1, tenant_limits.max_contacts_per_aor)),
        )
        for number in numbers
    )
    all_hosts = draw(st.lists(hosts, min_size=1, max_size=4, unique=True))
    return TenantSnapshot(
        name=draw(dns_names),
        uid=draw(st.from_regex(r"[\x21-\x7e]{0,40}", fullmatch=True)),
        version=draw(st.integers(1, 2**63 - 1)),
        domain=all_hosts[0],
        aliases=tuple(all_hosts[1:]),
        extensions=extensions,
        limits=tenant_limits,
        media=MediaPolicy(anchor=draw(st.booleans())),
        enabled=draw(st.booleans()),
    )


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_round_trip(snapshot: TenantSnapshot) -> None:
    text = snapshot.to_json()
    decoded = TenantSnapshot.from_json(text)
    assert decoded == snapshot
    assert decoded.to_json() == text
    assert TenantSnapshot.from_json(text.encode()) == snapshot
    for host in snapshot.hosts:
        assert decoded.serves(host.upper())
    for extension in snapshot.extensions:
        assert decoded.extension(extension.number) == extension


@settings(max_examples=200, deadline=None)
@given(snapshots(), st.data())
def test_reordered_keys_and_whitespace_decode_to_the_same_canonical_text(
    snapshot: TenantSnapshot, data: st.DataObject
) -> None:
    document = copy.deepcopy(snapshot.to_dict())
    shuffled = dict(data.draw(st.permutations(list(document.items()))))
    text = json.dumps(shuffled, indent=data.draw(st.sampled_from([None, 1, 4])))
    assert TenantSnapshot.from_json(text).to_json() == snapshot.to_json()


def test_only_a_trial_plan_has_trial_limits() -> None:
    assert not BillingPlan().trial
    assert not BillingPlan().cuts_off  # postpaid: billed afterwards, never cut off
    assert BillingPlan(plan="prepaid").cuts_off
    with pytest.raises(
        SnapshotError, match="call_limit_s: is a trial setting, not one of plan 'prepaid'"
    ):
        BillingPlan(plan="prepaid", call_limit_s=60)
    with pytest.raises(
        SnapshotError, match="verified_numbers: is a trial setting, not one of plan 'postpaid'"
    ):
        BillingPlan(plan="postpaid", verified_numbers=("4915112345678",))
