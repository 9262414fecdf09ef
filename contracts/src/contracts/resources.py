"""What every ``cloudpbx.io/v1`` manifest kind beside ``Tenant`` (``Trunk``,
``DialPlan``) checks the same way: its apiVersion and kind, its name (a DNS label, as
Kubernetes names objects), its tenant, and the shape of its fields. Every problem is a
:class:`ManifestError` whose ``path`` names the object and field
(``Trunk carrier-a spec.port``). Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

API_VERSION = "cloudpbx.io/v1"
#: A Kubernetes object name that is also a DNS label (RFC 1123).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class ManifestError(ValueError):
    """A manifest the platform cannot serve; ``path`` names the field (``spec.domain``).

    ``path`` is empty when the document as a whole is at fault.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def named_spec(
    manifest: Mapping[str, Any], kind: str, tenant: str
) -> tuple[str, Mapping[str, Any]]:
    """The object's name and its spec, once its apiVersion, kind, name and tenant
    (``spec.tenant``) are what they must be."""
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != kind:
        raise ManifestError(
            kind, f"apiVersion/kind must be {API_VERSION}/{kind}, not "
            f"{manifest.get('apiVersion')!r}/{manifest.get('kind')!r}",
        )  # fmt: skip
    metadata = mapping(manifest.get("metadata"), f"{kind} metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not DNS_LABEL.fullmatch(name):
        raise ManifestError(f"{kind} metadata.name", f"must be a DNS label, not {name!r}")
    spec = mapping(manifest.get("spec"), f"{kind} {name} spec")
    if spec.get("tenant") != tenant:
        raise ManifestError(
            f"{kind} {name} spec.tenant", f"must be {tenant!r}, not {spec.get('tenant')!r}"
        )
    return name, spec


def mapping(value: object, path: str, keys: Collection[str] | None = None) -> Mapping[str, Any]:
    """``value`` as a mapping, with no fields but ``keys`` when given."""
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be a mapping, not {type(value).__name__}")
    if keys is not None:
        unknown = sorted(str(key) for key in value if key not in keys)
        if unknown:
            raise ManifestError(path, f"unknown fields {unknown} (known: {sorted(keys)})")
    return value


def sequence(value: object, path: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise ManifestError(path, f"must be a list, not {type(value).__name__}")
    return value


def count(value: object, path: str) -> int:
    """A whole number >= 0 (not a bool)."""
    if type(value) is not int or value < 0:
        raise ManifestError(path, f"must be a whole number >= 0, not {value!r}")
    return value
