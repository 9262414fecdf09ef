"""The edge and relay workloads rendered from the chart's platform configuration
(``data/platform.yaml``, as the chart renders it with its defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cloudpbx_operator.workloads import name_of, render_workloads

PLATFORM: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "platform.yaml").read_text(encoding="utf-8")
)
#: The ownerReference to the platform's ConfigMap, as the operator reads it at start.
OWNER = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "name": "r1-cloudpbx-platform",
    "uid": "6f1c2a9e-0000-4000-8000-000000000001",
    "controller": True,
    "blockOwnerDeletion": True,
}


def by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (found,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(found)


def test_the_relay_runs_on_the_nodes_network_and_advertises_the_nodes_address() -> None:
    objects = by_kind_and_name(render_workloads(PLATFORM, owner=OWNER))
    relay = objects[("DaemonSet", "r1-relay")]
    pod = relay["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    assert container(relay)["args"] == [
        "serve", "--ng", "0.0.0.0:2223", "--bind", "0.0.0.0",
        "--advertise", "$(CLOUDPBX_ADVERTISE)", "--ports", "30000-39999",
        "--idle-timeout", "60", "--metrics-port", "9061", "--stun", "0.0.0.0:3478",
    ]  # fmt: skip
    env = container(relay)["env"][0]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    service = objects[("Service", "r1-relay")]
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["namespace"] == "pbx"
    assert relay["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cloudpbx-operator"
    assert objects[("PodDisruptionBudget", "r1-relay")]["spec"]["maxUnavailable"] == 1


def test_the_shared_edge_pool_serves_every_tenant_from_redis_with_the_stores_from_secrets() -> None:
    objects = by_kind_and_name(render_workloads(PLATFORM, owner=OWNER))
    edge = objects[("Deployment", "r1-edge")]
    assert edge["spec"]["replicas"] == 2
    assert container(edge)["args"] == [
        "serve", "--listen", "udp:0.0.0.0:5060", "--listen", "tcp:0.0.0.0:5060",
        "--redis", "$(CLOUDPBX_REDIS_URL)", "--billing", "$(CLOUDPBX_BILLING_URL)",
        "--workers", "1", "--metrics-port", "9060", "--relay", "r1-relay.pbx.svc:2223",
    ]  # fmt: skip
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(edge)["env"]}
    assert env == {
        "CLOUDPBX_REDIS_URL": {"name": "cloudpbx-redis", "key": "url"},
        "CLOUDPBX_BILLING_URL": {"name": "cloudpbx-billing", "key": "dsn"},
    }
    service = objects[("Service", "r1-edge")]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert [(p["port"], p["protocol"]) for p in service["spec"]["ports"]] == [
        (5060, "UDP"), (5060, "TCP"),
    ]  # fmt: skip
    assert service["spec"]["selector"]["cloudpbx.io/pool"] == "shared"
    security = container(edge)["securityContext"]
    assert security["readOnlyRootFilesystem"]
    assert security["runAsNonRoot"]


def test_a_dedicated_tenant_gets_an_edge_of_its_own_apart_from_the_shared_pool() -> None:
    objects = by_kind_and_name(render_workloads(PLATFORM, ["acme"], owner=OWNER))
    edge = objects[("Deployment", "r1-edge-acme")]
    assert container(edge)["args"][-2:] == ["--only-tenant", "acme"]
    assert edge["spec"]["replicas"] == 2
    selector = objects[("Service", "r1-edge-acme")]["spec"]["selector"]
    assert selector["cloudpbx.io/pool"] == "acme"
    assert edge["metadata"]["labels"]["cloudpbx.io/tenant"] == "acme"
    shared = objects[("Service", "r1-edge")]["spec"]["selector"]
    assert shared != selector  # the shared Service never sends to a dedicated edge
    assert len(objects) == 9


def test_every_workload_is_owned_by_the_platforms_configmap_in_its_namespace() -> None:
    """The controller of each object, dedicated edges included (a Tenant in another
    namespace cannot own them); a Service's own annotations stay beside it."""
    objects = render_workloads(PLATFORM, ["acme"], owner=OWNER)
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == {
        (kind, name)
        for name in ("r1-relay", "r1-edge", "r1-edge-acme")
        for kind in ("Service", "PodDisruptionBudget")
    } | {("DaemonSet", "r1-relay"), ("Deployment", "r1-edge"), ("Deployment", "r1-edge-acme")}
    for body in objects:
        assert body["metadata"]["ownerReferences"] == [OWNER], body["metadata"]["name"]
        assert body["metadata"]["namespace"] == PLATFORM["namespace"]
    dedicated = by_kind_and_name(objects)[("Deployment", "r1-edge-acme")]
    assert dedicated["metadata"]["labels"]["cloudpbx.io/tenant"] == "acme"


def test_rendering_twice_gives_the_same_objects() -> None:
    """What the digest annotation is taken of: no change, no write."""
    assert render_workloads(PLATFORM, ["acme"], owner=OWNER) == render_workloads(
        PLATFORM, ["acme"], owner=OWNER
    )


def test_long_names_are_cut_to_a_dns_label_and_stay_distinct() -> None:
    long = "t" * 70
    one, other = name_of("r1", "edge", long), name_of("r1", "edge", long + "x")
    assert len(one) <= 63
    assert len(other) <= 63
    assert one != other
    assert name_of("r1", "edge", "acme") == "r1-edge-acme"
