"""The operator end to end: ``kubectl apply`` → the operator process → Postgres, Redis and
the Tenant's status; then an update, a Trunk's registration, a deletion, a bad spec, and a
crash mid-reconcile (issue 7, points 2 and 5)."""

from __future__ import annotations

import asyncio
import hashlib
import textwrap
import time
import urllib.parse
import uuid
from typing import Any

from contracts.billing.store import Disposition, LegEnd
from contracts.keys import SNAPSHOT_CHANNEL, domain_index_key, snapshot_notice, trunk_status_key
from contracts.stores.url import open_store
from contracts.trunk_status import TrunkStatus

from .conftest import ALICE_PASSWORD, POSTGRES_DSN, REDIS_URL, Lab
from .conftest import tenant_yaml as shared_tenant_yaml


def tenant_yaml(lab: Lab, *, carol: bool = False, limits: str = "") -> str:
    """The test's prepaid tenant (:func:`.conftest.tenant_yaml`)."""
    return shared_tenant_yaml(lab.tenant, lab.domain, carol=carol, limits=limits)


def trunk_yaml(lab: Lab, host: str = "192.0.2.10") -> str:
    return textwrap.dedent(f"""
        apiVersion: cloudpbx.io/v1
        kind: Trunk
        metadata: {{name: carrier}}
        spec:
          tenant: {lab.tenant}
          host: {host}
          username: "4930555"
          password: {{secretRef: {{name: acme-secrets, key: carrier}}}}
          dids: ["+4930555100"]
        ---
        apiVersion: cloudpbx.io/v1
        kind: DialPlan
        metadata: {{name: out}}
        spec:
          tenant: {lab.tenant}
          rules:
            - {{name: pstn, match: {{prefix: "0"}}, route: {{trunks: [carrier]}}}}
        """)  # fmt: skip


def ha1(number: str, domain: str, password: str) -> str:
    return hashlib.md5(f"{number}:{domain}:{password}".encode()).hexdigest()


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return dict(found)


def test_apply_update_trunk_status_and_delete(lab: Lab) -> None:
    lab.operator.start()
    lab.apply(tenant_yaml(lab) + "---\n" + trunk_yaml(lab))
    status = lab.wait_for("Ready for generation 1", lambda: lab.ready(1))
    assert status | {"conditions": []} == {
        "observedGeneration": 1, "domain": lab.domain, "snapshotVersion": 1, "conditions": [],
        "counts": {"extensions": 2, "aliases": 0, "trunks": 1, "dialPlans": 1},
    }  # fmt: skip
    assert condition(status, "Provisioned")["status"] == "True"
    assert condition(status, "Ready")["observedGeneration"] == 1
    plan = lab.wait_for("the DialPlan's status", lambda: dial_plan_ready(lab, "out"))
    assert (plan["rules"], condition(plan, "Ready")["reason"]) == (1, "Published")

    # the extension without a Secret got a generated password, in a Secret the Tenant owns
    generated = lab.secret_values(f"{lab.tenant}-sip-credentials")
    assert list(generated) == ["1002"]
    assert len(generated["1002"]) >= 20
    secret = lab.get("secrets", f"{lab.tenant}-sip-credentials")
    tenant = lab.get("tenants", lab.tenant)
    assert secret is not None
    assert tenant is not None
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "cloudpbx.io/v1", "kind": "Tenant", "name": lab.tenant,
         "uid": tenant["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert generated["1002"] not in lab.operator.output()

    snapshot = lab.snapshot()
    assert snapshot is not None
    assert (snapshot["version"], snapshot["enabled"], snapshot["uid"]) == (
        1, True, tenant["metadata"]["uid"],
    )  # fmt: skip
    by_number = {e["number"]: e for e in snapshot["extensions"]}
    assert by_number["1001"]["ha1_md5"] == ha1("1001", lab.domain, ALICE_PASSWORD)
    assert by_number["1002"]["ha1_md5"] == ha1("1002", lab.domain, generated["1002"])
    assert snapshot["trunk_passwords"] == {"carrier": "carrier-secret"}
    assert lab.redis.hget(domain_index_key(), lab.domain) == lab.tenant.encode()
    uid = tenant["metadata"]["uid"]  # the account is keyed by the Tenant's UID
    assert [tuple(r) for r in lab.query("SELECT tenant, plan, currency FROM tenants")] == [
        (uid, "prepaid", "EUR")
    ]
    assert [tuple(r) for r in lab.query("SELECT tenant, account FROM accounts")] == [(uid, "main")]

    # an update of the Tenant publishes a new version, with a notice to the edges
    notices = lab.redis.pubsub()  # type: ignore[no-untyped-call]
    notices.subscribe(SNAPSHOT_CHANNEL)
    lab.apply(tenant_yaml(lab, carol=True))
    status = lab.wait_for("Ready for generation 2", lambda: lab.ready(2))
    assert (status["snapshotVersion"], status["counts"]["extensions"]) == (2, 3)
    assert (lab.snapshot() or {})["version"] == 2
    assert next_notice(notices) == snapshot_notice(lab.tenant, 2)

    # a Trunk's change re-publishes its tenant
    lab.apply(trunk_yaml(lab, host="192.0.2.20"))
    lab.wait_for(
        "version 3 after the trunk moved", lambda: (lab.snapshot() or {}).get("version") == 3
    )
    assert (lab.snapshot() or {})["trunk_manifests"][0]["spec"]["host"] == "192.0.2.20"

    # the registration an edge reports shows in the Trunk's status
    report = TrunkStatus("Registered", 200, "OK", 0, "edge-0/42", 1_790_000_000.0)
    lab.redis.set(trunk_status_key(lab.tenant, "carrier"), report.to_json())

    def registration() -> dict[str, Any] | None:
        trunk = lab.get("trunks", "carrier") or {}
        found = (trunk.get("status") or {}).get("registration")
        return found if found and found.get("state") == "Registered" else None

    shown = lab.wait_for("the Trunk's registration", registration)
    assert (shown["lastStatusCode"], shown["holder"]) == (200, "edge-0/42")
    lab.redis.delete(trunk_status_key(lab.tenant, "carrier"))  # the holder's report lapsed

    def unknown() -> bool:
        status = (lab.get("trunks", "carrier") or {}).get("status") or {}
        return status.get("registration") == {} and status["conditions"][0]["status"] == "Unknown"

    lab.wait_for("the Trunk's registration cleared", unknown)

    # a DialPlan's deletion (no finalizer on it) re-publishes its tenant
    lab.kubectl("delete", "dialplan", "out", "--timeout=20s")
    lab.wait_for("version 4 without the plan", lambda: (lab.snapshot() or {}).get("version") == 4)
    assert (lab.snapshot() or {})["dial_plan_manifests"] == []

    # deletion: the finalizer publishes the tenant disabled; its CDRs and ledger stay
    asyncio.run(write_cdr(lab, uid))
    lab.kubectl("delete", "tenant", lab.tenant, "--timeout=20s")
    assert lab.get("tenants", lab.tenant) is None
    disabled = lab.snapshot()
    assert disabled is not None
    assert (disabled["enabled"], disabled["version"]) == (False, 5)
    assert lab.redis.hget(domain_index_key(), lab.domain) is None  # its domain is free again
    assert next_notice(notices, skip=2) == snapshot_notice(lab.tenant, 5)
    assert len(lab.query("SELECT * FROM cdrs WHERE tenant = $1", uid)) == 1
    assert len(lab.query("SELECT * FROM accounts WHERE tenant = $1", uid)) == 1
    assert lab.get("secrets", f"{lab.tenant}-sip-credentials") is None  # owned: collected

    # a new Tenant under the same name is a new object: a new account, the old one's
    # CDRs and ledger left where they were
    lab.apply(tenant_yaml(lab))
    lab.wait_for("the new Tenant Ready", lambda: lab.ready(1))
    new_uid = (lab.get("tenants", lab.tenant) or {})["metadata"]["uid"]
    assert new_uid != uid
    assert (lab.snapshot() or {})["uid"] == new_uid
    assert sorted(tuple(r) for r in lab.query("SELECT tenant, account FROM accounts")) == sorted(
        [(uid, "main"), (new_uid, "main")]
    )
    assert len(lab.query("SELECT * FROM cdrs WHERE tenant = $1", uid)) == 1
    assert lab.query("SELECT * FROM cdrs WHERE tenant = $1", new_uid) == []
    notices.close()


def next_notice(pubsub: Any, skip: int = 0) -> str:
    """The next notice on the channel (after ``skip`` others), waiting up to 10 s."""
    seen = 0
    for _ in range(100):
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            if seen == skip:
                return str(message["data"].decode())
            seen += 1
    raise AssertionError("no snapshot notice")


async def write_cdr(lab: Lab, account: str) -> None:
    store = await open_store(lab.billing_url, pool_size=1)
    try:
        end = LegEnd(account, "main", "call-1@test", "a", "1001", "1002",
                     Disposition.NO_ANSWER, 1_000, None, 5_000)  # fmt: skip
        await store.settle(end, now_ms=5_000)
    finally:
        await store.close()


def test_an_invalid_spec_is_a_status_naming_the_field_then_fixed(lab: Lab) -> None:
    lab.operator.start()
    lab.apply(tenant_yaml(lab, limits="{maxExpiresSeconds: soon}"))

    def refused() -> dict[str, Any] | None:
        status = (lab.get("tenants", lab.tenant) or {}).get("status") or {}
        return status if status.get("observedGeneration") == 1 else None

    status = lab.wait_for("a status for generation 1", refused)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.limits.maxExpiresSeconds" in ready["message"]
    events = lab.wait_for("the Warning event", lambda: lab.events("InvalidSpec"))
    assert events[0]["involvedObject"]["name"] == lab.tenant
    assert "spec.limits.maxExpiresSeconds" in events[0]["message"]
    assert lab.snapshot() is None
    assert lab.operator.process is not None
    assert lab.operator.process.poll() is None

    lab.apply(tenant_yaml(lab))
    status = lab.wait_for("Ready for generation 2", lambda: lab.ready(2))
    assert status["snapshotVersion"] == 1

    # a DialPlan that does not compile: its own status says why, the tenant's too
    lab.apply(trunk_yaml(lab).replace('prefix: "0"', 'regex: "("'))

    def plan_refused() -> dict[str, Any] | None:
        status = (lab.get("dialplans", "out") or {}).get("status") or {}
        conditions = status.get("conditions") or [{}]
        return status if conditions[0].get("reason") == "InvalidSpec" else None

    plan = lab.wait_for("the DialPlan refused", plan_refused)
    assert "DialPlan out, rule 'pstn' match.regex" in condition(plan, "Ready")["message"]
    ready = condition((lab.get("tenants", lab.tenant) or {})["status"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert (lab.snapshot() or {})["version"] == 1  # the last good one keeps serving
    assert lab.operator.output().count("Traceback") == 0


def dial_plan_ready(lab: Lab, name: str) -> dict[str, Any] | None:
    """The DialPlan's status once it is Ready=True."""
    status = (lab.get("dialplans", name) or {}).get("status") or {}
    ready = [c for c in status.get("conditions", []) if c.get("type") == "Ready"]
    return status if ready and ready[0]["status"] == "True" else None


def test_killed_mid_reconcile_a_new_operator_converges_without_duplicates(lab: Lab) -> None:
    held = lab.cluster.hold(
        lambda method, route: (
            method == "PATCH" and route.resource[2] == "tenants" and route.subresource == "status"
        )
    )
    lab.operator.start()
    lab.apply(tenant_yaml(lab) + "---\n" + trunk_yaml(lab))
    lab.wait_for("the status write, held", lambda: getattr(held, "held", False))
    # everything but the status is done: Secret, account, snapshot
    generated = lab.secret_values(f"{lab.tenant}-sip-credentials")
    assert (lab.snapshot() or {}).get("version") == 1
    lab.operator.kill()
    held.set()

    lab.operator.start()
    status = lab.wait_for("Ready after the restart", lambda: lab.ready(1))
    assert status["snapshotVersion"] == 1  # the same content: no new version
    assert lab.secret_values(f"{lab.tenant}-sip-credentials") == generated
    assert len(lab.query("SELECT * FROM tenants")) == 1
    assert len(lab.query("SELECT * FROM accounts")) == 1
    tenant = lab.get("tenants", lab.tenant) or {}
    assert tenant["metadata"]["finalizers"] == ["cloudpbx.io/finalizer"]


def test_a_store_out_of_reach_is_a_status_and_a_retry_not_a_crash(lab: Lab) -> None:
    lab.operator.env["CLOUDPBX_REDIS_URL"] = "redis://127.0.0.1:1/15"  # nothing listens
    lab.operator.start()
    lab.apply(tenant_yaml(lab))

    def unavailable() -> dict[str, Any] | None:
        status = (lab.get("tenants", lab.tenant) or {}).get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return ready[0] if ready and ready[0]["reason"] == "StoreUnavailable" else None

    ready = lab.wait_for("Ready=False for the outage", unavailable)
    assert ready["status"] == "False"
    assert "Redis" in ready["message"]
    assert lab.operator.process is not None
    assert lab.operator.process.poll() is None

    lab.operator.stop()  # Redis is back (at its address)
    lab.operator.env["CLOUDPBX_REDIS_URL"] = REDIS_URL
    lab.operator.start()
    status = lab.wait_for("Ready once Redis is reachable", lambda: lab.ready(1))
    assert status["snapshotVersion"] == 1


def test_tenants_outside_the_platforms_tenant_namespaces_are_told_so(lab: Lab) -> None:
    lab.use_platform("pbx")  # serves "pbx" only
    lab.operator.start()
    lab.apply(tenant_yaml(lab))

    def refused() -> dict[str, Any] | None:
        status = (lab.get("tenants", lab.tenant) or {}).get("status") or {}
        return status if status.get("observedGeneration") == 1 else None

    ready = condition(lab.wait_for("a status for generation 1", refused), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NamespaceNotServed")
    assert f"namespace {lab.namespace} is not one of" in ready["message"]
    assert lab.snapshot() is None


def test_with_a_platform_it_runs_the_relay_and_the_shared_edge_pool(lab: Lab) -> None:
    config_map = lab.use_platform()
    # the shared edge as an operator without owner references left it
    lab.cluster.call(lambda: lab.cluster.create_object(unowned_edge(lab)))
    lab.operator.start()
    lab.apply(tenant_yaml(lab))
    lab.wait_for("Ready for generation 1", lambda: lab.ready(1))
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": config_map["metadata"]["name"],
             "uid": config_map["metadata"]["uid"], "controller": True,
             "blockOwnerDeletion": True}  # fmt: skip
    for plural, name in PLATFORM_WORKLOADS:
        body = lab.get_workload(plural, name)
        assert body is not None, (plural, name)
        assert body["metadata"]["ownerReferences"] == [owner], (plural, name)
    edge = lab.get_workload("deployments", "r1-edge") or {}
    written = edge["metadata"]["annotations"]["cloudpbx.io/applied"]
    assert edge["spec"]["replicas"] == 2  # the rendered spec replaced the old one

    # a restart with the same platform writes nothing again
    lab.operator.stop()
    lab.operator.start()
    lab.wait_for(
        "the restarted operator started",
        lambda: lab.operator.output().count("Activity 'start' succeeded") == 2,
    )
    again = lab.get_workload("deployments", "r1-edge") or {}
    assert again["metadata"]["resourceVersion"] == edge["metadata"]["resourceVersion"]
    assert again["metadata"]["annotations"]["cloudpbx.io/applied"] == written

    # deleting the platform's ConfigMap (helm uninstall) takes every workload with it
    lab.kubectl("delete", "configmap", config_map["metadata"]["name"])
    for plural, name in PLATFORM_WORKLOADS:
        assert lab.get_workload(plural, name) is None, (plural, name)


PLATFORM_WORKLOADS = (
    ("daemonsets", "r1-relay"), ("services", "r1-relay"), ("poddisruptionbudgets", "r1-relay"),
    ("deployments", "r1-edge"), ("services", "r1-edge"), ("poddisruptionbudgets", "r1-edge"),
)  # fmt: skip


def unowned_edge(lab: Lab) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "r1-edge", "namespace": lab.namespace,
                     "annotations": {"cloudpbx.io/applied": "0123456789abcdef"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"cloudpbx.io/pool": "shared"}}},
    }  # fmt: skip


def test_a_dedicated_edge_is_owned_by_the_platform_and_removed_with_its_tenant(lab: Lab) -> None:
    """Its Tenant lives in another namespace than the platform's workloads could, so the
    ConfigMap owns the edge and the Tenant's finalizer removes it."""
    config_map = lab.use_platform()
    lab.operator.start()
    lab.apply(tenant_yaml(lab).replace("  billing:", "  isolation: dedicated\n  billing:"))
    lab.wait_for("Ready for generation 1", lambda: lab.ready(1))
    name = f"r1-edge-{lab.tenant}"
    for plural in ("deployments", "services", "poddisruptionbudgets"):
        body = lab.get_workload(plural, name)
        assert body is not None, plural
        assert [ref["uid"] for ref in body["metadata"]["ownerReferences"]] == [
            config_map["metadata"]["uid"]
        ]
        assert body["metadata"]["labels"]["cloudpbx.io/tenant"] == lab.tenant
    edge = lab.get_workload("deployments", name) or {}
    assert edge["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == [
        "--only-tenant", lab.tenant,
    ]  # fmt: skip

    lab.kubectl("delete", "tenant", lab.tenant, "--timeout=20s")
    for plural in ("deployments", "services", "poddisruptionbudgets"):
        assert lab.get_workload(plural, name) is None, plural
    assert lab.get_workload("deployments", "r1-edge") is not None  # the shared pool stays


def test_without_its_configmap_yet_the_operator_waits_for_it_on_the_same_connections(
    lab: Lab,
) -> None:
    """The workloads' owner is read at start; until it is there kopf retries the start,
    which opens the stores only once (each retry used to open another Postgres pool)."""
    config_map = lab.use_platform()
    lab.kubectl("delete", "configmap", config_map["metadata"]["name"])
    lab.operator.start()
    lab.wait_for(
        "two retries of the start",
        lambda: (
            lab.operator.output().count("(the platform, owner of the workloads) not found") >= 2
        ),
    )
    assert lab.get_workload("deployments", "r1-edge") is None
    port = urllib.parse.urlsplit(POSTGRES_DSN).port or 5432
    assert lab.operator.connections_to(port) == 1  # the pool's one connection, kept

    created = lab.use_platform()
    edge = lab.wait_for("the shared edge", lambda: lab.get_workload("deployments", "r1-edge"))
    assert edge["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    lab.apply(tenant_yaml(lab))
    lab.wait_for("Ready for generation 1", lambda: lab.ready(1))


def test_a_tenant_name_taken_in_another_namespace_is_refused_and_its_deletion_harmless(
    lab: Lab,
) -> None:
    """Redis keys, dedicated edges and trunk reports go by tenant name, so a name is the
    platform's, not a namespace's: a second Tenant of that name elsewhere is refused (it
    would have replaced the first one's snapshot), sees none of the first one's trunk
    state, and its deletion does not disable the first one."""
    del lab.operator.env["CLOUDPBX_NAMESPACE"]  # every namespace watched
    lab.operator.start()
    lab.apply(tenant_yaml(lab) + "---\n" + trunk_yaml(lab))
    lab.wait_for("the owner Ready", lambda: lab.ready(1))
    owner = lab.snapshot() or {}
    other = f"o{uuid.uuid4().hex[:8]}"
    duplicate = tenant_yaml(lab).replace(lab.domain, f"x.{lab.domain}")
    lab.kubectl("apply", "--validate=false", "-n", other, "-f", "-", stdin=duplicate)
    lab.kubectl("apply", "--validate=false", "-n", other, "-f", "-", stdin=trunk_yaml(lab))

    def refused() -> dict[str, Any] | None:
        status = (lab.get("tenants", lab.tenant, other) or {}).get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return ready[0] if ready and ready[0]["reason"] == "NameConflict" else None

    ready = lab.wait_for("the duplicate refused", refused)
    assert ready["status"] == "False"
    assert owner["uid"] in ready["message"]
    assert lab.snapshot() == owner  # untouched: same version, same domain

    def trunk_status(namespace: str) -> dict[str, Any]:
        trunk = lab.get("trunks", "carrier", namespace) or {}
        return dict(trunk.get("status") or {})

    lab.wait_for("the duplicate Trunk's status", lambda: trunk_status(other).get("conditions"))
    report = TrunkStatus("Registered", 200, "OK", 0, "edge-0/7", 1_790_000_000.0)
    lab.redis.set(trunk_status_key(lab.tenant, "carrier"), report.to_json())
    lab.wait_for(
        "the owner's Trunk registered", lambda: trunk_status(lab.namespace)["registration"]
    )
    time.sleep(1.5)  # three more of the duplicate Trunk's status rounds (every 0.5 s)
    shown = trunk_status(other)
    assert (shown["registration"], shown["conditions"][0]["status"]) == ({}, "Unknown")
    lab.redis.delete(trunk_status_key(lab.tenant, "carrier"))

    lab.kubectl("delete", "tenant", lab.tenant, "-n", other, "--timeout=20s")
    assert lab.get("tenants", lab.tenant, other) is None  # its finalizer ran
    assert lab.snapshot() == owner  # still enabled, still the owner's
    assert lab.redis.hget(domain_index_key(), lab.domain) == lab.tenant.encode()
