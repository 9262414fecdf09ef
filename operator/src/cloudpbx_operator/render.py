"""What a Tenant and its Trunks, DialPlans and Secrets should become, computed without I/O.

Owns the operator's decisions, as values:

* which extensions get generated SIP credentials: an extension that names no
  ``passwordSecretRef`` gets one in the tenant's own Secret, ``<tenant>-sip-credentials``,
  under its number (:func:`with_credential_refs`, :func:`missing_credentials`); the
  passwords themselves are drawn by the caller, and never pass through here as text to log;
* the snapshot (:func:`render_snapshot`): the same joining ``cloudpbx dev`` does
  (:func:`contracts.tenant_objects.compile_tenant_objects`), or a :class:`Problem` naming
  the object and field at fault — a bad spec is a status, never an exception for kopf;
* the status (:func:`tenant_status`, :func:`trunk_status`): Kubernetes-style conditions
  (type, status, reason, message, lastTransitionTime, observedGeneration) whose
  transition time only moves when the status does.

Pure: the clock comes in as ``now`` (RFC 3339 text), the objects as parsed JSON.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.manifest import ManifestError
from contracts.snapshot import TenantSnapshot
from contracts.tenant_objects import ObjectError, compile_tenant_objects
from contracts.trunk_status import TrunkStatus

GROUP = "cloudpbx.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
#: The key of a generated password in the credentials Secret is the extension's number.
CREDENTIALS_SUFFIX = "-sip-credentials"
#: Conditions' reasons (CamelCase, as Kubernetes spells them).
INVALID_SPEC = "InvalidSpec"
HOST_CONFLICT = "HostConflict"
NAME_CONFLICT = "NameConflict"
STORE_UNAVAILABLE = "StoreUnavailable"
NAMESPACE_NOT_SERVED = "NamespaceNotServed"


def credentials_secret(tenant: str) -> str:
    """The Secret holding the passwords the operator generated for ``tenant``."""
    return f"{tenant}{CREDENTIALS_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a tenant cannot be served: ``message`` names the object and the field;
    ``kind`` and ``name``, the Trunk or DialPlan at fault, when it is one of them."""

    reason: str
    message: str
    kind: str = ""
    name: str = ""


# --- credentials -----------------------------------------------------------------------------


def with_credential_refs(tenant: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the Tenant where each extension without ``passwordSecretRef`` refers to
    its number in the tenant's credentials Secret. Anything malformed is left as it is,
    for the compiler to name."""
    body = copy.deepcopy(dict(tenant))
    name = _name(body)
    spec = body.get("spec")
    extensions = spec.get("extensions") if isinstance(spec, dict) else None
    if name is None or not isinstance(extensions, list):
        return body
    for extension in extensions:
        if (
            isinstance(extension, dict)
            and "passwordSecretRef" not in extension
            and isinstance(extension.get("number"), str)
        ):
            extension["passwordSecretRef"] = {
                "name": credentials_secret(name),
                "key": extension["number"],
            }
    return body


def missing_credentials(
    tenant: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Numbers of the extensions whose generated password does not exist yet (``tenant``
    as :func:`with_credential_refs` gave it)."""
    name = _name(tenant)
    if name is None:
        return []
    own = credentials_secret(name)
    have = secrets.get(own, {})
    return [
        ref["key"]
        for ref in _secret_refs(tenant)
        if ref.get("name") == own and isinstance(ref.get("key"), str) and ref["key"] not in have
    ]


def secret_names(tenant: Mapping[str, Any], objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every Secret the Tenant's extensions and the Trunks refer to."""
    names = {ref.get("name") for ref in _secret_refs(tenant)}
    for body in objects:
        spec = body.get("spec")
        password = spec.get("password") if isinstance(spec, Mapping) else None
        ref = password.get("secretRef") if isinstance(password, Mapping) else None
        if isinstance(ref, Mapping):
            names.add(ref.get("name"))
    return {name for name in names if isinstance(name, str) and name}


def _secret_refs(tenant: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = tenant.get("spec")
    extensions = spec.get("extensions") if isinstance(spec, Mapping) else None
    if not isinstance(extensions, list):
        return []
    refs = (e.get("passwordSecretRef") for e in extensions if isinstance(e, Mapping))
    return [ref for ref in refs if isinstance(ref, Mapping)]


# --- the snapshot ----------------------------------------------------------------------------


def render_snapshot(
    tenant: Mapping[str, Any],
    trunks: Sequence[Mapping[str, Any]],
    dial_plans: Sequence[Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, str]],
) -> TenantSnapshot | Problem:
    """The tenant's snapshot (as ``cloudpbx dev`` would compile the same objects, its
    version left for the publisher), or the problem naming the object and field."""
    try:
        return compile_tenant_objects(tenant, trunks, dial_plans, secrets)
    except ObjectError as exc:
        return Problem(INVALID_SPEC, describe(exc), exc.kind, exc.name or "")
    except ManifestError as exc:
        return Problem(INVALID_SPEC, f"Tenant {_name(tenant)}: {exc}")


def describe(error: ObjectError) -> str:
    """``Trunk carrier-a spec.password.secretRef.name: Secret 'x' not found``."""
    if error.index is None or error.path.startswith(f"{error.kind} "):
        return str(error)
    return f"{error.kind} {error.name}: {error}"


def tenant_objects(objects: Iterable[Mapping[str, Any]], tenant: str) -> list[Mapping[str, Any]]:
    """The objects (Trunks or DialPlans of one namespace) whose ``spec.tenant`` is ``tenant``."""
    return [
        body
        for body in objects
        if isinstance(spec := body.get("spec"), Mapping) and spec.get("tenant") == tenant
    ]


# --- status ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    #: None: ``Unknown``.
    status: bool | None
    reason: str
    message: str


def conditions(
    previous: object, wanted: Sequence[Condition], *, generation: int, now: str
) -> list[dict[str, Any]]:
    """``wanted`` as Kubernetes conditions; each keeps its ``lastTransitionTime`` from
    ``previous`` (the status's current list) while its status stays the same."""
    before: dict[str, Mapping[str, Any]] = {}
    if isinstance(previous, list):
        for item in previous:
            if isinstance(item, Mapping) and isinstance(item.get("type"), str):
                before[item["type"]] = item
    result = []
    for condition in wanted:
        status = {True: "True", False: "False", None: "Unknown"}[condition.status]
        old = before.get(condition.type, {})
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        result.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": since if isinstance(since, str) else now,
                "observedGeneration": generation,
            }
        )
    return result


def tenant_status(
    tenant: Mapping[str, Any],
    outcome: TenantSnapshot | Problem,
    *,
    provisioned: Condition,
    version: int | None,
    now: str,
) -> dict[str, Any]:
    """The Tenant's ``status`` (the shape the chart's CRD declares): conditions ``Ready``
    and ``Provisioned``, the generation they describe, and what is served (domain, counts,
    snapshot version). With a problem, what was served before stays in the status (a merge
    patch leaves it), as it stays in Redis."""
    generation = _generation(tenant)
    status: dict[str, Any] = {"observedGeneration": generation}
    if isinstance(outcome, Problem):
        ready = Condition("Ready", False, outcome.reason, outcome.message)
    else:
        snapshot = outcome
        hosts = ", ".join(snapshot.hosts)
        ready = Condition(
            "Ready",
            version is not None,
            "Published" if version is not None else "Pending",
            f"snapshot version {version} serves {hosts}" if version is not None else "",
        )
        status |= {
            "domain": snapshot.domain,
            "counts": {
                "extensions": len(snapshot.extensions),
                "aliases": len(snapshot.aliases),
                "trunks": len(snapshot.trunks),
                "dialPlans": len(snapshot.dial_plans.plans),
            },
        }
        if version is not None:
            status["snapshotVersion"] = version
    previous = tenant.get("status")
    old = previous.get("conditions") if isinstance(previous, Mapping) else None
    status["conditions"] = conditions(old, [ready, provisioned], generation=generation, now=now)
    return status


def outage_status(tenant: Mapping[str, Any], message: str, *, now: str) -> dict[str, Any]:
    """The Tenant's status when a store is out of reach: ``Ready=False`` (reason
    ``StoreUnavailable``); the rest as it was (what the edges serve has not changed)."""
    previous = tenant.get("status")
    status = dict(previous) if isinstance(previous, Mapping) else {}
    old = status.get("conditions")
    others = [
        Condition(c["type"], c.get("status") == "True", c.get("reason", ""), c.get("message", ""))
        for c in (old if isinstance(old, list) else [])
        if isinstance(c, Mapping) and isinstance(c.get("type"), str) and c["type"] != "Ready"
    ]
    ready = Condition("Ready", False, STORE_UNAVAILABLE, message)
    generation = _generation(tenant)
    status["conditions"] = conditions(old, [ready, *others], generation=generation, now=now)
    return status


def dial_plan_status(
    plan: Mapping[str, Any],
    outcome: TenantSnapshot | Problem | None,
    *,
    version: int | None,
    now: str,
) -> dict[str, Any]:
    """A DialPlan's ``status``: ``Ready`` when its tenant's snapshot with it is published
    (and how many rules it compiled to), else why not: the plan's own fault, its
    tenant's (another object's), or no such Tenant (``outcome`` None)."""
    name, tenant = _name(plan) or "", plan.get("spec", {}).get("tenant", "")
    status: dict[str, Any] = {"observedGeneration": _generation(plan)}
    if outcome is None:
        ready = Condition("Ready", False, "TenantNotFound", f"no Tenant {tenant} here")
    elif isinstance(outcome, Problem):
        own = outcome.kind == "DialPlan" and outcome.name == name
        reason = outcome.reason if own else "TenantNotReady"
        message = outcome.message if own else f"Tenant {tenant}: {outcome.message}"
        ready = Condition("Ready", False, reason, message)
    elif version is None:
        ready = Condition("Ready", None, "Pending", f"Tenant {tenant} is not published yet")
    else:
        compiled = {p.name: p for p in outcome.dial_plans.plans}.get(name)
        status["rules"] = len(compiled.rules) if compiled is not None else 0
        ready = Condition(
            "Ready", True, "Published", f"in Tenant {tenant}'s snapshot version {version}"
        )
    previous = plan.get("status")
    old = previous.get("conditions") if isinstance(previous, Mapping) else None
    status["conditions"] = conditions(
        old, [ready], generation=status["observedGeneration"], now=now
    )
    return status


def trunk_status(
    trunk: Mapping[str, Any], reported: str | bytes | None, *, now: str
) -> dict[str, Any]:
    """The Trunk's ``status``: the registration its holder (an edge) reports in Redis, and
    a ``Ready`` condition (registered, or not registering by design). A missing or
    unreadable report means nobody holds it: the registration's fields are cleared (None,
    for the merge patch) and Ready is ``Unknown``."""
    try:
        found = TrunkStatus.from_json(reported) if reported is not None else None
    except ValueError:
        found = None
    if found is None:
        registration: dict[str, Any] = dict.fromkeys(REGISTRATION_FIELDS)
        ready = Condition("Ready", None, "NoHolder", "no edge reports this trunk's registration")
    else:
        registration = {
            "state": found.state,
            "lastStatusCode": found.status,
            "lastReason": found.reason,
            "failures": found.failures,
            "holder": found.holder,
            "updatedAt": rfc3339(found.updated_at),
        }
        detail = f"{found.status} {found.reason}".strip() if found.status else "no answer yet"
        usable = found.state in ("Registered", "Disabled")  # Disabled: it does not register
        ready = Condition(
            "Ready", usable, found.state, f"{found.state} by {found.holder}: {detail}"
        )
    previous = trunk.get("status")
    old = previous.get("conditions") if isinstance(previous, Mapping) else None
    generation = _generation(trunk)
    return {
        "observedGeneration": generation,
        "registration": registration,
        "conditions": conditions(old, [ready], generation=generation, now=now),
    }


#: What a Trunk's ``status.registration`` holds (the chart's CRD).
REGISTRATION_FIELDS = ("state", "lastStatusCode", "lastReason", "failures", "holder", "updatedAt")


def merged(current: object, patch: object) -> Any:
    """``current`` after the JSON merge patch ``patch`` (RFC 7386): None removes a key.
    Tells whether a status patch would change anything."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(current) if isinstance(current, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


def without_times(status: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` without what changes on its own (``updatedAt``, renewed with every lease
    renewal), to tell a change worth writing."""
    result = dict(status)
    registration = result.get("registration")
    if isinstance(registration, Mapping):
        result["registration"] = {k: v for k, v in registration.items() if k != "updatedAt"}
    return result


def rfc3339(epoch_s: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dedicated(tenant: Mapping[str, Any]) -> bool:
    """Whether the Tenant asks for an edge of its own (``spec.isolation: dedicated``)."""
    spec = tenant.get("spec")
    return isinstance(spec, Mapping) and spec.get("isolation") == "dedicated"


def _name(body: Mapping[str, Any]) -> str | None:
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else None


def _generation(body: Mapping[str, Any]) -> int:
    metadata = body.get("metadata")
    generation = metadata.get("generation") if isinstance(metadata, Mapping) else None
    return generation if isinstance(generation, int) else 0
