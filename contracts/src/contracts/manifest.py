"""Compiles a ``Tenant`` manifest (``cloudpbx.io/v1``) and its Secrets into a TenantSnapshot.

Owns the Tenant spec as the operator and ``cloudpbx dev`` read it: field names in
camelCase as a Kubernetes CRD spells them, their defaults, and validation that names the
field at fault (``spec.extensions[1].number``), which the operator shows in a status
condition. Value rules live once, in :mod:`contracts.snapshot`; their errors are
translated here to manifest paths. Unknown fields under ``spec`` are errors (a typo must
not silently fall back to a default); ``metadata`` and ``status`` are the API server's.

This is the one place a SIP password is read: ``secrets[name][key]`` (a Secret's
stringData) is turned at once into the digest HA1s with the tenant's domain as realm
(RFC 7616 §3.4.2; RFC 8760 for SHA-256), kept nowhere, logged nowhere, and never put in
an error message.

Pure and standard library only: parsing YAML and talking to the API server belong to the
callers.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from contracts.billing.rating import MICROS_PER_UNIT, Rate, RatingError
from contracts.resources import ManifestError as ManifestError
from contracts.snapshot import (
    DEFAULT_TRIAL_CALL_LIMIT_S,
    DEFAULT_TRIAL_DAILY_MINUTES,
    BillingPlan,
    Extension,
    Limits,
    MediaPolicy,
    SnapshotError,
    TenantSnapshot,
    is_valid_host,
    join_path,
    normalize_host,
)

API_VERSION = "cloudpbx.io/v1"
KIND = "Tenant"

#: ``spec.limits`` key → :class:`Limits` field.
LIMIT_FIELDS: Mapping[str, str] = {
    "minExpiresSeconds": "min_expires_s",
    "maxExpiresSeconds": "max_expires_s",
    "defaultExpiresSeconds": "default_expires_s",
    "maxContactsPerExtension": "max_contacts_per_aor",
    "maxConcurrentCalls": "max_concurrent_calls",
    "ringTimeoutSeconds": "ring_timeout_s",
}
#: ``spec.media`` key → :class:`MediaPolicy` field.
MEDIA_FIELDS: Mapping[str, str] = {"anchor": "anchor"}
#: ``spec.billing`` keys; ``spec.billing.trial`` key → :class:`BillingPlan` field.
_BILLING_KEYS = frozenset({"plan", "currency", "trial", "rates", "rateInternalCalls"})
_RATE_KEYS = frozenset({"prefix", "name", "perMinute", "connectFee", "increments"})
TRIAL_FIELDS: Mapping[str, str] = {
    "callLimitSeconds": "call_limit_s",
    "dailyMinutes": "daily_minutes",
    "verifiedNumbers": "verified_numbers",
    "expires": "expires_at_s",
}
#: ``spec.isolation``: served by the shared edge pool, or by an edge Deployment of its own
#: (the operator's business: the snapshot is the same either way).
ISOLATIONS = ("shared", "dedicated")
_SPEC_KEYS = frozenset(
    {"domain", "aliases", "enabled", "isolation", "media", "limits", "extensions", "billing"}
)
_EXTENSION_KEYS = frozenset({"number", "displayName", "maxContacts", "passwordSecretRef"})
_SECRET_REF_KEYS = frozenset({"name", "key"})

#: Where each snapshot field comes from, to name a :class:`SnapshotError` in manifest terms.
_SOURCES: Mapping[str, str] = {
    "name": "metadata.name",
    "uid": "metadata.uid",
    "version": "metadata.generation",
    "domain": "spec.domain",
    "aliases": "spec.aliases",
    "enabled": "spec.enabled",
    "extensions": "spec.extensions",
    "limits": "spec.limits",
    "media": "spec.media",
    "billing": "spec.billing",
}
_NESTED_SOURCES: Mapping[str, Mapping[str, str]] = {
    "limits": {field: key for key, field in LIMIT_FIELDS.items()},
    "media": {field: key for key, field in MEDIA_FIELDS.items()},
    "billing": {
        "plan": "plan",
        "currency": "currency",
        "rate_internal_calls": "rateInternalCalls",
        **{field: f"trial.{key}" for key, field in TRIAL_FIELDS.items()},
    },
    "extensions": {
        "number": "number",
        "display_name": "displayName",
        "max_contacts": "maxContacts",
        "ha1_md5": "passwordSecretRef",
        "ha1_sha256": "passwordSecretRef",
    },
}


def compile_tenant(
    tenant: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]]
) -> TenantSnapshot:
    """The snapshot of one parsed Tenant manifest; ``secrets`` maps Secret name → stringData.

    The version is ``metadata.generation`` (1 when absent).
    """
    root = _mapping(tenant, "")
    _check_type(root)
    metadata = _mapping(_required(root, "metadata", ""), "metadata")
    spec = _mapping(_required(root, "spec", ""), "spec", _SPEC_KEYS)
    isolation(tenant)
    domain = _domain(spec)
    billing = _billing(spec)
    limits = _limits(spec, billing)
    extensions = _extensions(spec, domain, limits, secrets)
    with _snapshot_errors(""):
        return TenantSnapshot(
            name=_required(metadata, "name", "metadata"),
            uid=metadata.get("uid", ""),
            version=metadata.get("generation", 1),
            domain=domain,
            aliases=_aliases(spec),
            extensions=extensions,
            limits=limits,
            media=_media(spec),
            billing=billing,
            enabled=spec.get("enabled", True),
        )


def isolation(tenant: Mapping[str, Any]) -> str:
    """``spec.isolation`` of a Tenant manifest: ``shared`` (the default) or ``dedicated``."""
    spec = tenant.get("spec")
    value = spec.get("isolation", ISOLATIONS[0]) if isinstance(spec, Mapping) else ISOLATIONS[0]
    if value not in ISOLATIONS:
        raise ManifestError(
            "spec.isolation", f"must be one of {', '.join(ISOLATIONS)}, not {_shown(value)}"
        )
    return str(value)


def _check_type(root: Mapping[str, Any]) -> None:
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        value = root.get(key)
        if value != expected:
            found = "" if value is None else f", not {_shown(value)}"
            raise ManifestError(key, f"must be {expected!r}{found}")


def _domain(spec: Mapping[str, Any]) -> str:
    raw = _required(spec, "domain", "spec")
    if not isinstance(raw, str):
        raise ManifestError("spec.domain", f"must be a string, not {_shown(raw)}")
    host = normalize_host(raw)
    if not is_valid_host(host):
        raise ManifestError("spec.domain", f"must be a host name or IP address, not {raw!r}")
    return host


def _aliases(spec: Mapping[str, Any]) -> tuple[str, ...]:
    aliases = _sequence(spec.get("aliases", []), "spec.aliases")
    for index, alias in enumerate(aliases):
        if not isinstance(alias, str):
            raise ManifestError(f"spec.aliases[{index}]", f"must be a string, not {_shown(alias)}")
    return tuple(normalize_host(alias) for alias in aliases)


def _limits(spec: Mapping[str, Any], billing: BillingPlan) -> Limits:
    section = _mapping(spec.get("limits", {}), "spec.limits", LIMIT_FIELDS)
    values = {LIMIT_FIELDS[key]: value for key, value in section.items()}
    if billing.trial:  # one call at a time, unless the spec says otherwise (and fails)
        values.setdefault("max_concurrent_calls", 1)
    with _snapshot_errors("limits"):
        return Limits(**values)


def _billing(spec: Mapping[str, Any]) -> BillingPlan:
    """``spec.billing``: the plan and currency; a trial's limits under ``trial``, with
    the trial defaults (60 s a call, 60 minutes a day)."""
    section = _mapping(spec.get("billing", {}), "spec.billing", _BILLING_KEYS)
    values: dict[str, Any] = {key: section[key] for key in ("plan", "currency") if key in section}
    if "rateInternalCalls" in section:
        values["rate_internal_calls"] = section["rateInternalCalls"]
    if "rates" in section:
        rates = _sequence(section["rates"], "spec.billing.rates")
        values["rates"] = tuple(
            _rate(item, f"spec.billing.rates[{index}]") for index, item in enumerate(rates)
        )
    if values.get("plan") == "trial":
        values["call_limit_s"] = DEFAULT_TRIAL_CALL_LIMIT_S
        values["daily_minutes"] = DEFAULT_TRIAL_DAILY_MINUTES
    if "trial" in section:
        if values.get("plan") != "trial":
            raise ManifestError("spec.billing.trial", "is only for plan 'trial'")
        trial = _mapping(section["trial"], "spec.billing.trial", TRIAL_FIELDS)
        for key, value in trial.items():
            values[TRIAL_FIELDS[key]] = value
        if "verifiedNumbers" in trial:
            path = "spec.billing.trial.verifiedNumbers"
            values["verified_numbers"] = tuple(_sequence(trial["verifiedNumbers"], path))
        if "expires" in trial:
            values["expires_at_s"] = _expiry(trial["expires"], "spec.billing.trial.expires")
    with _snapshot_errors("billing"):
        return BillingPlan(**values)


def _rate(value: object, path: str) -> Rate:
    """One ``spec.billing.rates`` entry: prices in the currency's units as decimal text
    (``"0.06"``; a YAML number is read by its text), increments as ``"60/60"``."""
    entry = _mapping(value, path, _RATE_KEYS)
    prefix = entry.get("prefix", "")
    if not isinstance(prefix, str):
        raise ManifestError(f"{path}.prefix", f"must be a string of digits, not {_kind(prefix)}")
    increments = entry.get("increments", "60/60")
    initial, slash, subsequent = str(increments).partition("/")
    if not (slash and initial.isdigit() and subsequent.isdigit()):
        raise ManifestError(
            f"{path}.increments",
            f"must be initial/subsequent seconds like 60/60, not {_shown(increments)}",
        )
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise ManifestError(f"{path}.name", f"must be a string, not {_kind(name)}")
    try:
        return Rate(
            prefix,
            _micros(_required(entry, "perMinute", path), f"{path}.perMinute"),
            connect_fee_micros=_micros(entry.get("connectFee", 0), f"{path}.connectFee"),
            initial_s=int(initial),
            increment_s=int(subsequent),
            name=name,
        )
    except RatingError as exc:
        where = {"initial_s": "increments", "increment_s": "increments"}.get(exc.field, exc.field)
        raise ManifestError(join_path(path, where) if where else path, str(exc)) from None


def _micros(value: object, path: str) -> int:
    """An amount of money in the currency's units (``"0.06"``) as integer micros, exactly:
    never through a float's arithmetic, and refused when it has more than 6 decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ManifestError(path, f'must be an amount like "0.06", not {_kind(value)}')
    try:
        amount = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        raise ManifestError(path, f'must be an amount like "0.06", not {_shown(value)}') from None
    micros = amount * MICROS_PER_UNIT
    if not amount.is_finite() or amount < 0 or micros != micros.to_integral_value():
        raise ManifestError(
            path, f"must be a non-negative amount with at most 6 decimals, not {_shown(value)}"
        )
    return int(micros)


def _expiry(value: object, path: str) -> int:
    """A trial's end in epoch seconds: a date (YAML's ``2026-12-31`` or the string) ends
    at the end of that day, UTC; an RFC 3339 timestamp with its offset at that instant."""
    if isinstance(value, str):
        try:
            value = (
                datetime.date.fromisoformat(value)
                if len(value) == 10
                else datetime.datetime.fromisoformat(value)
            )
        except ValueError:
            raise ManifestError(
                path, f"must be a date (2026-12-31) or a timestamp with offset, not {_shown(value)}"
            ) from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ManifestError(path, "a timestamp must say its offset (Z or +01:00)")
        return int(value.timestamp())
    if isinstance(value, datetime.date):
        next_day = value + datetime.timedelta(days=1)
        return int(
            datetime.datetime(
                next_day.year, next_day.month, next_day.day, tzinfo=datetime.UTC
            ).timestamp()
        )
    raise ManifestError(path, f"must be a date or a timestamp, not {_kind(value)}")


def _media(spec: Mapping[str, Any]) -> MediaPolicy:
    section = _mapping(spec.get("media", {}), "spec.media", MEDIA_FIELDS)
    with _snapshot_errors("media"):
        return MediaPolicy(**{MEDIA_FIELDS[key]: value for key, value in section.items()})


def _extensions(
    spec: Mapping[str, Any],
    domain: str,
    limits: Limits,
    secrets: Mapping[str, Mapping[str, str]],
) -> tuple[Extension, ...]:
    items = _sequence(_required(spec, "extensions", "spec"), "spec.extensions")
    return tuple(
        _extension(item, index, domain, limits, secrets) for index, item in enumerate(items)
    )


def _extension(
    item: object,
    index: int,
    domain: str,
    limits: Limits,
    secrets: Mapping[str, Mapping[str, str]],
) -> Extension:
    path = f"spec.extensions[{index}]"
    entry = _mapping(item, path, _EXTENSION_KEYS)
    number = _number(entry, path)
    ha1_md5, ha1_sha256 = _ha1s(entry, path, number, domain, secrets)
    with _snapshot_errors(f"extensions[{index}]"):
        return Extension(
            number=number,
            display_name=entry.get("displayName", ""),
            ha1_md5=ha1_md5,
            ha1_sha256=ha1_sha256,
            max_contacts=entry.get("maxContacts", limits.max_contacts_per_aor),
        )


def _number(entry: Mapping[str, Any], path: str) -> str:
    raw = _required(entry, "number", path)
    if isinstance(raw, str):
        return raw
    hint = " (quote it: YAML reads 1001 as an integer)" if isinstance(raw, int) else ""
    raise ManifestError(f"{path}.number", f"must be a string of digits{hint}")


def _ha1s(
    entry: Mapping[str, Any],
    path: str,
    number: str,
    domain: str,
    secrets: Mapping[str, Mapping[str, str]],
) -> tuple[str, str]:
    """(MD5, SHA-256) HA1 of the extension's password; the password goes no further."""
    ref_path = f"{path}.passwordSecretRef"
    ref = _mapping(_required(entry, "passwordSecretRef", path), ref_path, _SECRET_REF_KEYS)
    name = _required_str(ref, "name", ref_path)
    key = _required_str(ref, "key", ref_path)
    secret = secrets.get(name)
    if secret is None:
        raise ManifestError(f"{ref_path}.name", f"Secret {name!r} not found")
    if key not in secret:
        raise ManifestError(f"{ref_path}.key", f"Secret {name!r} has no key {key!r}")
    password: object = secret[key]  # a caller may pass what YAML gave it
    if not isinstance(password, str) or not password:
        raise ManifestError(
            f"{ref_path}.key", f"key {key!r} of Secret {name!r} must be a non-empty string"
        )
    a1 = f"{number}:{domain}:{password}".encode()
    return hashlib.md5(a1).hexdigest(), hashlib.sha256(a1).hexdigest()


# --- structure and error translation ---------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return type(value).__name__
    return "a list"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _mapping(value: object, path: str, keys: Collection[str] | None = None) -> Mapping[str, Any]:
    """``value`` as a mapping with string keys, all of them in ``keys`` when given."""
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be a mapping, not {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ManifestError(path, f"has a key that is not a string: {_shown(key)}")
        if keys is not None and key not in keys:
            expected = ", ".join(sorted(keys))
            raise ManifestError(join_path(path, key), f"unknown field (expected: {expected})")
    return value


def _sequence(value: object, path: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ManifestError(path, f"must be a list, not {_kind(value)}")
    return value


def _required(mapping: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise ManifestError(join_path(path, key), "is required")
    return mapping[key]


def _required_str(mapping: Mapping[str, Any], key: str, path: str) -> str:
    value = _required(mapping, key, path)
    if not isinstance(value, str) or not value:
        raise ManifestError(join_path(path, key), "must be a non-empty string")
    return value


def manifest_path(snapshot_path: str) -> str:
    """Where a snapshot field comes from: ``extensions[2].max_contacts`` →
    ``spec.extensions[2].maxContacts``."""
    head, _, rest = snapshot_path.partition(".")
    name, bracket, index = head.partition("[")
    path = _SOURCES.get(name, "spec") + bracket + index
    if rest:
        field, bracket, index = rest.partition("[")  # verified_numbers[0]
        path = join_path(path, _NESTED_SOURCES.get(name, {}).get(field, field) + bracket + index)
    return path


@contextmanager
def _snapshot_errors(prefix: str) -> Iterator[None]:
    """Re-raises a :class:`SnapshotError` of the object at ``prefix`` as a ManifestError."""
    try:
        yield
    except SnapshotError as exc:
        raise ManifestError(manifest_path(join_path(prefix, exc.path)), exc.message) from None
