"""Joins a Tenant with its ``Trunk`` and ``DialPlan`` objects into one TenantSnapshot.

The one rule for both readers of those objects: the operator (objects from the API
server, Secrets from the cluster) and ``cloudpbx dev`` (documents in a folder), so the same
objects give the same snapshot, byte for byte. Each trunk gets its password resolved
(``spec.password.secretRef`` from the Secrets; ``spec.password.file`` only where the caller
can read files beside the manifests, i.e. the dev folder — elsewhere it is refused); the
snapshot keeps of each object its apiVersion, kind, name and spec (:func:`plain`), trunks
and plans each in name order, whatever order they were listed in.

A fault raises :class:`ObjectError`, which says which of the given objects is at fault
(its kind and position; no position when the fault lies across objects, such as a DID
routed by two trunks) and never shows a password. Pure: no I/O.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from contracts import dialplan, trunk
from contracts.manifest import compile_tenant
from contracts.resources import ManifestError
from contracts.snapshot import SnapshotError, TenantSnapshot

#: Reads the password file a dev-folder trunk names; raises ValueError saying why it cannot.
PasswordFileReader = Callable[[str], str]


class ObjectError(ManifestError):
    """A Trunk or DialPlan the snapshot cannot take.

    ``kind`` is ``Trunk`` or ``DialPlan``; ``index`` the object's position in the list
    given (None when the fault lies across objects: ``message`` then names them); ``name``
    its metadata.name when it has one; ``path`` the field within it.
    """

    def __init__(
        self, kind: str, index: int | None, name: str | None, path: str, message: str
    ) -> None:
        super().__init__(path, message)
        self.kind = kind
        self.index = index
        self.name = name


def compile_tenant_objects(
    tenant: Mapping[str, Any],
    trunks: Sequence[Mapping[str, Any]],
    dial_plans: Sequence[Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, str]],
    *,
    read_password_file: PasswordFileReader | None = None,
) -> TenantSnapshot:
    """The snapshot of a Tenant manifest with its Trunks and DialPlans; ``secrets`` maps
    Secret name → values (stringData). A Tenant fault raises ManifestError, a Trunk or
    DialPlan fault :class:`ObjectError`."""
    snapshot = compile_tenant(tenant, secrets)
    return attach_objects(
        snapshot, trunks, dial_plans, secrets, read_password_file=read_password_file
    )


def attach_objects(
    snapshot: TenantSnapshot,
    trunks: Sequence[Mapping[str, Any]],
    dial_plans: Sequence[Mapping[str, Any]],
    secrets: Mapping[str, Mapping[str, str]],
    *,
    read_password_file: PasswordFileReader | None = None,
) -> TenantSnapshot:
    """``snapshot`` with the tenant's trunks (and their passwords) and dial plans."""
    passwords: dict[str, str] = {}
    for index, body in enumerate(trunks):
        name = object_name(body)
        try:
            compiled = trunk.compile_trunk(body, tenant=snapshot.name)
        except ManifestError as exc:
            raise ObjectError(trunk.KIND, index, name, exc.path, exc.message) from None
        if compiled.name in passwords:
            raise ObjectError(
                trunk.KIND,
                index,
                name,
                "metadata.name",
                f"Trunk {compiled.name!r} is defined twice",
            )
        passwords[compiled.name] = _password(
            compiled.password, secrets, read_password_file, index, name
        )
    try:
        dialplan.compile_dial_plans(dial_plans, tenant=snapshot.name, trunks=set(passwords))
    except ManifestError as exc:  # its path names the plan at fault (when it is one)
        at_fault = _PLAN_IN_PATH.match(exc.path)
        name = at_fault.group(1) if at_fault is not None else None
        raise ObjectError(dialplan.KIND, None, name, "", str(exc)) from None
    try:
        return replace(
            snapshot,
            trunk_manifests=_in_name_order(trunks),
            dial_plan_manifests=_in_name_order(dial_plans),
            trunk_passwords=passwords,
        )
    except SnapshotError as exc:  # across objects: a DID routed by two trunks
        kind = dialplan.KIND if exc.path.startswith("dial_plan") else trunk.KIND
        raise ObjectError(kind, None, None, "", exc.message) from None


#: ``DialPlan out, rule 'pstn' match.regex``: the plan a dial-plan fault is in.
_PLAN_IN_PATH = re.compile(rf"{dialplan.KIND} ([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\b")


def _password(
    ref: trunk.SecretRef | trunk.PasswordFile,
    secrets: Mapping[str, Mapping[str, str]],
    read_password_file: PasswordFileReader | None,
    index: int,
    name: str | None,
) -> str:
    where = "spec.password"

    def fault(path: str, message: str) -> ObjectError:
        return ObjectError(trunk.KIND, index, name, path, message)

    if isinstance(ref, trunk.SecretRef):
        secret = secrets.get(ref.name)
        if secret is None:
            raise fault(f"{where}.secretRef.name", f"Secret {ref.name!r} not found")
        password: object = secret.get(ref.key)
        if password is None:
            raise fault(f"{where}.secretRef.key", f"Secret {ref.name!r} has no key {ref.key!r}")
    elif read_password_file is None:
        raise fault(f"{where}.file", "is for cloudpbx dev only; in a cluster use secretRef")
    else:
        try:
            password = read_password_file(ref.name)
        except ValueError as exc:
            raise fault(f"{where}.file", str(exc)) from None
    if not isinstance(password, str) or not password:
        raise fault(where, "the password is empty")
    return password


def object_name(body: Mapping[str, Any]) -> str | None:
    """The object's metadata.name when it is a string."""
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else None


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a snapshot keeps of a manifest: its type, its name and its spec."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {"name": object_name(body)},
        "spec": copy.deepcopy(body.get("spec")),
    }


def _in_name_order(bodies: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Compiled objects all have names (DNS labels), so the order is total."""
    return tuple(sorted((plain(body) for body in bodies), key=lambda p: p["metadata"]["name"]))
