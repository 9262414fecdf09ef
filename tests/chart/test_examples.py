"""The sample custom resources in examples/: the same YAML is valid for the cluster (the
CRDs' schemas) and for ``cloudpbx dev`` (its folder loader compiles it and routes calls as
the comments say); and a few broken ones are refused by the schemas.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts.dialplan import Reject, ToExtension, ToTrunks
from sipedge.tenants import load_manifest_folder

from .k8s_tools import EXAMPLES, crd_errors, example, example_documents


def test_the_examples_hold_one_of_each_kind() -> None:
    kinds = sorted(document["kind"] for document in example_documents())
    assert kinds == ["DialPlan", "Secret", "Secret", "Tenant", "Trunk"]


@pytest.mark.parametrize(
    "document",
    [doc for doc in example_documents() if doc["apiVersion"] == "cloudpbx.io/v1"],
    ids=lambda doc: f"{doc['kind']}-{doc['metadata']['name']}",
)
def test_each_example_is_valid_for_the_cluster(document: dict[str, Any]) -> None:
    assert crd_errors(document) == []


def test_cloudpbx_dev_serves_the_same_folder() -> None:
    [acme] = load_manifest_folder(EXAMPLES)
    assert (acme.name, acme.domain, acme.billing.plan) == ("acme", "sip.acme.example", "prepaid")
    assert [extension.number for extension in acme.extensions] == ["1001", "1002"]
    assert [item.name for item in acme.trunks] == ["carrier"]
    assert acme.trunk_password("carrier") == "change-me-carrier"
    assert acme.trunk_of_did("+4930555102") is acme.trunk("carrier")


@pytest.mark.parametrize(
    ("dialled", "rule", "number", "route"),
    [
        ("112", "emergency", "112", ToTrunks(("carrier",))),
        ("4930555101", "dids", "1001", ToExtension()),
        ("4930555102", "dids", "1002", ToExtension()),
        ("09001234567", "premium", "09001234567", Reject(403, "Premium numbers are barred")),
        ("0301234567", "national", "+49301234567", ToTrunks(("carrier",), 40)),
    ],
)
def test_the_example_dial_plan_routes_as_its_comments_say(
    dialled: str, rule: str, number: str, route: object
) -> None:
    [acme] = load_manifest_folder(EXAMPLES)
    routed = acme.dial_plans.route(dialled)
    assert routed is not None
    assert (routed.plan, routed.rule, routed.number, routed.route) == (
        "acme-main",
        rule,
        number,
        route,
    )


def _broken(kind: str, **spec: object) -> dict[str, Any]:
    document = example(kind)
    document["spec"].update(spec)
    return document


@pytest.mark.parametrize(
    ("document", "fault"),
    [
        (_broken("Tenant", domain="acme pbx"), "spec.domain: 'acme pbx' does not match"),
        (_broken("Tenant", isolation="solo"), "spec.isolation: 'solo' is not one of"),
        (_broken("Tenant", extensions=[{"number": "1001"}]), "'passwordSecretRef' is a required"),
        (_broken("Trunk", transport="tls"), "spec.transport: 'tls' is not one of"),
        (_broken("Trunk", password={"file": "carrier.password"}), "'secretRef' is a required"),
        (_broken("DialPlan", rules=[]), "spec.rules: [] should be non-empty"),
        (
            _broken("DialPlan", rules=[{"name": "x", "match": {"prefix": "0"}, "route": {}}]),
            "spec.rules.0.route: {} is not valid under any of the given schemas",
        ),
    ],
    ids=[
        "domain",
        "isolation",
        "extension-password",
        "transport",
        "password-file",
        "no-rules",
        "no-route",
    ],
)
def test_broken_resources_are_refused(document: dict[str, Any], fault: str) -> None:
    errors = crd_errors(document)
    assert any(fault in error for error in errors), errors
