"""The operator's pure decisions: the snapshot (the same as ``cloudpbx dev`` compiles from
the same objects), the generated credentials it asks for, problems as statuses, and
conditions whose transition time only moves with their status."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudpbx_operator import render
from cloudpbx_operator.config import (
    Config,
    ConfigError,
    Peering,
    from_env,
    parse_platform,
    pod_priority,
)
from contracts.snapshot import TenantSnapshot
from contracts.trunk_status import TrunkStatus
from sipedge.tenants import load_manifest_folder

MANIFESTS = textwrap.dedent("""
    apiVersion: v1
    kind: Secret
    metadata: {name: acme-secrets}
    stringData: {alice: alice-secret, bob: bob-secret, a: carrier-a-secret, b: carrier-b-secret}
    ---
    apiVersion: cloudpbx.io/v1
    kind: Tenant
    metadata: {name: acme, uid: 0b7c-uid}
    spec:
      domain: acme.example
      aliases: [127.0.0.2]
      billing: {plan: prepaid, currency: EUR, rates: [{prefix: "0", perMinute: "0.02"}]}
      extensions:
        - {number: "1001", passwordSecretRef: {name: acme-secrets, key: alice}}
        - {number: "1002", displayName: Bob, passwordSecretRef: {name: acme-secrets, key: bob}}
    ---
    apiVersion: cloudpbx.io/v1
    kind: Trunk
    metadata: {name: carrier-b}
    spec:
      tenant: acme
      host: 192.0.2.20
      username: "4930555"
      password: {secretRef: {name: acme-secrets, key: b}}
      dids: ["+4930555200"]
    ---
    apiVersion: cloudpbx.io/v1
    kind: Trunk
    metadata: {name: carrier-a}
    spec:
      tenant: acme
      host: 192.0.2.10
      username: "4930555"
      password: {secretRef: {name: acme-secrets, key: a}}
      dids: ["+4930555100"]
    ---
    apiVersion: cloudpbx.io/v1
    kind: DialPlan
    metadata: {name: out}
    spec:
      tenant: acme
      priority: 10
      rules:
        - {name: pstn, match: {prefix: "0"}, route: {trunks: [carrier-a, carrier-b]}}
    ---
    apiVersion: cloudpbx.io/v1
    kind: DialPlan
    metadata: {name: inbound}
    spec:
      tenant: acme
      rules:
        - {name: did, match: {prefix: "4930555"}, strip: 7, prepend: "1", route: {extension: true}}
""")


def documents() -> list[dict[str, Any]]:
    return [dict(d) for d in yaml.safe_load_all(MANIFESTS)]


def as_served(body: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server hands it back: with server-set metadata and a status."""
    served = dict(body)
    served["metadata"] = dict(body["metadata"], namespace="pbx", resourceVersion="77",
                              generation=3, creationTimestamp="2026-11-27T08:00:00Z")  # fmt: skip
    served["status"] = {"anything": "the operator wrote"}
    return served


def rendered(bodies: list[dict[str, Any]]) -> TenantSnapshot | render.Problem:
    secrets = {d["metadata"]["name"]: d["stringData"] for d in bodies if d["kind"] == "Secret"}
    (tenant,) = [d for d in bodies if d["kind"] == "Tenant"]
    trunks = render.tenant_objects([d for d in bodies if d["kind"] == "Trunk"], "acme")
    plans = render.tenant_objects([d for d in bodies if d["kind"] == "DialPlan"], "acme")
    return render.render_snapshot(render.with_credential_refs(tenant), trunks, plans, secrets)


def test_the_snapshot_is_the_one_cloudpbx_dev_compiles_from_the_same_objects(
    tmp_path: Path,
) -> None:
    (tmp_path / "acme.yaml").write_text(MANIFESTS, encoding="utf-8")
    (from_folder,) = load_manifest_folder(tmp_path)
    # as listed by the API server: in another order, with server metadata and statuses
    served = [as_served(d) for d in reversed(documents())]
    from_cluster = rendered(served)
    assert isinstance(from_cluster, TenantSnapshot)
    # the folder's version is the generation (absent: 1); the publisher sets the cluster's
    assert from_cluster.to_json() == replace(from_folder, version=from_cluster.version).to_json()
    assert [t["metadata"]["name"] for t in from_cluster.trunk_manifests] == [
        "carrier-a",
        "carrier-b",
    ]
    assert from_cluster.trunk_manifests[0] == {
        "apiVersion": "cloudpbx.io/v1", "kind": "Trunk", "metadata": {"name": "carrier-a"},
        "spec": documents()[3]["spec"],
    }  # fmt: skip


def test_extensions_without_a_secret_get_one_in_the_tenants_credentials_secret() -> None:
    tenant: dict[str, Any] = {
        "apiVersion": "cloudpbx.io/v1", "kind": "Tenant", "metadata": {"name": "acme"},
        "spec": {"domain": "acme.example", "extensions": [
            {"number": "1001", "passwordSecretRef": {"name": "mine", "key": "k"}},
            {"number": "1002"}, {"number": "1003"}, {"number": 1004}, "junk",
        ]},
    }  # fmt: skip
    filled = render.with_credential_refs(tenant)
    refs = [e.get("passwordSecretRef") for e in filled["spec"]["extensions"][:4]]
    assert refs == [
        {"name": "mine", "key": "k"},
        {"name": "acme-sip-credentials", "key": "1002"},
        {"name": "acme-sip-credentials", "key": "1003"},
        None,  # not a string: the compiler names it
    ]
    assert "passwordSecretRef" not in tenant["spec"]["extensions"][1]  # a copy
    assert render.missing_credentials(filled, {}) == ["1002", "1003"]
    have = {"acme-sip-credentials": {"1002": "x"}}
    assert render.missing_credentials(filled, have) == ["1003"]
    assert render.secret_names(filled, []) == {"mine", "acme-sip-credentials"}


# (a change to the manifests, the words the message must hold)
PROBLEMS: list[tuple[str, str, str]] = [
    ("domain: acme.example", "domain: 'not a host'", "Tenant acme: spec.domain: must be a host"),
    ("key: b}}", "key: nope}}",
     "Trunk carrier-b: spec.password.secretRef.key: Secret 'acme-secrets' has no key 'nope'"),
    ("password: {secretRef: {name: acme-secrets, key: b}}", "password: {file: b.password}",
     "Trunk carrier-b: spec.password.file: is for cloudpbx dev only; in a cluster use secretRef"),
    ("host: 192.0.2.20", "host: 'bad host'", "Trunk carrier-b spec.host: must be a host name"),
    ("trunks: [carrier-a, carrier-b]", "trunks: [carrier-x]",
     "DialPlan out, rule 'pstn' route.trunks: no such trunk 'carrier-x'"),
    ('dids: ["+4930555200"]', 'dids: ["+4930555100"]',
     "spec.dids: +4930555100 is already routed by trunk carrier-a"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), PROBLEMS)
def test_a_spec_that_cannot_be_served_is_a_problem_naming_the_object_and_field(
    old: str, new: str, message: str
) -> None:
    assert old in MANIFESTS
    bodies = [dict(d) for d in yaml.safe_load_all(MANIFESTS.replace(old, new, 1))]
    problem = rendered(bodies)
    assert isinstance(problem, render.Problem)
    assert problem.reason == "InvalidSpec"
    assert message in problem.message
    for password in ("alice-secret", "bob-secret", "carrier-a-secret", "carrier-b-secret"):
        assert password not in problem.message


def test_conditions_keep_their_transition_time_while_their_status_holds() -> None:
    ready = render.Condition("Ready", True, "Published", "v1")
    first = render.conditions(None, [ready], generation=1, now="T1")
    assert first == [{"type": "Ready", "status": "True", "reason": "Published", "message": "v1",
                      "lastTransitionTime": "T1", "observedGeneration": 1}]  # fmt: skip
    again = render.conditions(first, [render.Condition("Ready", True, "Published", "v2")],
                              generation=2, now="T2")  # fmt: skip
    assert (again[0]["lastTransitionTime"], again[0]["message"]) == ("T1", "v2")
    failed = render.conditions(again, [render.Condition("Ready", False, "InvalidSpec", "x")],
                               generation=3, now="T3")  # fmt: skip
    assert (failed[0]["lastTransitionTime"], failed[0]["observedGeneration"]) == ("T3", 3)


def test_tenant_status_counts_what_is_served() -> None:
    snapshot = rendered(documents())
    assert isinstance(snapshot, TenantSnapshot)
    tenant = {"metadata": {"name": "acme", "generation": 4}}
    provisioned = render.Condition("Provisioned", True, "AccountReady", "account main")
    status = render.tenant_status(tenant, snapshot, provisioned=provisioned, version=9, now="T")
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 4, "domain": "acme.example", "snapshotVersion": 9,
        "counts": {"extensions": 2, "aliases": 1, "trunks": 2, "dialPlans": 2},
    }  # fmt: skip
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("Ready", "True"),
        ("Provisioned", "True"),
    ]
    assert status["conditions"][0]["message"] == "snapshot version 9 serves acme.example, 127.0.0.2"


def test_a_dial_plan_says_whether_it_is_served_and_whose_fault_it_is_when_not() -> None:
    plans = {d["metadata"]["name"]: d for d in documents() if d["kind"] == "DialPlan"}
    served = rendered(documents())
    assert isinstance(served, TenantSnapshot)

    def ready(outcome: object, version: int | None = None, plan: str = "out") -> tuple[Any, ...]:
        status = render.dial_plan_status(plans[plan], outcome, version=version, now="T")  # type: ignore[arg-type]
        (condition,) = status["conditions"]
        return status.get("rules"), condition["status"], condition["reason"], condition["message"]

    assert ready(served, 9) == (1, "True", "Published", "in Tenant acme's snapshot version 9")
    assert ready(served) == (None, "Unknown", "Pending", "Tenant acme is not published yet")
    assert ready(None) == (None, "False", "TenantNotFound", "no Tenant acme here")

    broken = [
        dict(d)
        for d in yaml.safe_load_all(
            MANIFESTS.replace('pstn, match: {prefix: "0"}', 'pstn, match: {regex: "("}')
        )
    ]
    problem = rendered(broken)
    assert isinstance(problem, render.Problem)
    assert (problem.kind, problem.name) == ("DialPlan", "out")
    rules, status, reason, message = ready(problem)
    assert (rules, status, reason) == (None, "False", "InvalidSpec")
    assert message.startswith("DialPlan out, rule 'pstn' match.regex: ")
    _, status, reason, message = ready(problem, plan="inbound")  # not its fault
    assert (status, reason) == ("False", "TenantNotReady")
    assert message.startswith("Tenant acme: DialPlan out, rule 'pstn' match.regex: ")


def test_trunk_status_shows_what_the_edge_reports_or_that_nobody_does() -> None:
    trunk: dict[str, Any] = {"metadata": {"name": "carrier-a", "generation": 2}}
    report = TrunkStatus("Failed", 403, "Forbidden", 3, "edge-1/7", 1_790_000_000.5)
    shown = render.trunk_status(trunk, report.to_json(), now="T1")
    assert shown["registration"] == {
        "state": "Failed", "lastStatusCode": 403, "lastReason": "Forbidden", "failures": 3,
        "holder": "edge-1/7", "updatedAt": "2026-09-21T14:13:20Z",
    }  # fmt: skip
    (ready,) = shown["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "Failed")
    assert ready["message"] == "Failed by edge-1/7: 403 Forbidden"
    assert shown["observedGeneration"] == 2

    # the holder died and its report lapsed: the fields go (None in a merge patch)
    trunk["status"] = shown
    nobody = render.trunk_status(trunk, None, now="T2")
    assert render.merged(shown, nobody)["registration"] == {}
    assert (nobody["conditions"][0]["status"], nobody["conditions"][0]["reason"]) == (
        "Unknown", "NoHolder",
    )  # fmt: skip
    assert render.trunk_status(trunk, b"not json", now="T")["registration"]["state"] is None
    registered = TrunkStatus("Registered", 200, "OK", 0, "edge-1/7", 1_790_000_000.5)
    assert (
        render.trunk_status(trunk, registered.to_json(), now="T3")["conditions"][0]["status"]
        == "True"
    )


def test_a_merge_patch_view_tells_whether_a_status_write_changes_anything() -> None:
    current = {"a": 1, "b": {"c": 2, "d": 3}}
    assert render.merged(current, {"b": {"c": 2}}) == current
    assert render.merged(current, {"b": {"d": None}, "e": [1]}) == {"a": 1, "b": {"c": 2}, "e": [1]}


def test_config_from_the_environment() -> None:
    env = {"CLOUDPBX_REDIS_URL": "redis://r", "CLOUDPBX_BILLING_URL": "postgresql://p/db"}
    config = from_env(env)
    assert config == Config("redis://r", "postgresql://p/db")
    assert (config.watched_namespaces, config.served_namespaces) == ((), None)
    alone = from_env(env | {"CLOUDPBX_NAMESPACE": "pbx", "CLOUDPBX_HEALTH_PORT": "8080"})
    assert (alone.watched_namespaces, alone.health_port) == (("pbx",), 8080)
    with pytest.raises(ConfigError, match="CLOUDPBX_REDIS_URL is required"):
        from_env({"CLOUDPBX_BILLING_URL": "postgresql://p/db"})
    with pytest.raises(ConfigError, match="CLOUDPBX_TRUNK_STATUS_INTERVAL_S must be a number"):
        from_env(env | {"CLOUDPBX_TRUNK_STATUS_INTERVAL_S": "soon"})
    with pytest.raises(ConfigError, match="CLOUDPBX_LOG_LEVEL must be one of"):
        from_env(env | {"CLOUDPBX_LOG_LEVEL": "loud"})


def test_peering_gives_each_pod_a_priority_of_its_own() -> None:
    """kopf pauses every replica of an equal priority: each pod's comes from its name."""
    env = {"CLOUDPBX_REDIS_URL": "redis://r", "CLOUDPBX_BILLING_URL": "postgresql://p/db"}
    assert from_env(env).peering is None  # standalone: one replica
    pod = "r1-cloudpbx-operator-5d8f7c9b6-x2k4q"
    peering = from_env(
        env | {"CLOUDPBX_PEERING": "r1-cloudpbx-operator", "CLOUDPBX_POD_NAME": pod}
    ).peering
    assert peering == Peering("r1-cloudpbx-operator", pod_priority(pod), 60, pod)
    assert 0 <= pod_priority(pod) < 2**31
    assert pod_priority(pod) == pod_priority(pod)  # the same after a container restart
    others = {pod_priority(f"r1-cloudpbx-operator-5d8f7c9b6-{n:05d}") for n in range(1000)}
    assert len(others) == 1000
    given = from_env(env | {"CLOUDPBX_PEERING": "p", "CLOUDPBX_PEERING_PRIORITY": "-5",
                            "CLOUDPBX_PEERING_LIFETIME_S": "15"})  # fmt: skip
    assert given.peering == Peering("p", -5, 15, None)
    faults = [
        ({}, "needs CLOUDPBX_PEERING_PRIORITY or CLOUDPBX_POD_NAME"),
        ({"CLOUDPBX_PEERING_PRIORITY": "high"}, "must be a whole number"),
        ({"CLOUDPBX_POD_NAME": pod, "CLOUDPBX_PEERING_LIFETIME_S": "2.5"}, "whole number"),
        ({"CLOUDPBX_POD_NAME": pod, "CLOUDPBX_PEERING_LIFETIME_S": "0"}, "must be above 1"),
    ]
    for extra, message in faults:
        with pytest.raises(ConfigError, match=message):
            from_env(env | {"CLOUDPBX_PEERING": "p"} | extra)


def test_the_charts_platform_configuration_decides_which_namespaces_are_served() -> None:
    text = (Path(__file__).parent / "data" / "platform.yaml").read_text(encoding="utf-8")
    env = {"CLOUDPBX_REDIS_URL": "redis://r", "CLOUDPBX_BILLING_URL": "postgresql://p/db",
           "CLOUDPBX_NAMESPACE": "pbx",
           "CLOUDPBX_PLATFORM_CONFIGMAP": "r1-cloudpbx-platform"}  # fmt: skip
    config = from_env(env, text)
    assert config.platform is not None
    assert (config.platform.namespace, config.platform.tenant_namespaces) == ("pbx", ("pbx",))
    assert config.platform.config_map == "r1-cloudpbx-platform"  # the workloads' owner
    without = {k: v for k, v in env.items() if k != "CLOUDPBX_PLATFORM_CONFIGMAP"}
    with pytest.raises(ConfigError, match="CLOUDPBX_PLATFORM_CONFIGMAP is required"):
        from_env(without, text)
    # every namespace is watched; the Tenants of tenantNamespaces are served
    assert (config.watched_namespaces, config.served_namespaces) == ((), frozenset({"pbx"}))
    faults = [
        ("version: 1", "version: 2", "version must be 1"),
        ("tenantNamespaces:\n- pbx", "tenantNamespaces: pbx", "tenantNamespaces must be a list"),
    ]
    for old, new, message in faults:
        with pytest.raises(ConfigError, match=message):
            parse_platform(text.replace(old, new), "r1-cloudpbx-platform")
