"""Joining a Tenant with its Trunks and DialPlans (what the operator and ``cloudpbx dev``
share): the order objects are listed in does not matter, a fault names the object at
fault, and a password file is only read where the caller can read one."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.tenant_objects import ObjectError, compile_tenant_objects

SECRETS = {"s": {"pw": "hunter2-secret", "a": "carrier-a-pw", "b": "carrier-b-pw"}}
TENANT: dict[str, Any] = {
    "apiVersion": "cloudpbx.io/v1", "kind": "Tenant", "metadata": {"name": "t"},
    "spec": {"domain": "t.example",
             "extensions": [{"number": "100", "passwordSecretRef": {"name": "s", "key": "pw"}}]},
}  # fmt: skip


def trunk(name: str, did: str, password: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "cloudpbx.io/v1", "kind": "Trunk",
        "metadata": {"name": name, "uid": "server-set", "resourceVersion": "5"},
        "spec": {"tenant": "t", "host": "192.0.2.1", "username": "49305",
                 "password": password or {"secretRef": {"name": "s", "key": name[-1]}},
                 "dids": [did]},
        "status": {"ignored": True},
    }  # fmt: skip


def plan(name: str, priority: int) -> dict[str, Any]:
    rule = {"name": "r", "match": {"prefix": "0"}, "route": {"trunks": ["trunk-a"]}}
    return {
        "apiVersion": "cloudpbx.io/v1", "kind": "DialPlan", "metadata": {"name": name},
        "spec": {"tenant": "t", "priority": priority,
                 "rules": [rule]},
    }  # fmt: skip


def test_the_listed_order_does_not_change_the_snapshot() -> None:
    trunks = [trunk("trunk-a", "+4930555100"), trunk("trunk-b", "+4930555200")]
    plans = [plan("first", 1), plan("second", 2)]
    one = compile_tenant_objects(TENANT, trunks, plans, SECRETS)
    other = compile_tenant_objects(TENANT, trunks[::-1], plans[::-1], SECRETS)
    assert one.to_json() == other.to_json()
    assert one.trunk_passwords == {"trunk-a": "carrier-a-pw", "trunk-b": "carrier-b-pw"}
    assert one.trunk_manifests[0] == {  # type, name and spec: no server metadata, no status
        "apiVersion": "cloudpbx.io/v1", "kind": "Trunk", "metadata": {"name": "trunk-a"},
        "spec": trunks[0]["spec"],
    }  # fmt: skip


def test_a_password_file_is_refused_unless_the_caller_reads_files() -> None:
    trunks = [trunk("trunk-a", "+4930555100", {"file": "a.password"})]
    with pytest.raises(ObjectError) as caught:
        compile_tenant_objects(TENANT, trunks, [], SECRETS)
    error = caught.value
    assert (error.kind, error.index, error.name, error.path) == (
        "Trunk", 0, "trunk-a", "spec.password.file",
    )  # fmt: skip
    assert error.message == "is for cloudpbx dev only; in a cluster use secretRef"
    read = compile_tenant_objects(TENANT, trunks, [], SECRETS, read_password_file=lambda _: "x")
    assert read.trunk_passwords == {"trunk-a": "x"}


def test_faults_across_objects_have_no_index_and_name_them_in_the_message() -> None:
    trunks = [trunk("trunk-a", "+4930555100"), trunk("trunk-b", "+4930555100")]
    with pytest.raises(ObjectError) as caught:
        compile_tenant_objects(TENANT, trunks, [], SECRETS)
    assert (caught.value.kind, caught.value.index) == ("Trunk", None)
    assert caught.value.message == (
        "Trunk trunk-b spec.dids: +4930555100 is already routed by trunk trunk-a"
    )
    assert "carrier" not in str(caught.value)
