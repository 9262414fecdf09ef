"""The CRDs Tenant, Trunk and DialPlan (charts/cloudpbx/files/crds): well-formed for the API
server (structural schemas, RE2-safe patterns, valid defaults), with the printer columns,
short names and status subresource users expect, and in step with the compilers in
``contracts``: the same fields, the same verdict on each manifest of a table, and defaults
that change no compiled snapshot.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from contracts import dialplan, manifest, trunk
from contracts.resources import ManifestError
from contracts.snapshot import SnapshotError

from .k8s_tools import (
    Object,
    crd,
    crd_errors,
    crd_kinds,
    defaulted,
    example,
    example_secrets,
    open_api_schema,
)

KINDS = ["DialPlan", "Tenant", "Trunk"]
#: Keys a node inside allOf/anyOf/oneOf/not may not set (Kubernetes structural schemas).
_NOT_IN_JUNCTORS = {"type", "default", "description", "additionalProperties", "nullable"}
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def test_the_three_kinds_are_there() -> None:
    assert crd_kinds() == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_names_version_and_status(kind: str) -> None:
    spec = crd(kind)["spec"]
    assert crd(kind)["metadata"]["name"] == f"{spec['names']['plural']}.cloudpbx.io"
    assert (spec["group"], spec["scope"]) == ("cloudpbx.io", "Namespaced")
    assert spec["names"]["shortNames"]
    assert spec["names"]["categories"] == ["cloudpbx"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }


def test_tenant_columns_show_domain_and_plan() -> None:
    columns = crd("Tenant")["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [column["name"] for column in columns if column.get("priority", 0) == 0]
    assert shown == ["Domain", "Plan", "Ready", "Age"]


@pytest.mark.parametrize("kind", KINDS)
def test_status_has_conditions_with_observed_generation(kind: str) -> None:
    status = open_api_schema(kind)["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    condition = status["conditions"]["items"]
    assert set(condition["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert condition["required"] == ["type", "status"]


def test_trunk_status_has_the_registration() -> None:
    registration = open_api_schema("Trunk")["properties"]["status"]["properties"]["registration"]
    assert registration["properties"]["state"]["enum"] == [
        "Registering",
        "Registered",
        "Failed",
        "Disabled",
    ]
    assert set(registration["properties"]) == {
        "state",
        "lastStatusCode",
        "lastReason",
        "failures",
        "holder",
        "updatedAt",
    }


# --- structural, as the API server requires -------------------------------------------------


def _nodes(schema: Object, path: str, in_junctor: bool) -> Iterator[tuple[str, Object, bool]]:
    yield path, schema, in_junctor
    for key, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{key}", in_junctor)
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]", in_junctor)
    for junctor in _JUNCTORS:
        subs = schema.get(junctor, [])
        for index, sub in enumerate(subs if isinstance(subs, list) else [subs]):
            yield from _nodes(sub, f"{path}.{junctor}[{index}]", True)


def _all_nodes() -> Iterator[tuple[str, str, Object, bool]]:
    for kind in KINDS:
        for path, node, in_junctor in _nodes(open_api_schema(kind), kind, False):
            yield kind, path, node, in_junctor


def test_schemas_are_structural() -> None:
    problems = []
    for _, path, node, in_junctor in _all_nodes():
        if in_junctor:
            problems += [f"{path}: {key} inside a junctor" for key in _NOT_IN_JUNCTORS & set(node)]
        elif "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        if "uniqueItems" in node:
            problems.append(f"{path}: uniqueItems (use x-kubernetes-list-type)")
        if "additionalProperties" in node and "properties" in node:
            problems.append(f"{path}: additionalProperties beside properties")
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            missing = set(node["x-kubernetes-list-map-keys"]) - required
            problems += [f"{path}: map key {key} is not required" for key in missing]
    assert problems == []


def test_junctors_only_narrow_declared_fields() -> None:
    """A property named in a oneOf/anyOf branch must be declared beside it."""
    problems = []
    for _, path, node, _ in _all_nodes():
        declared = set(node.get("properties", {}))
        for junctor in ("oneOf", "anyOf", "allOf"):
            for branch in node.get(junctor, []):
                for part in (branch, branch.get("not", {})):
                    named = set(part.get("properties", {})) | set(part.get("required", []))
                    problems += [f"{path}.{junctor}: {key}" for key in sorted(named - declared)]
    assert problems == []


def test_patterns_are_anchored_and_re2_safe() -> None:
    """Go's RE2 (the API server) has no look-around or back-references; Python's
    ``re.search`` (jsonschema, these tests) needs the anchors to match the whole value."""
    for _, path, node, _ in _all_nodes():
        pattern = node.get("pattern")
        if pattern is None:
            continue
        re.compile(pattern)
        assert pattern.startswith("^"), path
        assert pattern.endswith("$"), path
        assert not re.search(r"\(\?[=!<]|\\[1-9]", pattern), path


def test_defaults_are_valid_values_of_their_fields() -> None:
    for _, path, node, _ in _all_nodes():
        if "default" in node:
            schema = {key: value for key, value in node.items() if key != "default"}
            assert jsonschema.Draft7Validator(schema).is_valid(node["default"]), path


# --- the same fields as the compilers ----------------------------------------------------------


def _props(kind: str, *path: str) -> set[str]:
    node = open_api_schema(kind)["properties"]["spec"]
    for key in path:
        node = node["items"] if key == "[]" else node["properties"][key]
    return set(node["properties"])


@pytest.mark.parametrize(
    ("kind", "path", "compiler_keys"),
    [
        ("Tenant", (), manifest._SPEC_KEYS),
        ("Tenant", ("limits",), set(manifest.LIMIT_FIELDS)),
        ("Tenant", ("media",), set(manifest.MEDIA_FIELDS)),
        ("Tenant", ("extensions", "[]"), manifest._EXTENSION_KEYS),
        ("Tenant", ("extensions", "[]", "passwordSecretRef"), manifest._SECRET_REF_KEYS),
        ("Tenant", ("billing",), manifest._BILLING_KEYS),
        ("Tenant", ("billing", "rates", "[]"), manifest._RATE_KEYS),
        ("Tenant", ("billing", "trial"), set(manifest.TRIAL_FIELDS)),
        ("Trunk", (), trunk._SPEC_KEYS),
        ("DialPlan", ("rules", "[]"), dialplan._RULE_KEYS),
    ],
)
def test_the_schema_declares_what_the_compiler_reads(
    kind: str, path: tuple[str, ...], compiler_keys: set[str]
) -> None:
    assert _props(kind, *path) == set(compiler_keys)


def test_isolation_values_are_the_compilers() -> None:
    isolation = open_api_schema("Tenant")["properties"]["spec"]["properties"]["isolation"]
    assert tuple(isolation["enum"]) == manifest.ISOLATIONS
    assert isolation["default"] == manifest.ISOLATIONS[0]


# --- the same verdict as the compilers ---------------------------------------------------------


def _compile(document: Object) -> None:
    kind = document["kind"]
    if kind == "Tenant":
        manifest.compile_tenant(document, example_secrets())
    elif kind == "Trunk":
        trunk.compile_trunk(document, tenant="acme")
    else:
        dialplan.compile_dial_plans([document], tenant="acme", trunks={"carrier"})


def _changed(kind: str, path: str, value: object) -> Object:
    """The example of ``kind`` with ``path`` (``spec.limits.ringTimeoutSeconds``,
    ``spec.rules[0].match``) set to ``value``; ``DROP`` removes it."""
    document = copy.deepcopy(example(kind))
    *parents, last = re.findall(r"[^.\[\]]+", path)
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    key: Any = int(last) if last.isdigit() else last
    if value is DROP:
        del node[key]
    else:
        node[key] = value
    return document


DROP = object()
#: (kind, path, value): manifests that the schema and the compiler both refuse.
REFUSED = [
    ("Tenant", "spec.domain", DROP),
    ("Tenant", "spec.domain", "not a host!"),
    ("Tenant", "spec.domian", "typo.example"),
    ("Tenant", "spec.isolation", "private"),
    ("Tenant", "spec.enabled", "yes"),
    ("Tenant", "spec.media.anchor", "no"),
    ("Tenant", "spec.limits.ringTimeoutSeconds", 0),
    ("Tenant", "spec.limits.maxConcurrentCalls", -1),
    ("Tenant", "spec.limits.maxContactsPerExtension", 1001),
    ("Tenant", "spec.limits.maxExpires", 60),
    ("Tenant", "spec.extensions", DROP),
    ("Tenant", "spec.extensions[0].number", 1001),
    ("Tenant", "spec.extensions[0].number", "10-01"),
    ("Tenant", "spec.extensions[1].number", "1001"),
    ("Tenant", "spec.extensions[0].passwordSecretRef", DROP),
    ("Tenant", "spec.extensions[0].passwordSecretRef.key", DROP),
    ("Tenant", "spec.extensions[0].password", "inline"),
    ("Tenant", "spec.extensions[0].displayName", "Front\r\ndesk"),
    ("Tenant", "spec.billing.plan", "free"),
    ("Tenant", "spec.billing.currency", "eur"),
    ("Tenant", "spec.billing.trial", {"callLimitSeconds": 30}),
    ("Tenant", "spec.billing.rates[0].perMinute", "0.0000001"),
    ("Tenant", "spec.billing.rates[0].perMinute", "-1"),
    ("Tenant", "spec.billing.rates[0].perMinute", DROP),
    ("Tenant", "spec.billing.rates[0].increments", "60"),
    ("Tenant", "spec.billing.rates[0].prefix", "+49"),
    ("Trunk", "spec.tenant", DROP),
    ("Trunk", "spec.host", "bad_host"),
    ("Trunk", "spec.port", 0),
    ("Trunk", "spec.port", "5060"),
    ("Trunk", "spec.transport", "tls"),
    ("Trunk", "spec.username", "user name"),
    ("Trunk", "spec.password", "inline-secret"),
    ("Trunk", "spec.password", {"secretRef": {"name": "acme-carrier"}}),
    ("Trunk", "spec.password.secretRef.name", "Not_A_Name"),
    ("Trunk", "spec.register.expires", 30),
    ("Trunk", "spec.callerId", {"policy": "fixed"}),
    ("Trunk", "spec.callerId", {"policy": "trunk", "number": "+4930555"}),
    ("Trunk", "spec.dids", ["+4930555101", "+4930555101"]),
    ("Trunk", "spec.dids", ["030-555"]),
    ("Trunk", "spec.codecs", ["PCMA", "GSM"]),
    ("Trunk", "spec.maxChannels", -1),
    ("Trunk", "spec.outboundProxy", "edge.carrier.example"),
    ("Trunk", "spec.registrar", "sip.carrier.example"),
    ("Trunk", "spec.inboundSources", "203.0.113.0/24"),
    ("Trunk", "spec.inboundSources", ["sip.carrier.example"]),
    ("Trunk", "spec.inboundSources", [f"192.0.2.{n}" for n in range(33)]),
    ("DialPlan", "spec.tenant", DROP),
    ("DialPlan", "spec.priority", "high"),
    ("DialPlan", "spec.rules", []),
    ("DialPlan", "spec.rules[0].name", ""),
    ("DialPlan", "spec.rules[0].match", {"prefix": "0", "regex": "0.*"}),
    ("DialPlan", "spec.rules[0].match", {}),
    ("DialPlan", "spec.rules[0].match", {"prefix": "0x"}),
    ("DialPlan", "spec.rules[0].match", {"pattern": "_0.X"}),
    ("DialPlan", "spec.rules[0].match", {"pattern": "_0[]X"}),
    ("DialPlan", "spec.rules[0].match", {"glob": "0*"}),
    ("DialPlan", "spec.rules[0].prepend", "0a"),
    ("DialPlan", "spec.rules[0].strip", -1),
    ("DialPlan", "spec.rules[0].route", {}),
    ("DialPlan", "spec.rules[0].route", {"extension": True, "voicemail": True}),
    ("DialPlan", "spec.rules[0].route", {"extension": False}),
    ("DialPlan", "spec.rules[0].route", {"extension": True, "noAnswerSeconds": 5}),
    ("DialPlan", "spec.rules[0].route", {"trunks": []}),
    ("DialPlan", "spec.rules[0].route", {"trunks": ["carrier", "carrier"]}),
    ("DialPlan", "spec.rules[0].route", {"trunks": ["carrier"], "noAnswerSeconds": 0}),
    ("DialPlan", "spec.rules[0].route", {"reject": {"status": 302, "reason": "Moved"}}),
    ("DialPlan", "spec.rules[0].route", {"reject": {"status": 403}}),
    ("DialPlan", "spec.rules[0].route", {"dialPlan": "Other_Plan"}),
    ("DialPlan", "spec.rules[0].color", "red"),
    ("DialPlan", "spec.rules[1].name", "emergency"),
]
#: Changes that both accept.
ACCEPTED = [
    ("Tenant", "spec.domain", "SIP.Acme.Example."),
    ("Tenant", "spec.aliases", ["127.0.0.1", "[2001:db8::5]", "localhost"]),
    ("Tenant", "spec.isolation", "dedicated"),
    ("Tenant", "spec.billing", {"plan": "trial", "trial": {"expires": "2026-12-31"}}),
    ("Tenant", "spec.billing", {"plan": "trial", "trial": {"expires": "2026-12-31T12:00:00Z"}}),
    ("Tenant", "spec.billing.rates[0].perMinute", 1),
    ("Tenant", "spec.billing.rates[0].connectFee", "0.000001"),
    ("Tenant", "spec.extensions", []),
    ("Trunk", "spec.codecs", ["pcma", "telephone-event"]),
    ("Trunk", "spec.callerId", {"policy": "fixed", "number": "+4930555100"}),
    ("Trunk", "spec.password", {"secretRef": {"name": "acme-carrier", "key": "pass.word"}}),
    ("Trunk", "spec.host", "192.0.2.10"),
    ("Trunk", "spec.outboundProxy", "sip:edge.carrier.example:5070"),
    ("Trunk", "spec.inboundSources", ["203.0.113.0/24", "198.51.100.7", "2001:db8::/48"]),
    ("DialPlan", "spec.priority", -5),
    ("DialPlan", "spec.rules[0].match", {"pattern": "_."}),
    ("DialPlan", "spec.rules[0].match", {"pattern": "9[15-7#]XX!"}),
    ("DialPlan", "spec.rules[0].route", {"voicemail": True}),
    ("DialPlan", "spec.rules[0].route", {"reject": {"status": 486, "reason": "Busy Here"}}),
]


def _compiles(document: Object) -> bool:
    try:
        _compile(document)
    except (ManifestError, SnapshotError):
        return False
    return True


@pytest.mark.parametrize(("kind", "path", "value"), REFUSED)
def test_the_schema_refuses_what_the_compiler_refuses(kind: str, path: str, value: object) -> None:
    document = _changed(kind, path, value)
    assert not _compiles(document), "the compiler takes it: the table is wrong"
    assert crd_errors(document) != []


@pytest.mark.parametrize(("kind", "path", "value"), ACCEPTED)
def test_the_schema_accepts_what_the_compiler_accepts(kind: str, path: str, value: object) -> None:
    document = _changed(kind, path, value)
    assert _compiles(document)
    assert crd_errors(document) == []


#: What OpenAPI cannot say: the schema takes these, the operator reports them in status.
LEFT_TO_THE_OPERATOR = [
    ("Tenant", "spec.limits", {"minExpiresSeconds": 600, "maxExpiresSeconds": 60}),
    ("Tenant", "spec.extensions[0].passwordSecretRef.name", "no-such-secret"),
    ("Tenant", "spec.aliases", ["sip.acme.example"]),
    ("Trunk", "spec.password.secretRef.key", "no-such-key"),
    # the CRD's CEL rule refuses the first three in a cluster (the validator here runs no
    # CEL); the compiler takes an address and its /32 for the same, a duplicate
    ("Trunk", "spec.inboundSources", ["203.0.113.5/24"]),
    ("Trunk", "spec.inboundSources", ["10.0.0.0/8"]),
    ("Trunk", "spec.inboundSources", ["999.1.1.1"]),
    ("Trunk", "spec.inboundSources", ["192.0.2.7", "192.0.2.7/32"]),
    ("DialPlan", "spec.rules[0].match", {"regex": "(unclosed"}),
    ("DialPlan", "spec.rules[0].match", {"pattern": "_[9-1]X"}),
    ("DialPlan", "spec.rules[0].route", {"trunks": ["no-such-trunk"]}),
    ("DialPlan", "spec.rules[0].route", {"dialPlan": "no-such-plan"}),
    (
        "DialPlan",
        "spec.rules[3]",
        {
            "name": "n",
            "match": {"prefix": "1"},
            "maxLength": 1,
            "minLength": 2,
            "route": {"extension": True},
        },
    ),
]


@pytest.mark.parametrize(("kind", "path", "value"), LEFT_TO_THE_OPERATOR)
def test_what_only_the_operator_can_check(kind: str, path: str, value: object) -> None:
    document = _changed(kind, path, value)
    assert crd_errors(document) == []
    if kind != "Trunk":  # a Trunk's Secret is resolved by whoever loads it, not its compiler
        assert not _compiles(document)


# --- defaults the API server applies change nothing -------------------------------------------


def _snapshot_of(document: Object) -> object:
    kind = document["kind"]
    if kind == "Tenant":
        return manifest.compile_tenant(document, example_secrets())
    if kind == "Trunk":
        return trunk.compile_trunk(document, tenant="acme")
    return dialplan.compile_dial_plans([document], tenant="acme", trunks={"carrier"})


def _minimal(kind: str) -> Object:
    """The example with only the required fields of everything it holds."""
    document = example(kind)
    spec = document["spec"]
    if kind == "Tenant":
        keep = {"domain", "extensions"}
        spec["extensions"] = [
            {"number": item["number"], "passwordSecretRef": item["passwordSecretRef"]}
            for item in spec["extensions"]
        ]
    elif kind == "Trunk":
        keep = {"tenant", "host", "username", "password"}
    else:
        keep = {"tenant", "rules"}
        spec["rules"] = [
            {"name": rule["name"], "match": rule["match"], "route": rule["route"]}
            for rule in spec["rules"]
        ]
    document["spec"] = {key: value for key, value in spec.items() if key in keep}
    return document


def _with(kind: str, spec: Object) -> Object:
    document = example(kind)
    document["spec"].update(spec)
    return document


DEFAULTING_CASES = [
    *(pytest.param(example(kind), id=f"{kind}-example") for kind in KINDS),
    *(pytest.param(_minimal(kind), id=f"{kind}-minimal") for kind in KINDS),
    pytest.param(_with("Tenant", {"billing": {"plan": "trial"}, "limits": {}}), id="trial"),
    pytest.param(_with("Tenant", {"limits": {"maxContactsPerExtension": 9}}), id="contacts"),
    pytest.param(_with("Trunk", {"register": {}, "callerId": {}}), id="empty-sections"),
]


@pytest.mark.parametrize("written", DEFAULTING_CASES)
def test_defaults_change_no_snapshot(written: Object) -> None:
    applied = defaulted(open_api_schema(written["kind"]), written)
    assert crd_errors(applied) == []
    assert _snapshot_of(applied) == _snapshot_of(written)
