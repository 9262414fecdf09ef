"""The compiled tenant snapshot: the one contract the operator writes and the SIP edge reads.

Owns the shape of a tenant as the edge needs it to serve a request (its SIP domain and
aliases, extensions with their digest credentials, registration and call limits, media
policy) and its JSON codec. The operator publishes ``TenantSnapshot.to_json()`` under
:func:`contracts.keys.snapshot_key`; the edge reads it back with
:meth:`TenantSnapshot.from_json`. The format is pinned by
``tests/contracts/data/tenant_snapshot.json``.

Every value is checked on construction (``__post_init__``), so a snapshot that exists is
valid, whoever built it: the decoder, the manifest compiler, a test. A broken value raises
:class:`SnapshotError` carrying the path of the field at fault (``extensions[2].number``).
The decoder is strict on top of that: unknown fields, missing fields (even those with a
default), duplicate keys, floats and NaN are errors.

No password ever reaches a snapshot. An extension carries its digest HA1s
(H(number ":" domain ":" password), RFC 7616 §3.4.2; SHA-256 per RFC 8760) with the
tenant's domain as realm. An HA1 is as good as the password within its realm, so it stays
out of ``repr()``.

Standard library only: every service imports this package. A validation library
(msgspec, pydantic) would be the usual choice; the codec is small enough that keeping
``contracts`` dependency-free wins. Past ~400 lines on purpose: the classes and the value
rules that guard them read best side by side; move the codec out when it grows.
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from contracts.billing.rating import Rate, RateTable, RatingError
from contracts.dialplan import DialPlans, compile_dial_plans
from contracts.resources import ManifestError
from contracts.trunk import Trunk, compile_trunks

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_MIN_EXPIRES_S = 60
DEFAULT_MAX_EXPIRES_S = 3600
DEFAULT_EXPIRES_S = 3600
DEFAULT_MAX_CONTACTS_PER_AOR = 5
#: 0 means no limit on a tenant's concurrent calls.
DEFAULT_MAX_CONCURRENT_CALLS = 0
DEFAULT_RING_TIMEOUT_S = 30
#: Billing plans (issue 5): a balance with cut-off, billed afterwards, or a free trial.
PLANS = ("prepaid", "postpaid", "trial")
DEFAULT_PLAN = "postpaid"
DEFAULT_CURRENCY = "USD"
#: A trial's per-call limit and daily minutes unless its Tenant says otherwise.
DEFAULT_TRIAL_CALL_LIMIT_S = 60
DEFAULT_TRIAL_DAILY_MINUTES = 60
MAX_CALL_LIMIT_S = 24 * 3600
MAX_DAILY_MINUTES = 24 * 60
MAX_VERIFIED_NUMBERS = 100
MAX_RATES = 100_000
#: Epoch seconds fit a signed 64-bit integer, as versions do.
MAX_EPOCH_S = 2**63 - 1

#: RFC 3261 §20.19: Expires is delta-seconds, at most 2**32 - 1.
MAX_EXPIRES_S = 2**32 - 1
MAX_CONTACTS = 1000
MAX_CONCURRENT_CALLS = 1_000_000
MAX_RING_TIMEOUT_S = 600
#: Versions fit a signed 64-bit Redis integer.
MAX_VERSION = 2**63 - 1
MAX_HOST_CHARS = 253
MAX_NAME_CHARS = 253
MAX_UID_CHARS = 128
MAX_DISPLAY_NAME_CHARS = 128

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
#: RFC 1123 subdomain: what Kubernetes accepts as a metadata.name; also a host name.
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_NUMBER = re.compile(r"[0-9]{2,15}")
#: E.164 without the plus (ITU-T E.164 §6: at most 15 digits).
_E164 = re.compile(r"[1-9][0-9]{5,14}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_HA1_MD5 = re.compile(r"[0-9a-f]{32}")
_HA1_SHA256 = re.compile(r"[0-9a-f]{64}")
_UID = re.compile(rf"[\x21-\x7e]{{0,{MAX_UID_CHARS}}}")
#: Unicode categories a display name may not hold: controls (CR LF would split a SIP
#: header), lone surrogates (not encodable as UTF-8), line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})

_T = TypeVar("_T")
_D = TypeVar("_D", bound="DataclassInstance")


class SnapshotError(ValueError):
    """A snapshot that breaks the contract; ``path`` names the field, e.g. ``extensions[2].number``.

    ``path`` is empty when the document as a whole is at fault (not JSON, not an object).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message

    def under(self, prefix: str) -> SnapshotError:
        """The same error, seen from the object that holds the field at ``prefix``."""
        return SnapshotError(join_path(prefix, self.path), self.message)


def join_path(prefix: str, path: str) -> str:
    """``limits`` + ``max_expires_s`` → ``limits.max_expires_s``; ``extensions`` + ``[2]``."""
    if not prefix or not path:
        return prefix or path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


# --- hosts -------------------------------------------------------------------------------


def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower-case, no root dot, IPv6 compressed in brackets.

    ``Demo.Example.COM.`` → ``demo.example.com``; ``[2001:DB8:0::1]`` → ``[2001:db8::1]``.
    Pass a host without its port.
    """
    text = host.strip().lower().removesuffix(".")
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if ":" in inner:
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            return text
    return text


def is_valid_host(host: str) -> bool:
    """True for a host name, dotted IPv4 address or bracketed IPv6 address in normal form."""
    if len(host) > MAX_HOST_CHARS or host != normalize_host(host):
        return False
    if host.startswith("["):
        return host.endswith("]") and _is_ip(host[1:-1], ipaddress.IPv6Address)
    if _is_ip(host, ipaddress.IPv4Address):
        return True
    # RFC 3261 §25.1 toplabel: the last label of a host name is not all digits.
    return _DNS_NAME.fullmatch(host) is not None and not host.rsplit(".", 1)[-1].isdigit()


def _is_ip(text: str, kind: Callable[[str], object]) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


# --- checks of single values (they take ``object``: the decoder passes raw JSON) ---------


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return names.get(type(value), type(value).__name__)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:61] + "...")


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SnapshotError(path, f"must be a string, not {_kind(value)}")
    return value


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SnapshotError(path, f"must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise SnapshotError(path, f"must be between {low} and {high}, not {value}")
    return value


def _bool(value: object, path: str) -> None:
    if not isinstance(value, bool):
        raise SnapshotError(path, f"must be a boolean, not {_kind(value)}")


def _matching(value: object, path: str, pattern: re.Pattern[str], what: str) -> str:
    """Checks ``value`` against ``pattern``; the value is not echoed (it may be a secret)."""
    text = _str(value, path)
    if pattern.fullmatch(text) is None:
        raise SnapshotError(path, f"must be {what}")
    return text


def _host(value: object, path: str) -> str:
    text = _str(value, path)
    if not is_valid_host(text):
        raise SnapshotError(
            path, f"must be a lower-case host name or IP address, not {_shown(text)}"
        )
    return text


def _tuple_of(value: object, path: str, kind: type[_T], what: str) -> tuple[_T, ...]:
    if not isinstance(value, tuple):
        raise SnapshotError(path, f"must be a tuple, not {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, kind):
            raise SnapshotError(f"{path}[{index}]", f"must be {what}, not {_kind(item)}")
    return value


def _instance(value: object, path: str, kind: type[object]) -> None:
    if not isinstance(value, kind):
        raise SnapshotError(path, f"must be {kind.__name__}, not {_kind(value)}")


# --- the contract --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Registration (RFC 3261 §10.3 steps 7–8) and call limits of one tenant."""

    min_expires_s: int = DEFAULT_MIN_EXPIRES_S
    max_expires_s: int = DEFAULT_MAX_EXPIRES_S
    #: Granted when a REGISTER names no expiry.
    default_expires_s: int = DEFAULT_EXPIRES_S
    #: Ceiling and default of each extension's ``max_contacts``.
    max_contacts_per_aor: int = DEFAULT_MAX_CONTACTS_PER_AOR
    #: 0 = unlimited.
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS
    ring_timeout_s: int = DEFAULT_RING_TIMEOUT_S

    def __post_init__(self) -> None:
        low = _int(self.min_expires_s, "min_expires_s", 1, MAX_EXPIRES_S)
        high = _int(self.max_expires_s, "max_expires_s", 1, MAX_EXPIRES_S)
        if low > high:
            raise SnapshotError(
                "min_expires_s", f"must not be greater than the maximum expires ({high} s)"
            )
        _int(self.default_expires_s, "default_expires_s", low, high)
        _int(self.max_contacts_per_aor, "max_contacts_per_aor", 1, MAX_CONTACTS)
        _int(self.max_concurrent_calls, "max_concurrent_calls", 0, MAX_CONCURRENT_CALLS)
        _int(self.ring_timeout_s, "ring_timeout_s", 1, MAX_RING_TIMEOUT_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPolicy:
    """Where a tenant's media flows (DESIGN "NAT")."""

    #: True: every call's RTP goes through the relay. False: phones on public addresses
    #: send media to each other.
    anchor: bool = True

    def __post_init__(self) -> None:
        _bool(self.anchor, "anchor")


@dataclass(frozen=True, slots=True, kw_only=True)
class BillingPlan:
    """How a tenant's calls are paid for (issue 5; DESIGN "Prepaid").

    ``prepaid``: calls are rated and reserved against the balance and cut off when it
    runs out. ``postpaid``: rated and billed afterwards, never cut off. ``trial``: the
    free-trial signup's plan — every call cut at ``call_limit_s``, one call at a time
    (``Limits.max_concurrent_calls`` is 1), internal calls only except to
    ``verified_numbers``, ``daily_minutes`` a day at most, over at ``expires_at_s``.
    The trial fields are 0 or empty for the other plans.

    ``rates`` price calls by the dialled number's longest prefix
    (:mod:`contracts.billing.rating`); calls between the tenant's own extensions are free
    unless ``rate_internal_calls`` (then the extension number is rated like any other).
    """

    plan: str = DEFAULT_PLAN
    #: ISO 4217 code of the tenant's accounts.
    currency: str = DEFAULT_CURRENCY
    #: Trial: every call ends at this many seconds after the answer.
    call_limit_s: int = 0
    #: Trial: external numbers (E.164 digits, no plus) the tenant proved it owns.
    verified_numbers: tuple[str, ...] = ()
    #: Trial: minutes of calls a day (UTC), all calls together.
    daily_minutes: int = 0
    #: Trial: when it ends (epoch seconds, UTC); 0 = never.
    expires_at_s: int = 0
    rates: tuple[Rate, ...] = ()
    rate_internal_calls: bool = False
    _table: RateTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plan = _str(self.plan, "plan")
        if plan not in PLANS:
            raise SnapshotError("plan", f"must be one of {', '.join(PLANS)}, not {_shown(plan)}")
        _matching(self.currency, "currency", _CURRENCY, "an ISO 4217 code (three capitals)")
        trial = plan == "trial"
        low = 1 if trial else 0
        _int(self.call_limit_s, "call_limit_s", low, MAX_CALL_LIMIT_S)
        _int(self.daily_minutes, "daily_minutes", low, MAX_DAILY_MINUTES)
        _int(self.expires_at_s, "expires_at_s", 0, MAX_EPOCH_S)
        numbers = _tuple_of(self.verified_numbers, "verified_numbers", str, "a string")
        if len(numbers) > MAX_VERIFIED_NUMBERS:
            raise SnapshotError("verified_numbers", f"must be at most {MAX_VERIFIED_NUMBERS}")
        for index, number in enumerate(numbers):
            _matching(number, f"verified_numbers[{index}]", _E164, "E.164 digits without +")
        if not trial:
            for name in ("call_limit_s", "daily_minutes", "expires_at_s", "verified_numbers"):
                if getattr(self, name):
                    raise SnapshotError(name, f"is a trial setting, not one of plan {plan!r}")
        rates = _tuple_of(self.rates, "rates", Rate, "a Rate")
        if len(rates) > MAX_RATES:
            raise SnapshotError("rates", f"must be at most {MAX_RATES}")
        _bool(self.rate_internal_calls, "rate_internal_calls")
        try:
            object.__setattr__(self, "_table", RateTable(rates))
        except RatingError as exc:
            raise SnapshotError("rates", str(exc)) from None

    @property
    def rate_table(self) -> RateTable:
        return self._table

    @property
    def trial(self) -> bool:
        return self.plan == "trial"

    @property
    def cuts_off(self) -> bool:
        """Whether calls are ended when the money (or the trial's limit) runs out."""
        return self.plan != "postpaid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """One extension: the user part of its AOR and its digest credentials."""

    number: str
    display_name: str = ""
    #: MD5(number ":" domain ":" password), lower-case hex.
    ha1_md5: str = field(repr=False)
    #: SHA-256(number ":" domain ":" password), lower-case hex (RFC 8760).
    ha1_sha256: str = field(repr=False)
    #: Contacts one registration may bind; at most ``Limits.max_contacts_per_aor``.
    max_contacts: int = DEFAULT_MAX_CONTACTS_PER_AOR

    def __post_init__(self) -> None:
        number = _str(self.number, "number")
        if _NUMBER.fullmatch(number) is None:
            raise SnapshotError("number", f"must be 2 to 15 digits, not {_shown(number)}")
        _display_name(self.display_name, "display_name")
        _matching(self.ha1_md5, "ha1_md5", _HA1_MD5, "32 lower-case hex digits")
        _matching(self.ha1_sha256, "ha1_sha256", _HA1_SHA256, "64 lower-case hex digits")
        _int(self.max_contacts, "max_contacts", 1, MAX_CONTACTS)


def _display_name(value: object, path: str) -> None:
    text = _str(value, path)
    if len(text) > MAX_DISPLAY_NAME_CHARS:
        raise SnapshotError(path, f"must be at most {MAX_DISPLAY_NAME_CHARS} characters")
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in text):
        raise SnapshotError(path, "must not contain control characters or line breaks")


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantSnapshot:
    """Everything the edge knows about one tenant, as of ``version``.

    ``name`` is the Tenant's metadata.name; ``domain`` its SIP domain and digest realm;
    ``aliases`` further hosts (``127.0.0.1``) whose requests belong to it. A disabled
    tenant is still published, so the edge can refuse its phones with a reason.
    """

    name: str
    uid: str = ""
    #: Grows with every publish of this tenant; the edge keeps the highest it saw.
    version: int = 1
    domain: str
    aliases: tuple[str, ...] = ()
    extensions: tuple[Extension, ...] = ()
    limits: Limits = field(default_factory=Limits)
    media: MediaPolicy = field(default_factory=MediaPolicy)
    billing: BillingPlan = field(default_factory=BillingPlan)
    enabled: bool = True
    #: The tenant's ``Trunk`` and ``DialPlan`` objects as manifests (apiVersion, kind,
    #: metadata.name, spec), compiled on construction by :mod:`contracts.trunk` and
    #: :mod:`contracts.dialplan`: one set of rules guards a manifest and a snapshot.
    #: Mappings do not hash: equal snapshots still hash equal without them.
    trunk_manifests: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)
    dial_plan_manifests: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)
    #: Trunk name → the password its provider knows (resolved from the Secret or file by
    #: whoever built the snapshot); the edge must answer the provider's challenges.
    trunk_passwords: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    _by_number: Mapping[str, Extension] = field(init=False, repr=False, compare=False)
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)
    _trunks: Mapping[str, Trunk] = field(init=False, repr=False, compare=False)
    _dial_plans: DialPlans = field(init=False, repr=False, compare=False)
    _dids: Mapping[str, Trunk] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = _str(self.name, "name")
        if len(name) > MAX_NAME_CHARS or _DNS_NAME.fullmatch(name) is None:
            raise SnapshotError("name", f"must be a lower-case DNS name, not {_shown(name)}")
        _matching(self.uid, "uid", _UID, f"at most {MAX_UID_CHARS} printable ASCII characters")
        _int(self.version, "version", 1, MAX_VERSION)
        _instance(self.limits, "limits", Limits)
        _instance(self.media, "media", MediaPolicy)
        _instance(self.billing, "billing", BillingPlan)
        if self.billing.trial and self.limits.max_concurrent_calls != 1:
            raise SnapshotError(
                "limits.max_concurrent_calls", "must be 1 on a trial plan (one call at a time)"
            )
        _bool(self.enabled, "enabled")
        object.__setattr__(self, "_hosts", self._checked_hosts())
        object.__setattr__(self, "_by_number", self._checked_extensions())
        self._compile_trunks_and_plans()

    @property
    def billing_id(self) -> str:
        """The tenant's key in the billing store (its account, rates, CDRs and ledger):
        the Tenant's UID when it has one (a cluster's), else its name (embedded
        manifests). A Tenant deleted and created again under the same name is a new
        object with a new UID, so it starts with a new account, and the deleted one's
        CDRs and ledger stay where they were, under the old UID."""
        return self.uid or self.name

    def _checked_hosts(self) -> frozenset[str]:
        hosts = {_host(self.domain, "domain")}
        for index, alias in enumerate(_tuple_of(self.aliases, "aliases", str, "a string")):
            if _host(alias, f"aliases[{index}]") in hosts:
                raise SnapshotError(f"aliases[{index}]", f"repeats host {_shown(alias)}")
            hosts.add(alias)
        return frozenset(hosts)

    def _checked_extensions(self) -> Mapping[str, Extension]:
        ceiling = self.limits.max_contacts_per_aor
        by_number: dict[str, Extension] = {}
        for index, extension in enumerate(
            _tuple_of(self.extensions, "extensions", Extension, "an Extension")
        ):
            if extension.number in by_number:
                raise SnapshotError(
                    f"extensions[{index}].number",
                    f"repeats extension number {_shown(extension.number)}",
                )
            if extension.max_contacts > ceiling:
                raise SnapshotError(
                    f"extensions[{index}].max_contacts",
                    f"must not exceed the tenant's contacts per extension ({ceiling})",
                )
            by_number[extension.number] = extension
        return by_number

    def _compile_trunks_and_plans(self) -> None:
        where = "trunk_manifests"
        try:
            trunks = compile_trunks(
                _tuple_of(self.trunk_manifests, where, dict, "an object"), tenant=self.name
            )
            where = "dial_plan_manifests"
            plans = compile_dial_plans(
                _tuple_of(self.dial_plan_manifests, where, dict, "an object"),
                tenant=self.name,
                trunks={trunk.name for trunk in trunks},
            )
        except ManifestError as exc:
            raise SnapshotError(where, str(exc)) from None
        _instance(self.trunk_passwords, "trunk_passwords", dict)
        by_name = {trunk.name: trunk for trunk in trunks}
        passwords: Mapping[str, object] = self.trunk_passwords  # unchecked until here
        for name, password in passwords.items():
            if name not in by_name:
                raise SnapshotError("trunk_passwords", f"names no trunk: {_shown(name)}")
            if not isinstance(password, str) or not password:
                raise SnapshotError(f"trunk_passwords.{name}", "must be a non-empty string")
        for name in by_name:
            if name not in self.trunk_passwords:
                raise SnapshotError("trunk_passwords", f"has none for trunk {_shown(name)}")
        dids = {did.lstrip("+"): trunk for trunk in trunks for did in trunk.dids}
        object.__setattr__(self, "_trunks", by_name)
        object.__setattr__(self, "_dial_plans", plans)
        object.__setattr__(self, "_dids", dids)

    @property
    def trunks(self) -> tuple[Trunk, ...]:
        """The tenant's trunks, by name."""
        return tuple(self._trunks.values())

    def trunk(self, name: str) -> Trunk | None:
        return self._trunks.get(name)

    def trunk_password(self, name: str) -> str:
        """The password of trunk ``name`` (every trunk of a snapshot has one)."""
        return self.trunk_passwords[name]

    def trunk_of_did(self, number: str) -> Trunk | None:
        """The trunk that routes DID ``number`` to this tenant (with or without ``+``)."""
        return self._dids.get(number.lstrip("+"))

    @property
    def dial_plans(self) -> DialPlans:
        """The tenant's dial plans, in the order they are tried."""
        return self._dial_plans

    @property
    def hosts(self) -> tuple[str, ...]:
        """The domain, then the aliases: every host this tenant answers for."""
        return (self.domain, *self.aliases)

    def extension(self, number: str) -> Extension | None:
        """The extension with this number, or None."""
        return self._by_number.get(number)

    def serves(self, host: str) -> bool:
        """True when ``host`` (any case, without port) is this tenant's domain or an alias."""
        return normalize_host(host) in self._hosts

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this snapshot (field names as in Python, lists for tuples)."""
        encoded: dict[str, Any] = _encode(self)
        return encoded

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, UTF-8 text; equal snapshots, equal text."""
        return json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> TenantSnapshot:
        """Decodes and validates; any fault raises :class:`SnapshotError` with its path."""
        return _decode_tenant(_parse_json(text))


# --- the codec -----------------------------------------------------------------------------


def _encode(value: object) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value) if f.init}
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    return value


def _parse_json(text: str | bytes) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except SnapshotError:
        raise
    except (ValueError, RecursionError) as exc:
        raise SnapshotError("", f"not valid JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise SnapshotError("", f"duplicate field {_shown(key)}")
        result[key] = value
    return result


def _no_constant(name: str) -> object:
    raise SnapshotError("", f"{name} is not a JSON number")


def _object_of(raw: object, path: str, kind: type[DataclassInstance]) -> dict[str, Any]:
    """``raw`` as keyword arguments for ``kind``: exactly its fields, none unknown or missing."""
    if not isinstance(raw, dict):
        raise SnapshotError(path, f"must be an object, not {_kind(raw)}")
    names = [f.name for f in fields(kind) if f.init]
    for key in raw:
        if key not in names:
            raise SnapshotError(join_path(path, key), "unknown field")
    for name in names:
        if name not in raw:
            raise SnapshotError(join_path(path, name), "missing field")
    return dict(raw)


def _list_of(raw: object, path: str) -> list[Any]:
    if not isinstance(raw, list):
        raise SnapshotError(path, f"must be a list, not {_kind(raw)}")
    return raw


def _built(kind: Callable[..., _T], path: str, values: dict[str, Any]) -> _T:
    try:
        return kind(**values)
    except SnapshotError as exc:
        raise exc.under(path) from None


def _decode_part(kind: type[_D], raw: object, path: str) -> _D:
    return _built(kind, path, _object_of(raw, path, kind))


def _decode_rate(raw: object, path: str) -> Rate:
    values = _object_of(raw, path, Rate)
    for name in ("per_minute_micros", "connect_fee_micros", "initial_s", "increment_s"):
        _int(values[name], join_path(path, name), 0, 2**63 - 1)
    for name in ("prefix", "name"):
        _str(values[name], join_path(path, name))
    try:
        return Rate(**values)
    except RatingError as exc:
        raise SnapshotError(join_path(path, exc.field), str(exc)) from None


def _decode_tenant(raw: object) -> TenantSnapshot:
    values = _object_of(raw, "", TenantSnapshot)
    values["aliases"] = tuple(_list_of(values["aliases"], "aliases"))
    values["extensions"] = tuple(
        _decode_part(Extension, item, f"extensions[{index}]")
        for index, item in enumerate(_list_of(values["extensions"], "extensions"))
    )
    values["limits"] = _decode_part(Limits, values["limits"], "limits")
    values["media"] = _decode_part(MediaPolicy, values["media"], "media")
    billing = _object_of(values["billing"], "billing", BillingPlan)
    billing["verified_numbers"] = tuple(
        _list_of(billing["verified_numbers"], "billing.verified_numbers")
    )
    billing["rates"] = tuple(
        _decode_rate(item, f"billing.rates[{index}]")
        for index, item in enumerate(_list_of(billing["rates"], "billing.rates"))
    )
    values["billing"] = _built(BillingPlan, "billing", billing)
    for name in ("trunk_manifests", "dial_plan_manifests"):
        values[name] = tuple(_list_of(values[name], name))
    return _built(TenantSnapshot, "", values)
