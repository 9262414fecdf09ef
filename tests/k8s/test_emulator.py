"""The emulator keeps the parts of the API's contract that kopf and kubectl rely on
(emulator.py's docstring lists them), checked over HTTP as a client sees them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .emulator import CRDS as CRD_RESOURCE
from .emulator import Cluster, running_cluster

TENANTS = "/apis/cloudpbx.io/v1/namespaces/pbx/tenants"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "tenants.cloudpbx.io"},
    "spec": {"group": "cloudpbx.io", "scope": "Namespaced",
             "names": {"kind": "Tenant", "plural": "tenants", "singular": "tenant"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}}}]},
}  # fmt: skip


class Client:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def watch(self, path: str, timeout_s: int = 1) -> list[dict[str, Any]]:
        separator = "&" if "?" in path else "?"
        url = f"{self.url}{path}{separator}watch=true&timeoutSeconds={timeout_s}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            return [json.loads(line) for line in response.read().splitlines() if line]


@pytest.fixture
def api() -> Iterator[tuple[Cluster, Client]]:
    with running_cluster() as (cluster, url):
        client = Client(url)
        assert client.call("POST", "/apis/" + "/".join(CRD_RESOURCE), CRD)[0] == 201
        yield cluster, client


def tenant(name: str = "acme", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "cloudpbx.io/v1", "kind": "Tenant", "metadata": {"name": name},
            "spec": spec or {"domain": "acme.example"}}  # fmt: skip


def test_discovery_serves_core_v1_and_the_crds_kind(api: tuple[Cluster, Client]) -> None:
    _, client = api
    assert client.call("GET", "/api/v1")[1]["groupVersion"] == "v1"
    resources = client.call("GET", "/apis/cloudpbx.io/v1")[1]["resources"]
    assert {r["name"] for r in resources} == {"tenants", "tenants/status"}
    assert client.call("GET", "/api/v1/namespaces")[0] == 200


def test_created_objects_get_server_metadata_and_lists_say_their_kind(
    api: tuple[Cluster, Client],
) -> None:
    _, client = api
    status, created = client.call("POST", TENANTS, tenant())
    meta = created["metadata"]
    assert status == 201
    assert (meta["namespace"], meta["generation"]) == ("pbx", 1)
    assert meta["uid"]
    assert meta["resourceVersion"]
    assert meta["creationTimestamp"]
    assert client.call("POST", TENANTS, tenant())[0] == 409
    listed = client.call("GET", TENANTS)[1]
    assert (listed["kind"], listed["apiVersion"]) == ("TenantList", "cloudpbx.io/v1")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["acme"]


def test_status_and_spec_are_written_apart_and_generation_counts_spec_changes(
    api: tuple[Cluster, Client],
) -> None:
    _, client = api
    client.call("POST", TENANTS, tenant())
    merge = "application/merge-patch+json"
    _, patched = client.call("PATCH", f"{TENANTS}/acme", {"status": {"x": 1}}, merge)
    assert "status" not in patched  # the main resource ignores status
    _, patched = client.call("PATCH", f"{TENANTS}/acme/status", {"status": {"x": 1}}, merge)
    assert (patched["status"], patched["metadata"]["generation"]) == ({"x": 1}, 1)
    version = patched["metadata"]["resourceVersion"]
    _, same = client.call("PATCH", f"{TENANTS}/acme", {"spec": {"domain": "acme.example"}}, merge)
    assert same["metadata"]["resourceVersion"] == version  # nothing changed: no new version
    _, changed = client.call("PATCH", f"{TENANTS}/acme", {"spec": {"domain": "b.example"}}, merge)
    assert (changed["metadata"]["generation"], changed["status"]) == (2, {"x": 1})


def test_a_failed_json_patch_test_is_422_and_changes_nothing(api: tuple[Cluster, Client]) -> None:
    _, client = api
    _, created = client.call("POST", TENANTS, tenant())
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "stale"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    status, _ = client.call("PATCH", f"{TENANTS}/acme", ops, "application/json-patch+json")
    assert status == 422
    ops[0]["value"] = created["metadata"]["resourceVersion"]
    status, patched = client.call("PATCH", f"{TENANTS}/acme", ops, "application/json-patch+json")
    assert (status, patched["metadata"]["finalizers"]) == (200, ["x"])


def test_a_watch_from_a_version_replays_what_came_after_it(api: tuple[Cluster, Client]) -> None:
    _, client = api
    client.call("POST", TENANTS, tenant("one"))
    listed = client.call("GET", TENANTS)[1]
    client.call("POST", TENANTS, tenant("two"))  # between the LIST and the WATCH
    since = listed["metadata"]["resourceVersion"]
    events = client.watch(f"{TENANTS}?resourceVersion={since}")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "two")]
    everything = client.watch(TENANTS)
    assert [e["object"]["metadata"]["name"] for e in everything] == ["one", "two"]
    selected = client.watch(f"{TENANTS}?fieldSelector=metadata.name%3Done")
    assert [e["object"]["metadata"]["name"] for e in selected] == ["one"]


def test_finalizers_hold_a_deletion_and_owned_objects_go_with_their_owner(
    api: tuple[Cluster, Client],
) -> None:
    cluster, client = api
    _, owner = client.call("POST", TENANTS, tenant())
    ref = {"apiVersion": "cloudpbx.io/v1", "kind": "Tenant", "name": "acme",
           "uid": owner["metadata"]["uid"]}  # fmt: skip
    secret = {"apiVersion": "v1", "kind": "Secret", "stringData": {"k": "v"},
              "metadata": {"name": "creds", "ownerReferences": [ref]}}  # fmt: skip
    _, stored = client.call("POST", "/api/v1/namespaces/pbx/secrets", secret)
    assert stored["data"] == {"k": "dg=="}
    assert "stringData" not in stored
    merge = "application/merge-patch+json"
    client.call("PATCH", f"{TENANTS}/acme", {"metadata": {"finalizers": ["f"]}}, merge)
    _, deleting = client.call("DELETE", f"{TENANTS}/acme")
    assert deleting["metadata"]["deletionTimestamp"]
    assert cluster.get_object("tenants", "pbx", "acme", "cloudpbx.io") is not None
    client.call("PATCH", f"{TENANTS}/acme", {"metadata": {"finalizers": None}}, merge)
    assert cluster.get_object("tenants", "pbx", "acme", "cloudpbx.io") is None
    assert cluster.get_object("secrets", "pbx", "creds") is None
