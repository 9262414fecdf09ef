"""The edge's tenant directory, and the manifest-folder loader that fills it in ``cloudpbx dev``.

Owns two things:

* :func:`load_manifest_folder`: the embedded default of the Kubernetes API (DESIGN
  "Stores"). It reads every ``*.yaml`` / ``*.yml`` in a folder, in name order, as
  ``kubectl apply -f`` would: ``Secret`` documents (``stringData``, or base64 ``data``;
  ``stringData`` wins, as in Kubernetes), ``Tenant`` documents, which it compiles with
  the operator's compiler, :func:`contracts.manifest.compile_tenant`, and the ``Trunk``
  and ``DialPlan`` documents that name a tenant, which go into its snapshot with each
  trunk's password (from its Secret, or from the file beside the manifests that
  ``password.file`` names) as the operator joins them,
  :func:`contracts.tenant_objects.attach_objects`. Other kinds are skipped. Every fault
  names the file, the document and the field, and never shows a password.
* :class:`TenantDirectory`: the snapshots an edge serves, looked up by the host a request
  names (domain or alias, any case) in one dict lookup. Newer versions replace older
  ones; a stale one is ignored. A disabled tenant is still found: refusing its phones
  with a reason is the caller's business.

Pure: no asyncio, no store. Fed from the folder in ``cloudpbx dev`` and from the Redis
snapshots (:mod:`contracts.keys`) in a cluster.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from contracts import dialplan, trunk
from contracts.manifest import KIND, ManifestError, compile_tenant
from contracts.snapshot import TenantSnapshot, normalize_host
from contracts.tenant_objects import ObjectError, attach_objects, object_name

MANIFEST_SUFFIXES = (".yaml", ".yml")
#: libyaml's safe loader when PyYAML was built with it: a 10,000-extension tenant loads in
#: well under a second instead of about ten with the pure-Python one.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def demo_manifests() -> Traversable:
    """The folder of manifests shipped in this package: the ``demo`` tenant (demo only)."""
    return files("sipedge") / "manifests"


class ManifestFolderError(Exception):
    """A manifest folder that cannot be served: says which file, document and field."""

    def __init__(self, file: str, message: str, *, document: int = 0, path: str = "") -> None:
        where = file + (f" (document {document})" if document else "")
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")
        self.file = file
        self.document = document
        self.path = path
        self.message = message


class TenantConflict(ValueError):
    """A snapshot claims a host that another tenant (``owner``) already serves."""

    def __init__(self, message: str, owner: str = "") -> None:
        super().__init__(message)
        self.owner = owner


@dataclass(frozen=True, slots=True)
class _Document:
    file: str
    #: 1-based position in its file, counting empty documents too.
    index: int
    body: Mapping[str, Any]

    def error(self, message: str, path: str = "") -> ManifestFolderError:
        return ManifestFolderError(self.file, message, document=self.index, path=path)


# --- the loader ------------------------------------------------------------------------------


def load_manifest_folder(folder: str | os.PathLike[str] | Traversable) -> list[TenantSnapshot]:
    """Compiles every Tenant in ``folder`` (not its subfolders), in file-name order."""
    root = Path(folder) if isinstance(folder, str | os.PathLike) else folder
    if not root.is_dir():
        raise ManifestFolderError(str(root), "is not a folder")
    entries = sorted(
        (entry for entry in root.iterdir() if _is_manifest(entry)), key=lambda e: e.name
    )
    documents = [document for entry in entries for document in _read(entry)]
    secrets = _secrets(document for document in documents if _kind(document) == "Secret")
    compiled = [
        (document, _compile(document, secrets)) for document in documents if _kind(document) == KIND
    ]
    _check_unique(compiled)
    beside = _Beside(documents, secrets, root)
    beside.check_owners(snapshot for _, snapshot in compiled)
    return [beside.attach(document, snapshot) for document, snapshot in compiled]


def folder_state(folder: str | os.PathLike[str]) -> tuple[tuple[str, int, int], ...]:
    """What changes when a file in ``folder`` is edited, added or removed: each file's
    name, modification time (ns) and size (empty when the folder cannot be read)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return ()
    state = []
    for entry in entries:
        try:
            stat = entry.stat()
        except OSError:
            continue
        state.append((entry.name, stat.st_mtime_ns, stat.st_size))
    return tuple(state)


def _is_manifest(entry: Traversable) -> bool:
    return (
        entry.is_file()
        and entry.name.endswith(MANIFEST_SUFFIXES)
        and not entry.name.startswith(".")
    )


def _read(entry: Traversable) -> list[_Document]:
    file = str(entry)
    try:
        loaded = list(yaml.load_all(entry.read_text(encoding="utf-8"), Loader=_SafeLoader))
    except UnicodeDecodeError:
        raise ManifestFolderError(file, "is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        # The exception's own text quotes the offending line, which may hold a password.
        raise ManifestFolderError(file, _yaml_problem(exc)) from None
    documents = []
    for index, body in enumerate(loaded, start=1):
        if body is None:
            continue
        if not isinstance(body, Mapping):
            raise ManifestFolderError(file, "must be a mapping", document=index)
        documents.append(_Document(file, index, body))
    return documents


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({exc.problem})"
    return "not valid YAML"


def _kind(document: _Document) -> object:
    return document.body.get("kind")


def _compile(document: _Document, secrets: Mapping[str, Mapping[str, str]]) -> TenantSnapshot:
    try:
        return compile_tenant(document.body, secrets)
    except ManifestError as exc:
        raise document.error(exc.message, exc.path) from None


class _Beside:
    """The Trunk and DialPlan documents of the folder, put into their tenants' snapshots."""

    def __init__(
        self,
        documents: list[_Document],
        secrets: Mapping[str, Mapping[str, str]],
        root: Path | Traversable,
    ) -> None:
        self.secrets = secrets
        self.root = root
        self.by_tenant: dict[str, list[_Document]] = {}
        kinds = (trunk.KIND, dialplan.KIND)
        for document in documents:
            if _kind(document) in kinds:
                spec = document.body.get("spec")
                owner = spec.get("tenant") if isinstance(spec, Mapping) else None
                if not isinstance(owner, str):
                    raise document.error("must name its tenant", "spec.tenant")
                self.by_tenant.setdefault(owner, []).append(document)

    def check_owners(self, tenants: Iterable[TenantSnapshot]) -> None:
        """A Trunk or DialPlan for a tenant the folder does not define is a mistake."""
        known = {snapshot.name for snapshot in tenants}
        for owner, documents in self.by_tenant.items():
            if owner not in known:
                raise documents[0].error(f"Tenant {owner!r} is not defined", "spec.tenant")

    def attach(self, tenant: _Document, snapshot: TenantSnapshot) -> TenantSnapshot:
        mine = self.by_tenant.get(snapshot.name, [])
        documents = {
            kind: [d for d in mine if _kind(d) == kind] for kind in (trunk.KIND, dialplan.KIND)
        }
        try:
            return attach_objects(
                snapshot,
                [d.body for d in documents[trunk.KIND]],
                [d.body for d in documents[dialplan.KIND]],
                self.secrets,
                read_password_file=self._read_password_file,
            )
        except ObjectError as exc:
            mistaken = documents[exc.kind]
            if exc.index is not None:
                raise mistaken[exc.index].error(exc.message, exc.path) from None
            raise _named(mistaken, exc.message, tenant) from None

    def _read_password_file(self, name: str) -> str:
        entry = self.root / name
        if not entry.is_file():
            raise ValueError(f"no file {name!r} beside the manifests")
        try:
            return entry.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError):
            raise ValueError(f"file {name!r} is not UTF-8 text") from None


def _named(documents: list[_Document], text: str, fallback: _Document) -> ManifestFolderError:
    """The error ``text``, at the document it names first (``Trunk carrier-b spec...``)."""
    found: list[tuple[int, _Document]] = []
    for document in documents:
        name = object_name(document.body)
        at = text.find(f"{_kind(document)} {name}") if name is not None else -1
        if at >= 0:
            found.append((at, document))
    if found:
        return min(found, key=lambda pair: pair[0])[1].error(text)
    return fallback.error(text)


def _check_unique(compiled: list[tuple[_Document, TenantSnapshot]]) -> None:
    """No two Tenants share a name, and no host belongs to two of them."""
    names: dict[str, _Document] = {}
    hosts: dict[str, _Document] = {}
    for document, snapshot in compiled:
        if snapshot.name in names:
            first = names[snapshot.name]
            message = f"Tenant {snapshot.name!r} is also defined in {first.file}"
            raise document.error(message, "metadata.name")
        names[snapshot.name] = document
        for index, host in enumerate(snapshot.hosts):
            if host in hosts:
                path = "spec.domain" if index == 0 else f"spec.aliases[{index - 1}]"
                raise document.error(f"host {host!r} is also served by {hosts[host].file}", path)
            hosts[host] = document


# --- Secrets ---------------------------------------------------------------------------------


def _secrets(documents: Iterable[_Document]) -> dict[str, dict[str, str]]:
    """Secret name → its values as text (data decoded, then stringData over it)."""
    secrets: dict[str, dict[str, str]] = {}
    for document in documents:
        metadata = document.body.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(name, str) or not name:
            raise document.error("must be a non-empty string", "metadata.name")
        if name in secrets:
            raise document.error(f"Secret {name!r} is defined twice", "metadata.name")
        secrets[name] = _secret_values(document, "data") | _secret_values(document, "stringData")
    return secrets


def _secret_values(document: _Document, field: str) -> dict[str, str]:
    section = document.body.get(field)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise document.error("must be a mapping", field)
    values: dict[str, str] = {}
    for key, value in section.items():
        path = f"{field}.{key}"
        if not isinstance(value, str):
            raise document.error("must be a string (quote it)", path)
        values[str(key)] = _decoded(value, document, path) if field == "data" else value
    return values


def _decoded(value: str, document: _Document, path: str) -> str:
    """A Secret's ``data`` value: base64 of UTF-8 text."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise document.error("must be base64 of UTF-8 text", path) from None


# --- the directory ---------------------------------------------------------------------------


class TenantDirectory:
    """The tenants one edge serves, by name and by every host they answer for."""

    __slots__ = ("_by_host", "_by_name")

    def __init__(self, snapshots: Iterable[TenantSnapshot] = ()) -> None:
        self._by_name: dict[str, TenantSnapshot] = {}
        self._by_host: dict[str, TenantSnapshot] = {}
        for snapshot in snapshots:
            self.replace(snapshot)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[TenantSnapshot]:
        return iter(list(self._by_name.values()))

    def by_host(self, host: str) -> TenantSnapshot | None:
        """The tenant whose domain or alias is ``host`` (any case, without port), or None."""
        return self._by_host.get(normalize_host(host))

    def by_name(self, name: str) -> TenantSnapshot | None:
        return self._by_name.get(name)

    def replace(self, snapshot: TenantSnapshot) -> bool:
        """Serves ``snapshot`` unless one of the same tenant with an equal or newer version is
        already served; True when it was taken.

        Raises :class:`TenantConflict` (and changes nothing) when another tenant serves one
        of its hosts.
        """
        current = self._by_name.get(snapshot.name)
        if current is not None and snapshot.version <= current.version:
            return False
        for host in snapshot.hosts:
            owner = self._by_host.get(host)
            if owner is not None and owner.name != snapshot.name:
                raise TenantConflict(
                    f"host {host!r} of tenant {snapshot.name!r} is served by {owner.name!r}",
                    owner.name,
                )
        self._forget(current)
        self._by_name[snapshot.name] = snapshot
        self._by_host.update(dict.fromkeys(snapshot.hosts, snapshot))
        return True

    def reload(self, snapshots: Iterable[TenantSnapshot]) -> None:
        """Serve exactly ``snapshots`` (a manifest folder read again: it is the truth,
        whatever the versions say). Raises :class:`TenantConflict`, changing nothing,
        when two of them claim one host."""
        fresh = TenantDirectory(snapshots)
        self._by_name, self._by_host = fresh._by_name, fresh._by_host

    def remove(self, name: str) -> TenantSnapshot | None:
        """Stops serving tenant ``name``; returns the snapshot it served, if any."""
        snapshot = self._by_name.pop(name, None)
        self._forget(snapshot)
        return snapshot

    def _forget(self, snapshot: TenantSnapshot | None) -> None:
        if snapshot is not None:
            for host in snapshot.hosts:
                del self._by_host[host]
