"""The Redis key layout shared by the operator and the SIP edge: the one home of every name.

Every key starts with ``cloudpbx:v1:``; a change of layout or of a value's format is a new
schema segment (``v2``), never a silent edit. ``{t}`` below is the escaped tenant name in
braces: a Redis Cluster hash tag, so that all of one tenant's keys live in one slot and a
Lua script or MULTI may span them::

    cloudpbx:v1:domains              hash     host → tenant name (hosts as
                                              contracts.snapshot.normalize_host gives them)
    cloudpbx:v1:snapshots            pub/sub  "<t> <version>" after each snapshot write
    cloudpbx:v1:{t}:snapshot         string   TenantSnapshot.to_json()
    cloudpbx:v1:{t}:bindings:<aor>   (registrar) the location bindings of one AOR
    cloudpbx:v1:{t}:dialog:<callid>  (calls) the state of one dialog
    cloudpbx:v1:{t}:bindings-index   zset     every binding of the tenant, by expiry
    cloudpbx:v1:{t}:bindings-nat     zset     the bindings needing NAT keep-alives
    cloudpbx:v1:{t}:active-calls     set      A-leg Call-IDs of the calls in progress
    cloudpbx:v1:{t}:trunk-lease:<n>  string   the edge process registering trunk <n>
    cloudpbx:v1:{t}:trunk-status:<n> string   contracts.trunk_status.TrunkStatus JSON,
                                              written by that edge, with a TTL

The operator writes the snapshot, updates the domain index, then publishes a notice; an
edge that reads a notice GETs the snapshot key (a missing key means the tenant is gone)
and keeps it when its version is higher than the one it holds. The notice only says
"look again", so a lost or reordered notice costs a delay, never a wrong answer.

Escaping: every variable part is percent-encoded (RFC 3986 §2.1, UTF-8, lone surrogates
passed through) leaving only letters, digits and ``-._~@+``. No part can then hold ``:``,
``{``, ``}``, a space or a glob character, and as ``%`` itself is encoded the encoding is
one-to-one: ``("a", "b:c")`` and ``("a:b", "c")`` give different keys, and a caller's
Call-ID or AOR can never reach into another tenant's keys.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

#: Bumped when the layout or a stored value's format changes incompatibly.
SCHEMA_VERSION = 1
PREFIX = f"cloudpbx:v{SCHEMA_VERSION}:"
#: Pub/sub channel where the operator announces a new snapshot (see :func:`snapshot_notice`).
SNAPSHOT_CHANNEL = f"{PREFIX}snapshots"

_SAFE = "-._~@+"  # letters and digits are always safe for quote()
_ENCODING = "utf-8"
_ERRORS = "surrogatepass"


def escape(part: str) -> str:
    """``part`` percent-encoded, safe to sit between two ``:`` of a key; empty is refused."""
    if not part:
        raise ValueError("a key part must not be empty")
    return quote(part, safe=_SAFE, encoding=_ENCODING, errors=_ERRORS)


def unescape(part: str) -> str:
    """The inverse of :func:`escape`."""
    return unquote(part, encoding=_ENCODING, errors=_ERRORS)


def _tenant_prefix(tenant: str) -> str:
    return f"{PREFIX}{{{escape(tenant)}}}:"


def domain_index_key() -> str:
    """Hash mapping every served host (domain or alias, normalized) to its tenant's name."""
    return f"{PREFIX}domains"


def snapshot_key(tenant: str) -> str:
    """String holding the tenant's current ``TenantSnapshot`` JSON."""
    return f"{_tenant_prefix(tenant)}snapshot"


def bindings_key(tenant: str, aor: str) -> str:
    """The registrar's location bindings of one address-of-record (RFC 3261 §10.3)."""
    return f"{_tenant_prefix(tenant)}bindings:{escape(aor)}"


def dialog_key(tenant: str, call_id: str) -> str:
    """The state of one dialog, keyed by its Call-ID (RFC 3261 §12)."""
    return f"{_tenant_prefix(tenant)}dialog:{escape(call_id)}"


def bindings_index_key(tenant: str) -> str:
    """Sorted set of ``[aor, contact]`` members scored by expiry: the tenant's bindings."""
    return f"{_tenant_prefix(tenant)}bindings-index"


def nat_bindings_key(tenant: str) -> str:
    """Sorted set like :func:`bindings_index_key`, of bindings needing keep-alives."""
    return f"{_tenant_prefix(tenant)}bindings-nat"


def active_calls_key(tenant: str) -> str:
    """Set of the A-leg Call-IDs of the tenant's calls in progress (the gauge's count)."""
    return f"{_tenant_prefix(tenant)}active-calls"


def call_slots_key(tenant: str) -> str:
    """Sorted set of the A-leg Call-IDs holding one of the tenant's concurrent-call slots
    (set-up and answered calls), each scored by when it lapses unless renewed (epoch s)."""
    return f"{_tenant_prefix(tenant)}call-slots"


def trunk_channels_key(tenant: str, trunk: str) -> str:
    """Sorted set like :func:`call_slots_key`, of the A-leg Call-IDs holding one of the
    trunk's channels (its ``maxChannels``, calls in and out)."""
    return f"{_tenant_prefix(tenant)}trunk-channels:{escape(trunk)}"


def trunk_lease_key(tenant: str, trunk: str) -> str:
    """String: the edge process that holds the trunk's registration (its lease, with a
    TTL it renews; sipedge.leases)."""
    return f"{_tenant_prefix(tenant)}trunk-lease:{escape(trunk)}"


def trunk_status_key(tenant: str, trunk: str) -> str:
    """String: the trunk's registration status as its lease holder last wrote it
    (``contracts.trunk_status.TrunkStatus`` JSON), with a TTL a few times the holder's
    renew interval, so that a dead holder's status lapses instead of lying."""
    return f"{_tenant_prefix(tenant)}trunk-status:{escape(trunk)}"


def trial_seconds_key(tenant: str, day: str) -> str:
    """Integer: seconds of calls a trial tenant had on ``day`` (``2026-11-26``, UTC)."""
    return f"{_tenant_prefix(tenant)}trial-seconds:{day}"


def tenant_key_pattern(tenant: str) -> str:
    """SCAN ``MATCH`` pattern for every key of one tenant (cleanup when it is deleted).

    The escaped name holds no glob character, so the pattern matches that tenant only.
    """
    return f"{_tenant_prefix(tenant)}*"


def snapshot_notice(tenant: str, version: int) -> str:
    """The message published on :data:`SNAPSHOT_CHANNEL`: ``"<escaped tenant> <version>"``."""
    if isinstance(version, bool) or version < 1:
        raise ValueError(f"a snapshot version is a positive integer, not {version!r}")
    return f"{escape(tenant)} {version}"


def parse_snapshot_notice(message: str | bytes) -> tuple[str, int]:
    """``(tenant, version)`` from a notice; ValueError when it is not one."""
    text = message.decode("ascii") if isinstance(message, bytes) else message
    tenant, _, version = text.partition(" ")
    if not tenant or not version.isascii() or not version.isdigit() or int(version) < 1:
        raise ValueError(f"not a snapshot notice: {text[:80]!r}")
    return unescape(tenant), int(version)
