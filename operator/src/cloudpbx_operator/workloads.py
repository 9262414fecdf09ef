"""The edge and relay workloads the operator runs, rendered from the platform configuration
(the chart's ConfigMap; its shape is pinned by ``tests/operator/data/platform.yaml``).

* the media relay: a DaemonSet (or a Deployment of ``replicas``), on the nodes' network
  when ``hostNetwork`` (phones then reach the media ports at the node's address), with a
  headless Service for its ng control port, which the edges are given;
* the shared edge pool: a Deployment, its SIP Service (UDP and TCP) and a
  PodDisruptionBudget; it serves every tenant from the snapshots in Redis;
* for each Tenant with ``spec.isolation: dedicated``, the same three again, named after
  the tenant and running ``--only-tenant`` it.

Everything lives in the platform's namespace, labelled ``app.kubernetes.io/managed-by:
cloudpbx-operator`` (and ``cloudpbx.io/tenant`` for a dedicated edge), so that what is no
longer wanted can be found and removed. The stores' URLs come from the Secrets the
platform names, as environment variables the arguments refer to (``$(VAR)``), never as
text in a spec. Pure: the platform document in, manifests out.

Every object is owned (``ownerReferences``, controller) by the platform's ConfigMap, the
spec it is rendered from: Kubernetes collects them when the platform goes (``helm
uninstall``), and ``kubectl get`` names their controller. A dedicated edge is owned by the
ConfigMap too, not by its Tenant: an owner must be in its dependent's namespace (the
garbage collector takes an owner in another namespace for a missing one and deletes the
dependent), and the edge must stay in the platform's namespace, beside the store Secrets
it reads, which are never copied into tenants' namespaces. So a dedicated edge keeps its
tenant's label and the Tenant's finalizer removes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

MANAGED_BY = {"app.kubernetes.io/managed-by": "cloudpbx-operator"}
TENANT_LABEL = "cloudpbx.io/tenant"
POOL_LABEL = "cloudpbx.io/pool"
SHARED_POOL = "shared"
#: A pod listens on all its interfaces: its network namespace is its own (or, with
#: hostNetwork, the node's, which is the point).
ANY_ADDRESS = "0.0.0.0"  # noqa: S104
#: Kubernetes object names that are also DNS labels (Services) hold at most 63 characters.
MAX_NAME = 63
_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def name_of(*parts: str) -> str:
    """``r1-edge-acme``; cut to 63 characters with a hash of the whole when longer."""
    name = "-".join(parts)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"


def render_workloads(
    platform: Mapping[str, Any], dedicated: Sequence[str] = (), *, owner: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every object the platform runs: the relay, the shared edge pool, and an edge for
    each tenant in ``dedicated``; ``owner``: the ownerReference to the platform's ConfigMap."""
    objects = relay_objects(platform, owner=owner)
    objects += edge_objects(platform, None, owner=owner)
    for tenant in dedicated:
        objects += edge_objects(platform, tenant, owner=owner)
    return objects


# --- the relay -------------------------------------------------------------------------------


def relay_service(platform: Mapping[str, Any]) -> str:
    """The relays' ng control address the edges are given (HOST:PORT)."""
    relay = platform["relay"]
    name = name_of(platform["release"], "relay")
    return f"{name}.{platform['namespace']}.svc:{relay['ngPort']}"


def relay_objects(platform: Mapping[str, Any], *, owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    relay = platform["relay"]
    name = name_of(platform["release"], "relay")
    labels = _labels(platform, relay["podLabels"])
    host_network = bool(relay["hostNetwork"])
    low, high = relay["portRange"]["min"], relay["portRange"]["max"]
    args = [
        "serve",
        "--ng",
        f"{ANY_ADDRESS}:{relay['ngPort']}",
        "--bind",
        ANY_ADDRESS,
        "--advertise",
        "$(CLOUDPBX_ADVERTISE)",
        "--ports",
        f"{low}-{high}",
        "--idle-timeout",
        str(relay["idleTimeoutSeconds"]),
        "--metrics-port",
        str(relay["metricsPort"]),
    ]
    if relay.get("stunPort"):
        args += ["--stun", f"{ANY_ADDRESS}:{relay['stunPort']}"]
    # The address phones send media to: the node's with hostNetwork, else the pod's.
    advertise = "status.hostIP" if host_network else "status.podIP"
    container = {
        "name": "relay",
        "image": relay["image"],
        "imagePullPolicy": relay["imagePullPolicy"],
        "args": args,
        "env": [
            {"name": "CLOUDPBX_ADVERTISE", "valueFrom": {"fieldRef": {"fieldPath": advertise}}}
        ],
        "ports": [
            {"name": "ng", "containerPort": relay["ngPort"], "protocol": "UDP"},
            {"name": "metrics", "containerPort": relay["metricsPort"], "protocol": "TCP"},
        ],
        "resources": relay["resources"],
        "securityContext": _SECURITY,
    }
    pod: dict[str, Any] = {
        "containers": [container],
        "hostNetwork": host_network,
        "dnsPolicy": "ClusterFirstWithHostNet" if host_network else "ClusterFirst",
        "nodeSelector": relay["nodeSelector"],
        "tolerations": relay["tolerations"],
        "enableServiceLinks": False,
        **_pull_secrets(platform),
    }
    kind = relay["kind"]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(relay["podLabels"])},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if kind == "Deployment":
        spec["replicas"] = relay["replicas"]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(platform, name, labels),
        "spec": {
            "clusterIP": "None",
            "selector": dict(relay["podLabels"]),
            "ports": [{"name": "ng", "port": relay["ngPort"], "protocol": "UDP"}],
        },
    }
    workload = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": _metadata(platform, name, labels),
        "spec": spec,
    }
    budget = _budget(platform, name, labels, dict(relay["podLabels"]), relay["podDisruptionBudget"])
    return _owned([workload, service, budget], owner)


# --- the edges -------------------------------------------------------------------------------


def edge_objects(
    platform: Mapping[str, Any], tenant: str | None, *, owner: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The shared edge pool (``tenant`` None) or the edge dedicated to ``tenant``."""
    edge = platform["edge"]
    release = platform["release"]
    name = name_of(release, "edge") if tenant is None else name_of(release, "edge", tenant)
    pool = SHARED_POOL if tenant is None else _label_value(tenant)
    selector = {**edge["podLabels"], POOL_LABEL: pool}
    labels = _labels(platform, selector)
    if tenant is not None:
        labels[TENANT_LABEL] = _label_value(tenant)
    stores = platform["stores"]
    container = {
        "name": "edge",
        "image": edge["image"],
        "imagePullPolicy": edge["imagePullPolicy"],
        "args": _edge_args(platform, tenant),
        "env": [
            _secret_env("CLOUDPBX_REDIS_URL", stores["redis"]),
            _secret_env("CLOUDPBX_BILLING_URL", stores["billing"]),
        ],
        "ports": [
            *(
                {"name": f"sip-{t}", "containerPort": edge["sipPort"], "protocol": t.upper()}
                for t in edge["transports"]
            ),
            {"name": "metrics", "containerPort": edge["metricsPort"], "protocol": "TCP"},
        ],
        "resources": edge["resources"],
        "securityContext": _SECURITY,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(platform, name, labels),
        "spec": {
            "replicas": edge["replicas"] if tenant is None else edge["dedicatedReplicas"],
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "nodeSelector": edge["nodeSelector"],
                    "tolerations": edge["tolerations"],
                    "enableServiceLinks": False,
                    **_pull_secrets(platform),
                },
            },
        },
    }
    service_spec: dict[str, Any] = {
        "type": edge["service"]["type"],
        "selector": selector,
        "ports": [
            {
                "name": f"sip-{t}",
                "port": edge["sipPort"],
                "targetPort": edge["sipPort"],
                "protocol": t.upper(),
            }
            for t in edge["transports"]
        ],
    }
    if edge["service"]["type"] in ("LoadBalancer", "NodePort"):
        service_spec["externalTrafficPolicy"] = edge["service"]["externalTrafficPolicy"]
    metadata = _metadata(platform, name, labels)
    if edge["service"].get("annotations"):
        metadata["annotations"] = dict(edge["service"]["annotations"])
    service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": service_spec}
    budget = _budget(platform, name, labels, selector, edge["podDisruptionBudget"])
    return _owned([deployment, service, budget], owner)


def _edge_args(platform: Mapping[str, Any], tenant: str | None) -> list[str]:
    edge = platform["edge"]
    args = ["serve"]
    for transport in edge["transports"]:
        args += ["--listen", f"{transport}:{ANY_ADDRESS}:{edge['sipPort']}"]
    args += [
        "--redis",
        "$(CLOUDPBX_REDIS_URL)",
        "--billing",
        "$(CLOUDPBX_BILLING_URL)",
        "--workers",
        str(edge["workers"]),
        "--metrics-port",
        str(edge["metricsPort"]),
        "--relay",
        relay_service(platform),
    ]
    if edge.get("advertise"):
        args += ["--advertise", edge["advertise"]]
    if tenant is not None:
        args += ["--only-tenant", tenant]
    return args


# --- shared pieces ---------------------------------------------------------------------------


def _labels(platform: Mapping[str, Any], own: Mapping[str, str]) -> dict[str, str]:
    return {**platform.get("labels", {}), **own, **MANAGED_BY}


def _owned(objects: list[dict[str, Any]], owner: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``objects``, each with ``owner`` as its one ownerReference."""
    for body in objects:
        body["metadata"]["ownerReferences"] = [dict(owner)]
    return objects


def _metadata(platform: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": platform["namespace"], "labels": dict(labels)}


def _budget(
    platform: Mapping[str, Any],
    name: str,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    budget: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(platform, name, labels),
        "spec": {
            "maxUnavailable": budget["maxUnavailable"],
            "selector": {"matchLabels": dict(selector)},
        },
    }


def _secret_env(name: str, ref: Mapping[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": ref["secretName"], "key": ref["secretKey"]}},
    }


def _pull_secrets(platform: Mapping[str, Any]) -> dict[str, Any]:
    names = platform.get("imagePullSecrets") or []
    return {"imagePullSecrets": [{"name": name} for name in names]} if names else {}


def _label_value(text: str) -> str:
    """A label value (at most 63 characters); tenant names are DNS names, so only length
    needs care."""
    return name_of(text)
