"""Compiling a Tenant manifest: exact snapshots, defaults, and every fault named by its path."""

from __future__ import annotations

import copy
import datetime
import hashlib
import re
from typing import Any

import pytest

from contracts.billing.rating import Rate
from contracts.manifest import ManifestError, compile_tenant, manifest_path
from contracts.manifest import isolation as manifest_isolation
from contracts.snapshot import BillingPlan, Extension, Limits, MediaPolicy, TenantSnapshot

PASSWORDS = {"front-desk": "Tr0ub4dor&3-front", "ceo": "correct horse battery staple"}
SECRETS = {"acme-sip": PASSWORDS}


def ha1(algorithm: str, number: str, realm: str, password: str) -> str:
    return hashlib.new(algorithm, f"{number}:{realm}:{password}".encode()).hexdigest()


def manifest() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "apiVersion": "cloudpbx.io/v1",
            "kind": "Tenant",
            "metadata": {"name": "acme", "uid": "0b5e-77", "generation": 4, "labels": {"x": "y"}},
            "spec": {
                "domain": "sip.acme.example",
                "aliases": ["10.0.0.5"],
                "enabled": False,
                "media": {"anchor": False},
                "limits": {
                    "minExpiresSeconds": 120,
                    "maxExpiresSeconds": 7200,
                    "defaultExpiresSeconds": 1800,
                    "maxContactsPerExtension": 3,
                    "maxConcurrentCalls": 10,
                    "ringTimeoutSeconds": 25,
                },
                "extensions": [
                    {
                        "number": "100",
                        "displayName": "Front desk",
                        "maxContacts": 2,
                        "passwordSecretRef": {"name": "acme-sip", "key": "front-desk"},
                    },
                    {
                        "number": "4155550123",
                        "passwordSecretRef": {"name": "acme-sip", "key": "ceo"},
                    },
                ],
            },
            "status": {"conditions": []},
        }
    )


def extension(number: str, password: str, realm: str, **fields: Any) -> Extension:
    return Extension(
        number=number,
        ha1_md5=ha1("md5", number, realm, password),
        ha1_sha256=ha1("sha256", number, realm, password),
        **fields,
    )


def test_compiles_every_field() -> None:
    realm = "sip.acme.example"
    assert compile_tenant(manifest(), SECRETS) == TenantSnapshot(
        name="acme",
        uid="0b5e-77",
        version=4,
        domain=realm,
        aliases=("10.0.0.5",),
        extensions=(
            extension(
                "100", PASSWORDS["front-desk"], realm, display_name="Front desk", max_contacts=2
            ),
            extension("4155550123", PASSWORDS["ceo"], realm, max_contacts=3),
        ),
        limits=Limits(
            min_expires_s=120,
            max_expires_s=7200,
            default_expires_s=1800,
            max_contacts_per_aor=3,
            max_concurrent_calls=10,
            ring_timeout_s=25,
        ),
        media=MediaPolicy(anchor=False),
        enabled=False,
    )


def test_known_ha1_values() -> None:
    """HA1 = H("100:sip.acme.example:Tr0ub4dor&3-front"), computed by hand once."""
    first = compile_tenant(manifest(), SECRETS).extensions[0]
    assert first.ha1_md5 == hashlib.md5(b"100:sip.acme.example:Tr0ub4dor&3-front").hexdigest()
    assert first.ha1_sha256 == hashlib.sha256(b"100:sip.acme.example:Tr0ub4dor&3-front").hexdigest()


def test_omitted_fields_take_their_defaults() -> None:
    document = manifest()
    document["metadata"] = {"name": "acme"}
    document["spec"] = {
        "domain": "sip.acme.example",
        "extensions": [{"number": "100", "passwordSecretRef": {"name": "acme-sip", "key": "ceo"}}],
    }
    snapshot = compile_tenant(document, SECRETS)
    assert snapshot == TenantSnapshot(
        name="acme",
        domain="sip.acme.example",
        extensions=(extension("100", PASSWORDS["ceo"], "sip.acme.example", max_contacts=5),),
    )
    assert (snapshot.uid, snapshot.version, snapshot.enabled) == ("", 1, True)
    assert (snapshot.limits, snapshot.media) == (Limits(), MediaPolicy(anchor=True))


@pytest.mark.parametrize("isolation", ["shared", "dedicated"])
def test_isolation_is_the_operators_business_and_leaves_the_snapshot_alone(
    isolation: str,
) -> None:
    document = manifest()
    document["spec"]["isolation"] = isolation
    assert compile_tenant(document, SECRETS) == compile_tenant(manifest(), SECRETS)
    assert manifest_isolation(document) == isolation
    assert manifest_isolation(manifest()) == "shared"


def test_hosts_are_normalized_and_the_realm_is_the_normal_domain() -> None:
    document = manifest()
    document["spec"]["domain"] = "SIP.Acme.Example."
    document["spec"]["aliases"] = ["LocalHost", "[2001:DB8:0::5]"]
    snapshot = compile_tenant(document, SECRETS)
    assert snapshot.hosts == ("sip.acme.example", "localhost", "[2001:db8::5]")
    assert snapshot.extensions[1].ha1_md5 == ha1(
        "md5", "4155550123", "sip.acme.example", PASSWORDS["ceo"]
    )


def test_an_empty_extension_list_is_a_tenant_without_phones() -> None:
    document = manifest()
    document["spec"]["extensions"] = []
    assert compile_tenant(document, SECRETS).extensions == ()


# --- faults ---------------------------------------------------------------------------------

_STEP = re.compile(r"\.?([A-Za-z_0-9]+)|\[(\d+)\]")
DROP = object()


def changed(path: str, value: object) -> dict[str, Any]:
    """The manifest with ``path`` set to ``value`` (or removed, for DROP)."""
    document: Any = manifest()
    root = document
    steps: list[Any] = [int(index) if index else name for name, index in _STEP.findall(path)]
    for step in steps[:-1]:
        document = document[step]
    if value is DROP:
        del document[steps[-1]]
    else:
        document[steps[-1]] = value
    result: dict[str, Any] = root
    return result


LIMITS = "spec.limits"
EXT0 = "spec.extensions[0]"
EXT1 = "spec.extensions[1]"
REF0 = f"{EXT0}.passwordSecretRef"
FAULTS: list[tuple[str, object, str]] = [
    # (path changed and named, new value or DROP, message)
    ("apiVersion", "cloudpbx.io/v2", "must be 'cloudpbx.io/v1', not 'cloudpbx.io/v2'"),
    ("apiVersion", DROP, "must be 'cloudpbx.io/v1'"),
    ("kind", "Trunk", "must be 'Tenant', not 'Trunk'"),
    ("metadata", DROP, "is required"),
    ("metadata", "acme", "must be a mapping, not str"),
    ("metadata.name", DROP, "is required"),
    ("metadata.name", "Acme Corp", "must be a lower-case DNS name, not 'Acme Corp'"),
    ("metadata.uid", 5, "must be a string, not an integer"),
    ("metadata.generation", 0, "must be between 1 and 9223372036854775807, not 0"),
    ("spec", DROP, "is required"),
    ("spec", ["domain"], "must be a mapping, not a list"),
    (
        "spec.domian",
        "x.example",
        "unknown field (expected: aliases, billing, domain, enabled, extensions, isolation, "
        "limits, media)",
    ),
    ("spec.domain", DROP, "is required"),
    ("spec.domain", 42, "must be a string, not 42"),
    ("spec.domain", "not a host!", "must be a host name or IP address, not 'not a host!'"),
    ("spec.aliases", "localhost", "must be a list, not str"),
    ("spec.aliases[0]", 7, "must be a string, not 7"),
    ("spec.aliases[0]", "bad_host", "must be a lower-case host name or IP address, not 'bad_host'"),
    ("spec.aliases[0]", "SIP.acme.example", "repeats host 'sip.acme.example'"),
    ("spec.enabled", "yes", "must be a boolean, not a string"),
    ("spec.isolation", "private", "must be one of shared, dedicated, not 'private'"),
    ("spec.isolation", True, "must be one of shared, dedicated, not True"),
    ("spec.media", "anchored", "must be a mapping, not str"),
    ("spec.media.anchor", "no", "must be a boolean, not a string"),
    ("spec.media.anchr", True, "unknown field (expected: anchor)"),
    (f"{LIMITS}.minExpiresSeconds", 9000, "must not be greater than the maximum expires (7200 s)"),
    (f"{LIMITS}.maxExpiresSeconds", "7200", "must be an integer, not a string"),
    (f"{LIMITS}.defaultExpiresSeconds", 60, "must be between 120 and 7200, not 60"),
    (f"{LIMITS}.maxContactsPerExtension", 0, "must be between 1 and 1000, not 0"),
    (f"{LIMITS}.maxConcurrentCalls", -1, "must be between 0 and 1000000, not -1"),
    (f"{LIMITS}.ringTimeoutSeconds", 0, "must be between 1 and 600, not 0"),
    (
        f"{LIMITS}.maxExpires",
        1,
        "unknown field (expected: defaultExpiresSeconds, maxConcurrentCalls, "
        "maxContactsPerExtension, maxExpiresSeconds, minExpiresSeconds, ringTimeoutSeconds)",
    ),
    ("spec.extensions", DROP, "is required"),
    ("spec.extensions", {"number": "100"}, "must be a list, not a mapping"),
    ("spec.extensions[1]", "4155550123", "must be a mapping, not str"),
    (
        f"{EXT1}.number",
        4155550123,
        "must be a string of digits (quote it: YAML reads 1001 as an integer)",
    ),
    (f"{EXT1}.number", "41-5555", "must be 2 to 15 digits, not '41-5555'"),
    (f"{EXT1}.number", "100", "repeats extension number '100'"),
    (f"{EXT1}.number", DROP, "is required"),
    (f"{EXT0}.displayName", "Front\r\ndesk", "must not contain control characters or line breaks"),
    (f"{EXT0}.maxContacts", 4, "must not exceed the tenant's contacts per extension (3)"),
    (
        f"{EXT0}.password",
        "x",
        "unknown field (expected: displayName, maxContacts, number, passwordSecretRef)",
    ),
    (f"{EXT0}.passwordSecretRef", DROP, "is required"),
    (f"{REF0}.name", "nobody-sip", "Secret 'nobody-sip' not found"),
    (f"{REF0}.name", DROP, "is required"),
    (f"{REF0}.key", "back-desk", "Secret 'acme-sip' has no key 'back-desk'"),
    (f"{REF0}.key", "", "must be a non-empty string"),
    (f"{REF0}.namespace", "pbx", "unknown field (expected: key, name)"),
]


def assert_no_secret_in(text: str) -> None:
    for password in PASSWORDS.values():
        assert password not in text
        assert password[:8] not in text


@pytest.mark.parametrize(("path", "value", "message"), FAULTS)
def test_fault_names_its_path(path: str, value: object, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        compile_tenant(changed(path, value), SECRETS)
    assert (caught.value.path, caught.value.message) == (path, message)
    assert str(caught.value) == f"{path}: {message}"
    assert_no_secret_in(str(caught.value) + repr(caught.value))


@pytest.mark.parametrize("value", ["", 1234, None])
def test_a_secret_value_that_is_not_a_password(value: object) -> None:
    secrets: dict[str, Any] = {"acme-sip": {**PASSWORDS, "ceo": value}}
    with pytest.raises(ManifestError) as caught:
        compile_tenant(manifest(), secrets)
    assert (caught.value.path, caught.value.message) == (
        "spec.extensions[1].passwordSecretRef.key",
        "key 'ceo' of Secret 'acme-sip' must be a non-empty string",
    )


@pytest.mark.parametrize("document", [None, ["kind", "Tenant"], "apiVersion: cloudpbx.io/v1"])
def test_a_document_that_is_not_a_mapping(document: Any) -> None:
    with pytest.raises(ManifestError) as caught:
        compile_tenant(document, SECRETS)
    assert caught.value.path == ""
    assert caught.value.message.startswith("must be a mapping, not ")


def test_passwords_appear_nowhere_in_the_snapshot() -> None:
    snapshot = compile_tenant(manifest(), SECRETS)
    for text in (repr(snapshot), str(snapshot), snapshot.to_json(), repr(snapshot.extensions)):
        assert_no_secret_in(text)
    # The HA1s (as good as a password in their realm) are in the JSON but not in repr().
    assert snapshot.extensions[0].ha1_md5 in snapshot.to_json()
    assert snapshot.extensions[0].ha1_md5 not in repr(snapshot)


@pytest.mark.parametrize(
    ("snapshot_path", "path"),
    [
        ("name", "metadata.name"),
        ("uid", "metadata.uid"),
        ("version", "metadata.generation"),
        ("domain", "spec.domain"),
        ("aliases[3]", "spec.aliases[3]"),
        ("enabled", "spec.enabled"),
        ("extensions[2].number", "spec.extensions[2].number"),
        ("extensions[2].display_name", "spec.extensions[2].displayName"),
        ("extensions[2].max_contacts", "spec.extensions[2].maxContacts"),
        ("extensions[2].ha1_md5", "spec.extensions[2].passwordSecretRef"),
        ("limits.min_expires_s", "spec.limits.minExpiresSeconds"),
        ("limits.max_contacts_per_aor", "spec.limits.maxContactsPerExtension"),
        ("media.anchor", "spec.media.anchor"),
    ],
)
def test_manifest_path_of_each_snapshot_field(snapshot_path: str, path: str) -> None:
    assert manifest_path(snapshot_path) == path


def trial(**fields: Any) -> dict[str, Any]:
    """The manifest on a trial plan (without its concurrent-call limit: the trial's is 1)."""
    document = manifest()
    del document["spec"]["limits"]["maxConcurrentCalls"]
    document["spec"]["billing"] = {"plan": "trial", "currency": "EUR", **fields}
    return document


def test_no_billing_section_is_a_postpaid_tenant() -> None:
    assert compile_tenant(manifest(), SECRETS).billing == BillingPlan()


def test_a_trial_takes_the_trial_defaults_and_one_call_at_a_time() -> None:
    snapshot = compile_tenant(trial(), SECRETS)
    assert snapshot.billing == BillingPlan(
        plan="trial", currency="EUR", call_limit_s=60, daily_minutes=60
    )
    assert snapshot.limits.max_concurrent_calls == 1


@pytest.mark.parametrize(
    ("expires", "epoch_s"),
    [
        (datetime.date(2026, 12, 31), 1_798_761_600),  # YAML's date: the end of that day, UTC
        ("2026-12-31", 1_798_761_600),
        ("2026-12-31T12:00:00+01:00", 1_798_714_800),
        ("2026-12-31T11:00:00Z", 1_798_714_800),
    ],
)
def test_a_trial_says_its_limits_and_when_it_ends(expires: object, epoch_s: int) -> None:
    document = trial(
        trial={
            "callLimitSeconds": 90,
            "dailyMinutes": 30,
            "verifiedNumbers": ["4915112345678"],
            "expires": expires,
        }
    )
    billing = compile_tenant(document, SECRETS).billing
    assert (billing.call_limit_s, billing.daily_minutes) == (90, 30)
    assert billing.verified_numbers == ("4915112345678",)
    assert billing.expires_at_s == epoch_s


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        (
            trial(plan="gold"),
            "spec.billing.plan",
            "must be one of prepaid, postpaid, trial, not 'gold'",
        ),
        (
            trial(currency="euro"),
            "spec.billing.currency",
            "must be an ISO 4217 code (three capitals)",
        ),
        (
            trial(extra=1),
            "spec.billing.extra",
            "unknown field (expected: currency, plan, rateInternalCalls, rates, trial)",
        ),
        (
            trial(trial={"callLimitSeconds": 0}),
            "spec.billing.trial.callLimitSeconds",
            "must be between 1 and 86400, not 0",
        ),
        (
            trial(trial={"verifiedNumbers": ["+4915112345678"]}),
            "spec.billing.trial.verifiedNumbers[0]",
            "must be E.164 digits without +",
        ),
        (
            trial(trial={"expires": "31.12.2026"}),
            "spec.billing.trial.expires",
            "must be a date (2026-12-31) or a timestamp with offset, not '31.12.2026'",
        ),
        (
            trial(trial={"expires": "2026-12-31T12:00:00"}),
            "spec.billing.trial.expires",
            "a timestamp must say its offset (Z or +01:00)",
        ),
        (
            trial(trial={"minutes": 5}),
            "spec.billing.trial.minutes",
            "unknown field (expected: callLimitSeconds, dailyMinutes, expires, verifiedNumbers)",
        ),
        (
            {**trial(), "spec": {**trial()["spec"], "limits": {"maxConcurrentCalls": 3}}},
            "spec.limits.maxConcurrentCalls",
            "must be 1 on a trial plan (one call at a time)",
        ),
        (
            changed("spec.billing", {"plan": "prepaid", "trial": {"dailyMinutes": 5}}),
            "spec.billing.trial",
            "is only for plan 'trial'",
        ),
    ],
)
def test_a_bad_billing_section_names_the_field(
    document: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        compile_tenant(document, SECRETS)
    assert (caught.value.path, caught.value.message) == (path, message)


def prepaid(rates: object, **more: object) -> dict[str, Any]:
    document = manifest()
    document["spec"]["billing"] = {"plan": "prepaid", "currency": "EUR", "rates": rates, **more}
    return document


def test_rates_are_read_as_exact_micros_with_their_increments() -> None:
    document = prepaid(
        [
            {"prefix": "49", "name": "Germany", "perMinute": "0.0125", "connectFee": 0.1},
            {"prefix": "4915", "perMinute": 0.2, "increments": "30/6"},
            {"prefix": "", "perMinute": 1, "increments": "1/1"},
        ],
        rateInternalCalls=True,
    )
    billing = compile_tenant(document, SECRETS).billing
    assert billing.rates == (
        Rate("49", 12_500, connect_fee_micros=100_000, name="Germany"),
        Rate("4915", 200_000, initial_s=30, increment_s=6),
        Rate("", 1_000_000, initial_s=1, increment_s=1),
    )
    assert billing.rate_internal_calls
    assert billing.rate_table.rate("4915112345678") == billing.rates[1]


@pytest.mark.parametrize(
    ("rates", "path", "message"),
    [
        ({"prefix": "49"}, "spec.billing.rates", "must be a list, not a mapping"),
        ([{"prefix": "49"}], "spec.billing.rates[0].perMinute", "is required"),
        (
            [{"prefix": "49", "perMinute": "0.0000001"}],
            "spec.billing.rates[0].perMinute",
            "must be a non-negative amount with at most 6 decimals, not '0.0000001'",
        ),
        (
            [{"prefix": "49", "perMinute": "-1"}],
            "spec.billing.rates[0].perMinute",
            "must be a non-negative amount with at most 6 decimals, not '-1'",
        ),
        (
            [{"prefix": "49", "perMinute": "cheap"}],
            "spec.billing.rates[0].perMinute",
            "must be an amount like \"0.06\", not 'cheap'",
        ),
        (
            [{"prefix": "49", "perMinute": "0.1", "increments": "60"}],
            "spec.billing.rates[0].increments",
            "must be initial/subsequent seconds like 60/60, not '60'",
        ),
        (
            [{"prefix": "49", "perMinute": "0.1", "increments": "0/6"}],
            "spec.billing.rates[0].increments",
            "rate '49': initial_s must be an integer in 1..3600, not 0",
        ),
        (
            [{"prefix": "+49", "perMinute": "0.1"}],
            "spec.billing.rates[0].prefix",
            "rate prefix '+49' is not digits",
        ),
        (
            [{"prefix": "49", "perMinute": "0.1"}, {"prefix": "49", "perMinute": "0.2"}],
            "spec.billing.rates",
            "two rates for prefix '49'",
        ),
        (
            [{"prefix": "49", "perMinute": "0.1", "per": 1}],
            "spec.billing.rates[0].per",
            "unknown field (expected: connectFee, increments, name, perMinute, prefix)",
        ),
    ],
)
def test_a_bad_rate_names_the_field(rates: object, path: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        compile_tenant(prepaid(rates), SECRETS)
    assert (caught.value.path, caught.value.message) == (path, message)
