"""The Helm chart charts/cloudpbx: it lints, renders with each values file under
tests/chart/values/ into objects a recent Kubernetes accepts (kubernetes-validate
--strict), refuses bad values by its schema, and renders what the operator and the
cluster's security need: CRDs only when asked (and kept), least-privilege RBAC, a
non-root operator on a read-only root file system, a relay NetworkPolicy that keeps the
relay out of the cluster, and the platform configuration the operator reads.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .k8s_tools import (
    BAD_VALUES,
    CHART,
    CRD_FILES,
    NAMESPACE,
    RELEASE,
    VALUES,
    Object,
    find,
    helm,
    one,
    render,
    render_text,
    run,
    values_file,
)

VALUES_FILES = sorted(path.stem for path in VALUES.glob("*.yaml"))
BAD_FILES = sorted(BAD_VALUES.glob("*.yaml"))
#: kubernetes-validate's schemas of this Kubernetes version (kubectl here is 1.34).
KUBERNETES_VERSION = "1.34.0"
FULLNAME = f"{RELEASE}-cloudpbx"
GOLDEN_PLATFORM = Path(__file__).resolve().parent / "data" / "platform.yaml"
PEERING_CRD = CHART / "files" / "kopf" / "clusterkopfpeerings.kopf.dev.yaml"


def values_schema() -> Object:
    schema: Object = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    return schema


def chart_values() -> Object:
    values: Object = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return values


def test_the_values_files_under_test() -> None:
    assert VALUES_FILES == [
        "crds-not-kept",
        "crds-off",
        "default",
        "operator-ha",
        "production",
        "servicemonitor",
        "trial",
    ]


# --- lint, schema, Kubernetes' own schemas ---------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
def test_helm_lint(strict: bool) -> None:
    result = run([helm(), "lint", CHART, *(["--strict"] if strict else [])])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUES_FILES)
def test_helm_lint_strict_with_values(values: str) -> None:
    result = run([helm(), "lint", "--strict", CHART, "--values", values_file(values)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES_FILES)
def test_rendered_objects_are_valid_kubernetes(values: str, tmp_path: Path) -> None:
    manifests = tmp_path / "rendered.yaml"
    manifests.write_text(render_text(values), encoding="utf-8")
    validate = Path(sys.executable).with_name("kubernetes-validate")
    result = run(
        [validate, "--strict", "--kubernetes-version", KUBERNETES_VERSION, manifests],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every built-in object was checked; only custom resources (ServiceMonitor) are not.
    output = result.stdout + result.stderr
    built_in = [item for item in render(values) if item["kind"] != "ServiceMonitor"]
    assert output.count(" passed for resource ") == len(built_in), output


def test_values_yaml_is_valid_against_its_schema() -> None:
    jsonschema.Draft7Validator.check_schema(values_schema())
    jsonschema.validate(chart_values(), values_schema(), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("values", VALUES_FILES)
def test_each_values_file_is_valid_against_the_schema(values: str) -> None:
    merged = _merged(chart_values(), yaml.safe_load(values_file(values).read_text()) or {})
    jsonschema.validate(merged, values_schema(), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda path: path.stem)
def test_bad_values_are_refused_by_the_schema(bad: Path) -> None:
    merged = _merged(chart_values(), yaml.safe_load(bad.read_text()))
    assert not jsonschema.Draft7Validator(values_schema()).is_valid(merged)


@pytest.mark.parametrize("command", ["template", "lint"])
@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda path: path.stem)
def test_bad_values_are_refused_by_helm(bad: Path, command: str) -> None:
    release = [RELEASE] if command == "template" else []
    result = run([helm(), command, *release, CHART, "--values", bad])
    assert result.returncode != 0, f"helm {command} took {bad.name}"
    assert "schema" in result.stdout + result.stderr


def test_a_backwards_media_port_range_is_refused() -> None:
    sets = ["--set", "relay.portRange.min=40000", "--set", "relay.portRange.max=30000"]
    result = run([helm(), "template", RELEASE, CHART, *sets])
    assert result.returncode != 0
    assert "relay.portRange: min must be below max" in result.stderr


def _merged(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {
            key: _merged(base.get(key), override.get(key, base.get(key)))
            for key in base.keys() | override.keys()
        }
    return override


def test_every_value_is_documented_where_it_is_declared() -> None:
    """Each key of values.yaml that holds a value has a comment just above it, or sits in a
    section that has one (resources, labels)."""
    lines = (CHART / "values.yaml").read_text(encoding="utf-8").splitlines()
    undocumented = []
    open_sections: list[tuple[int, bool]] = []  # (indent, documented) of enclosing keys
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if match is None:
            continue
        indent = len(match.group(1))
        while open_sections and open_sections[-1][0] >= indent:
            open_sections.pop()
        previous = next((text for text in reversed(lines[:index]) if text.strip()), "")
        documented = previous.lstrip().startswith("#") or any(doc for _, doc in open_sections)
        if match.group(3).split("#")[0].strip():
            if not documented:
                undocumented.append(line.strip())
        else:
            open_sections.append((indent, documented))
    assert undocumented == []


# --- CRDs ---------------------------------------------------------------------------------------


def _crds(values: str) -> list[Object]:
    return find(render(values), "CustomResourceDefinition")


def test_crds_are_rendered_from_the_plain_files_and_kept() -> None:
    """Tenant, Trunk and DialPlan, and kopf's ClusterKopfPeering beside them."""
    rendered = {crd["metadata"]["name"]: crd for crd in _crds("default")}
    paths = [*sorted(CRD_FILES.glob("*.yaml")), PEERING_CRD]
    files = [yaml.safe_load(path.read_text()) for path in paths]
    assert sorted(rendered) == sorted(crd["metadata"]["name"] for crd in files)
    for crd in files:
        assert rendered[crd["metadata"]["name"]]["spec"] == crd["spec"]
        metadata = rendered[crd["metadata"]["name"]]["metadata"]
        assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_crds_not_kept_when_asked() -> None:
    for crd in _crds("crds-not-kept"):
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


def test_no_crds_when_disabled() -> None:
    assert _crds("crds-off") == []
    assert find(render("crds-off"), "Deployment") != []


# --- RBAC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_FILES)
def test_rbac_has_no_wildcards_and_no_admin(values: str) -> None:
    objects = render(values)
    for role in find(objects, "ClusterRole") + find(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")


def _rules(role: Object) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_wide_the_operator_gets_its_resources_namespaces_events_and_peering() -> None:
    role = one(render(), "ClusterRole")
    read_write = {"get", "list", "watch", "patch", "update"}
    kinds = ("tenants", "trunks", "dialplans")
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    # kopf's peering: its own ClusterKopfPeering to read and keep alive in, by name
    assert named == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"],
         "resourceNames": [f"{FULLNAME}-operator"], "verbs": ["get", "patch"]},
    ]  # fmt: skip
    role = {"rules": [rule for rule in role["rules"] if rule not in named]}
    assert _rules(role) == {
        *(("kopf.dev", "clusterkopfpeerings", verb) for verb in ("list", "watch", "create")),
        *(("cloudpbx.io", kind, verb) for kind in kinds for verb in read_write),
        *(
            ("cloudpbx.io", f"{kind}/status", verb)
            for kind in kinds
            for verb in ("get", "patch", "update")
        ),
        *(("cloudpbx.io", f"{kind}/finalizers", "update") for kind in kinds),
        *(("", "namespaces", verb) for verb in ("get", "list", "watch")),
        ("", "events", "create"),
        ("events.k8s.io", "events", "create"),
    }
    binding = one(render(), "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{FULLNAME}-operator", "namespace": NAMESPACE}
    ]


def test_in_its_namespace_the_operator_manages_the_workloads() -> None:
    role = one(render(), "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    verbs = ("get", "list", "watch", "create", "update", "patch", "delete")
    resources = [
        ("apps", "deployments"),
        ("apps", "daemonsets"),
        ("", "services"),
        ("", "secrets"),
        ("policy", "poddisruptionbudgets"),
    ]
    named = [rule for rule in role["rules"] if "resourceNames" in rule]
    assert _rules({"rules": [rule for rule in role["rules"] if rule not in named]}) == {
        (group, kind, verb) for group, kind in resources for verb in verbs
    }
    # the platform's ConfigMap, which owns the workloads: read, and named in owner references
    # that block its deletion; no other ConfigMap
    assert named == [
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": [f"{FULLNAME}-platform"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps/finalizers"],
         "resourceNames": [f"{FULLNAME}-platform"], "verbs": ["update"]},
    ]  # fmt: skip


def test_tenant_namespaces_get_secrets_only() -> None:
    """Read what Tenants and Trunks refer to, write a Tenant's generated SIP passwords;
    never delete, and nothing but Secrets."""
    roles = [
        role for role in find(render("production"), "Role") if "tenant" in role["metadata"]["name"]
    ]
    assert sorted(role["metadata"]["namespace"] for role in roles) == [
        "customers-eu",
        "customers-us",
    ]
    for role in roles:
        verbs = ("get", "list", "watch", "create", "update", "patch")
        assert _rules(role) == {("", "secrets", verb) for verb in verbs}


# --- the operator's Deployment ------------------------------------------------------------------


def _operator(values: str | None = None) -> Object:
    return one(render(values), "Deployment", f"{FULLNAME}-operator")


def _env(container: Object) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


@pytest.mark.parametrize("values", VALUES_FILES)
def test_every_container_runs_as_non_root_on_a_read_only_root(values: str) -> None:
    for workload in find(render(values), "Deployment") + find(render(values), "StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["runAsNonRoot"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert not re.search(r":latest(@|$)", container["image"])


def test_the_operator_runs_its_module_with_the_platform_configuration() -> None:
    deployment = _operator()
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "cloudpbx_operator"]
    assert container["image"] == "cloudpbx/operator:0.1.0"
    env = _env(container)
    assert env["CLOUDPBX_PLATFORM"] == "/etc/cloudpbx/platform.yaml"
    assert env["CLOUDPBX_PLATFORM_CONFIGMAP"] == f"{FULLNAME}-platform"  # the workloads' owner
    [mount] = [item for item in container["volumeMounts"] if item["name"] == "platform"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/cloudpbx", True)
    [volume] = [item for item in pod["volumes"] if item["name"] == "platform"]
    assert volume["configMap"]["name"] == f"{FULLNAME}-platform"
    assert pod["serviceAccountName"] == f"{FULLNAME}-operator"


@pytest.mark.parametrize(
    ("values", "redis", "billing"),
    [
        ("default", ("cloudpbx-redis", "url"), ("cloudpbx-billing", "dsn")),
        ("production", ("pbx-redis", "redis-url"), ("billing-postgres", "url")),
        ("trial", (f"{FULLNAME}-redis-url", "url"), (f"{FULLNAME}-postgresql-dsn", "dsn")),
    ],
)
def test_store_urls_come_from_secrets(
    values: str, redis: tuple[str, str], billing: tuple[str, str]
) -> None:
    [container] = _operator(values)["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    for name, (secret, key) in (("CLOUDPBX_REDIS_URL", redis), ("CLOUDPBX_BILLING_URL", billing)):
        assert env[name] == {"secretKeyRef": {"name": secret, "key": key}}
    secrets = {item["metadata"]["name"] for item in find(render(values), "Secret")}
    bundled = {f"{FULLNAME}-redis-url", f"{FULLNAME}-postgresql-dsn"}
    assert secrets == (bundled if values == "trial" else set())


def test_a_trial_bundles_postgres_and_redis_from_official_images() -> None:
    objects = render("trial")
    images = {
        item["metadata"]["name"]: item["spec"]["template"]["spec"]["containers"][0]["image"]
        for item in find(objects, "StatefulSet")
    }
    assert images == {f"{FULLNAME}-postgresql": "postgres:16", f"{FULLNAME}-redis": "redis:7"}
    dsn = one(objects, "Secret", f"{FULLNAME}-postgresql-dsn")["stringData"]
    assert re.fullmatch(
        rf"postgresql://cloudpbx:{dsn['password']}@{FULLNAME}-postgresql\.pbx\.svc:5432/cloudpbx",
        dsn["dsn"],
    )
    assert len(dsn["password"]) == 32
    assert find(render("default"), "StatefulSet") == []


def test_production_pins_the_operator_image_by_digest() -> None:
    [container] = _operator("production")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "cloudpbx/operator:0.1.0@sha256:" + "0123456789abcdef" * 4


def test_the_operators_replicas_take_turns_by_kopfs_peering() -> None:
    """One ClusterKopfPeering (the operator watches every namespace, so kopf peers
    cluster-wide; the operator creates the object: a chart cannot hold it beside its CRD),
    named as the ClusterRole is, each pod's priority from its name."""
    for values in ("default", "operator-ha"):
        [container] = _operator(values)["spec"]["template"]["spec"]["containers"]
        env = _env(container)
        assert env["CLOUDPBX_PEERING"] == f"{FULLNAME}-operator"
        assert env["CLOUDPBX_PEERING_LIFETIME_S"] == "60"
        assert env["CLOUDPBX_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert _operator("operator-ha")["spec"]["replicas"] == 2
    crd = one(render(), "CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")
    assert (crd["spec"]["group"], crd["spec"]["scope"]) == ("kopf.dev", "Cluster")
    assert crd["spec"]["names"]["kind"] == "ClusterKopfPeering"
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert find(render("crds-off"), "CustomResourceDefinition") == []


def test_more_operators_are_kept_from_being_drained_together() -> None:
    pdb = one(render("operator-ha"), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == _operator("operator-ha")["spec"]["selector"]
    assert find(render("default"), "PodDisruptionBudget") == []  # one replica: nothing to keep


# --- the relay's NetworkPolicy -----------------------------------------------------------------


def _relay_policy(values: str | None = None) -> Object:
    spec: Object = one(render(values), "NetworkPolicy", f"{FULLNAME}-relay")["spec"]
    return spec


@pytest.mark.parametrize("values", ["default", "production"])
def test_relays_reach_nothing_inside_the_cluster_but_dns(values: str) -> None:
    policy = _relay_policy(values)
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    cidrs = _merged(chart_values(), yaml.safe_load(values_file(values).read_text()) or {})[
        "networkPolicy"
    ]["clusterCIDRs"]
    blocks = [
        peer["ipBlock"] for rule in policy["egress"] for peer in rule["to"] if "ipBlock" in peer
    ]
    excluded = {cidr for block in blocks for cidr in block.get("except", [])}
    assert excluded == set(cidrs)
    for block in blocks:
        network = ipaddress.ip_network(block["cidr"])
        for cidr in block.get("except", []):
            excluded_network = ipaddress.ip_network(cidr)
            assert excluded_network.network_address in network
            assert excluded_network.broadcast_address in network
        if network.version == 6:
            assert block.get("except"), "IPv6 open without the cluster's ranges excluded"
    [dns] = [rule for rule in policy["egress"] if "ports" in rule]
    assert {(port["protocol"], port["port"]) for port in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_default_ipv4_ranges_are_rfc_1918_and_no_ipv6_egress() -> None:
    blocks = [
        peer["ipBlock"]
        for rule in _relay_policy()["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}
    ]


def test_relays_take_media_from_anywhere_and_control_from_edges_only() -> None:
    policy = _relay_policy()
    media, control, metrics = policy["ingress"]
    assert "from" not in media
    assert media["ports"] == [
        {"protocol": "UDP", "port": 30000, "endPort": 39999},
        {"protocol": "UDP", "port": 3478},
    ]
    assert control["ports"] == [{"protocol": "UDP", "port": 2223}]
    assert control["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "cloudpbx",
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "edge",
                }
            }
        }
    ]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9061}]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "relay"


# --- ServiceMonitor, NOTES, the platform configuration -----------------------------------------


def test_service_monitor_only_when_enabled() -> None:
    assert find(render("default"), "ServiceMonitor") == []
    monitor = one(render("servicemonitor"), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert monitor["spec"]["selector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["edge", "relay"]}
    ]


def _platform(values: str | None = None) -> Object:
    config = one(render(values), "ConfigMap", f"{FULLNAME}-platform")
    platform: Object = yaml.safe_load(config["data"]["platform.yaml"])
    return platform


def test_platform_configuration_is_the_pinned_contract() -> None:
    """The operator reads this shape; tests/chart/data/platform.yaml pins it (default values,
    release r1 in namespace pbx). Change both sides on purpose."""
    golden = yaml.safe_load(GOLDEN_PLATFORM.read_text(encoding="utf-8"))
    assert _platform("default") == golden


def test_platform_configuration_follows_the_values() -> None:
    platform = _platform("production")
    assert platform["tenantNamespaces"] == [NAMESPACE, "customers-eu", "customers-us"]
    assert platform["stores"] == {
        "billing": {"secretName": "billing-postgres", "secretKey": "url"},
        "redis": {"secretName": "pbx-redis", "secretKey": "redis-url"},
    }
    assert platform["relay"]["portRange"] == {"min": 40000, "max": 49999}
    assert platform["edge"]["advertise"] == "sip.pbx.example"
    assert platform["labels"]["team"] == "voice"
    assert platform["imagePullSecrets"] == ["registry-credentials"]
    trial = _platform("trial")
    assert (trial["relay"]["kind"], trial["relay"]["hostNetwork"]) == ("Deployment", False)


def test_the_operator_restarts_when_its_configuration_changes() -> None:
    def checksum(values: str) -> str:
        annotations = _operator(values)["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/platform"]
        return value

    assert checksum("default") != checksum("production")
    assert checksum("default") == checksum("crds-off")


def test_notes_say_where_the_store_urls_come_from() -> None:
    result = run([helm(), "install", RELEASE, CHART, "--dry-run=client", "-n", NAMESPACE])
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "create secret generic cloudpbx-billing --from-literal=dsn=postgresql://" in notes
    assert "kubectl -n pbx apply -f examples/" in notes
