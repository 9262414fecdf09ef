"""The few Kubernetes API calls the operator makes beside kopf's own watching: read the
Tenant, list its Trunks and DialPlans, read Secrets, create the tenant's credentials
Secret, write statuses, read the platform's ConfigMap, run the edge and relay workloads,
and create kopf's peering object when it is missing.

A thin aiohttp client over the credentials kopf's own login functions find (the
service account in a pod, ``$KUBECONFIG`` or ``~/.kube/config`` elsewhere): the generated
Kubernetes clients are untyped and large, and these calls are six URLs. Secret values
are decoded here and handed on; they are never logged or put into an error message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from cloudpbx_operator.render import GROUP, VERSION

_MERGE_PATCH = "application/merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """The API server answered with an error status (``status``: the HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Kube:
    """One connection to the API server.

    A 401 makes it log in again and retry once: a pod's service-account token is a bound
    token that the kubelet rotates in its file (hourly), so the one read at start expires.
    """

    def __init__(
        self, info: kopf.ConnectionInfo, settings: kopf.OperatorSettings | None = None
    ) -> None:
        self.server = info.server.rstrip("/")
        self.settings = settings
        self.headers = info.as_http_headers()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl(info)),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    @classmethod
    def connect(cls, settings: kopf.OperatorSettings) -> Kube:
        return cls(_login(settings), settings)

    def _relogin(self) -> bool:
        """Fresh credentials (the token file read again); False when there is nothing
        to log in with again."""
        if self.settings is None:
            return False
        self.headers = _login(self.settings).as_http_headers()
        return True

    async def close(self) -> None:
        await self.session.close()

    async def _call(
        self, method: str, path: str, body: object = None, *, content_type: str = "application/json"
    ) -> dict[str, Any] | None:
        """The JSON answer; None for 404 on a GET; ApiError for other failures."""
        for attempt in (1, 2):
            headers = dict(self.headers)
            kwargs: dict[str, Any] = {"headers": headers}
            if body is not None:
                kwargs["json"] = body
                headers["Content-Type"] = content_type
            async with self.session.request(method, self.server + path, **kwargs) as response:
                if response.status == 401 and attempt == 1 and self._relogin():
                    continue
                if response.status == 404 and method == "GET":
                    return None
                if response.status >= 400:
                    raise ApiError(response.status, (await response.text())[:300])
                answer: dict[str, Any] = await response.json(content_type=None)
                return answer
        raise AssertionError("unreachable: the second attempt returns or raises")

    # --- custom objects ---

    @staticmethod
    def _custom(namespace: str, plural: str, name: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    async def get(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return await self._call("GET", self._custom(namespace, plural, name))

    async def list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        answer = await self._call("GET", self._custom(namespace, plural))
        items = answer.get("items") if answer else None
        return [item for item in items or [] if isinstance(item, dict)]

    async def patch_status(
        self, namespace: str, plural: str, name: str, status: Mapping[str, Any]
    ) -> None:
        path = self._custom(namespace, plural, name) + "/status"
        await self._call("PATCH", path, {"status": status}, content_type=_MERGE_PATCH)

    # --- Secrets ---

    async def read_secrets(self, namespace: str, names: set[str]) -> dict[str, dict[str, str]]:
        """Secret name → its values as text (data decoded, stringData over it); the missing
        and the undecodable are left out, for the compiler to name."""
        secrets: dict[str, dict[str, str]] = {}
        for name in sorted(names):
            secret = await self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
            if secret is not None:
                secrets[name] = secret_values(secret)
        return secrets

    async def add_secret_values(
        self,
        namespace: str,
        name: str,
        values: Mapping[str, str],
        *,
        owner: Mapping[str, Any],
    ) -> dict[str, str]:
        """Creates Secret ``name`` with ``values``, or adds those of ``values`` it lacks
        (never replacing one: a password handed out stays); returns all its values."""
        path = f"/api/v1/namespaces/{namespace}/secrets"
        existing = await self._call("GET", f"{path}/{name}")
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]},
                "data": {key: _b64(value) for key, value in values.items()},
            }
            created = await self._call("POST", path, body)
            return secret_values(created or body)
        have = secret_values(existing)
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": _version(existing)}
        ]
        if not isinstance(existing.get("data"), dict):
            ops.append({"op": "add", "path": "/data", "value": {}})
        ops += [
            {"op": "add", "path": f"/data/{_pointer(key)}", "value": _b64(value)}
            for key, value in values.items()
            if key not in have
        ]
        if len(ops) == 1:
            return have
        patched = await self._call("PATCH", f"{path}/{name}", ops, content_type=_JSON_PATCH)
        return secret_values(patched or {})

    # --- the platform's ConfigMap ---

    async def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    # --- kopf's peering ---

    async def ensure_peering(self, name: str, namespace: str | None) -> bool:
        """Creates kopf's peering object ``name`` when it is missing: a ClusterKopfPeering
        (``namespace`` None: the operator watches every namespace) or a KopfPeering in
        ``namespace``. kopf keeps replicas paused until it sees that object, and a chart
        cannot hold it beside its CRD (Helm maps every object to a served kind before it
        creates any). True when this call created it."""
        if namespace is None:
            path, kind = f"/apis/{PEERING_API}/clusterkopfpeerings", "ClusterKopfPeering"
        else:
            path, kind = f"/apis/{PEERING_API}/namespaces/{namespace}/kopfpeerings", "KopfPeering"
        if await self._call("GET", f"{path}/{name}") is not None:
            return False
        body = {"apiVersion": PEERING_API, "kind": kind, "metadata": {"name": name}}
        try:
            await self._call("POST", path, body)
        except ApiError as exc:
            if exc.status != 409:  # 409: another replica created it first
                raise
            return False
        return True

    # --- workloads ---

    async def ensure(self, body: Mapping[str, Any]) -> bool:
        """Creates ``body`` (a Deployment, DaemonSet, Service or PodDisruptionBudget), or
        merges it into the one there when it changed since the operator last wrote it (an
        annotation holds a digest of what it wrote: the API server's defaults are not a
        change); its labels, annotations, ownerReferences and spec are the rendered ones.
        True when something was written."""
        desired = dict(body)
        metadata = dict(desired["metadata"])
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        metadata["annotations"] = {**metadata.get("annotations", {}), APPLIED: digest}
        desired["metadata"] = metadata
        path = _workload_path(desired["apiVersion"], desired["kind"], metadata["namespace"])
        current = await self._call("GET", f"{path}/{metadata['name']}")
        if current is None:
            try:
                await self._call("POST", path, desired)
            except ApiError as exc:
                if exc.status != 409:  # 409: another replica, starting too, wrote it first
                    raise  # (rendered from the same ConfigMap: the same object)
                return False
            return True
        if (current.get("metadata", {}).get("annotations") or {}).get(APPLIED) == digest:
            return False
        patch = {"metadata": {"labels": metadata.get("labels", {}),
                              "annotations": metadata["annotations"],
                              "ownerReferences": metadata.get("ownerReferences", [])},
                 "spec": desired["spec"]}  # fmt: skip
        await self._call("PATCH", f"{path}/{metadata['name']}", patch, content_type=_MERGE_PATCH)
        return True

    async def remove(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Deletes the object if it is there; True when it was."""
        path = f"{_workload_path(api_version, kind, namespace)}/{name}"
        if await self._call("GET", path) is None:
            return False
        try:
            await self._call("DELETE", path, {"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise
        return True


#: The API of kopf's peering objects (its current group; zalando.org is its old one).
PEERING_API = "kopf.dev/v1"
#: The annotation with the digest of what the operator last wrote into a workload.
APPLIED = "cloudpbx.io/applied"
_WORKLOADS = {
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "DaemonSet"): "daemonsets",
    ("v1", "Service"): "services",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
}


def _workload_path(api_version: str, kind: str, namespace: str) -> str:
    plural = _WORKLOADS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def secret_values(secret: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    data = secret.get("data")
    for key, value in (data if isinstance(data, dict) else {}).items():
        try:
            values[str(key)] = base64.b64decode(value, validate=True).decode()
        except (ValueError, TypeError):
            continue
    string_data = secret.get("stringData")
    for key, value in (string_data if isinstance(string_data, dict) else {}).items():
        if isinstance(value, str):
            values[str(key)] = value
    return values


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``body`` (a Tenant, the platform's ConfigMap) as the controller
    of what it owns: its children go when it goes."""
    metadata = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _pointer(key: str) -> str:
    """A JSON pointer token (RFC 6901 §3)."""
    return key.replace("~", "~0").replace("/", "~1")


def _version(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata")
    version = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    return str(version or "")


def _login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise kopf.LoginError("no service account and no kubeconfig to reach the API with")
    return info


def _ssl(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """kopf's own TLS context for the credentials (CA, client certificate, inline data
    included), as kopf's watches use it; none for a plain-HTTP server."""
    if not info.server.startswith("https:"):
        return False
    return info.as_ssl_context()
