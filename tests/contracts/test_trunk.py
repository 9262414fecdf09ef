"""Trunk manifests (contracts.trunk, issue 6.1): defaults, every field, and every invalid
manifest refused naming the trunk and field, without ever quoting a password."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from contracts.manifest import ManifestError
from contracts.trunk import (
    PasswordFile,
    SecretRef,
    Trunk,
    compile_trunk,
    compile_trunks,
)


def manifest(name: str = "carrier-a", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenant": "acme",
        "host": "sip.carrier.example",
        "username": "4930555",
        "password": {"secretRef": {"name": "carrier-a", "key": "password"}},
    }
    base.update(spec)
    return {
        "apiVersion": "cloudpbx.io/v1",
        "kind": "Trunk",
        "metadata": {"name": name},
        "spec": base,
    }


def test_the_defaults() -> None:
    trunk = compile_trunk(manifest(), tenant="acme")
    assert trunk == Trunk(
        name="carrier-a", tenant="acme", host="sip.carrier.example", port=5060, transport="udp",
        username="4930555", auth_username="4930555",
        password=SecretRef("carrier-a", "password"), register=True, expires_s=3600,
        from_user="4930555", from_domain="sip.carrier.example", caller_id="trunk",
        srv=True,  # a name without a port: located by its SRV records
    )  # fmt: skip
    assert not compile_trunk(manifest(port=5060), tenant="acme").srv
    assert not compile_trunk(manifest(host="192.0.2.5"), tenant="acme").srv
    assert (trunk.registrar, trunk.aor) == (
        "sip:sip.carrier.example",
        "sip:4930555@sip.carrier.example",
    )


def test_every_field() -> None:
    spec: dict[str, Any] = {
        "host": "203.0.113.9",
        "port": 5080,
        "transport": "tcp",
        "outboundProxy": "sip:edge.carrier.example:5070",
        "authUsername": "acme-4930555",
        "password": {"file": "carrier-a.password"},
        "register": {"enabled": False, "expires": 600},
        "from": {"user": "+4930555", "domain": "carrier.example"},
        "callerId": {"policy": "fixed", "number": "+4930555100"},
        "dids": ["+4930555100", "4930555101"],
        "maxChannels": 10,
        "codecs": ["pcma", "PCMU", "telephone-event"],
        "inboundSources": ["198.51.100.0/24", "203.0.113.10", "2001:DB8::/48"],
    }
    trunk = compile_trunk(manifest(**spec), tenant="acme")
    assert trunk.inbound_sources == ("198.51.100.0/24", "203.0.113.10/32", "2001:db8::/48")
    assert trunk.registrar == "sip:203.0.113.9:5080;transport=tcp"
    assert trunk.aor == "sip:4930555@carrier.example"  # the account, not from.user
    assert (trunk.auth_username, trunk.password) == (
        "acme-4930555",
        PasswordFile("carrier-a.password"),
    )
    assert (trunk.register, trunk.expires_s, trunk.outbound_proxy) == (
        False,
        600,
        "sip:edge.carrier.example:5070",
    )
    assert (trunk.caller_id, trunk.caller_id_number) == ("fixed", "+4930555100")
    assert trunk.dids == ("+4930555100", "4930555101")
    assert (trunk.max_channels, trunk.codecs) == (10, ("PCMA", "PCMU", "TELEPHONE-EVENT"))


@pytest.mark.parametrize(
    ("spec", "where", "message"),
    [
        ({"tenant": "globex"}, "Trunk carrier-a spec.tenant", "must be 'acme'"),
        ({"host": "bad host"}, "Trunk carrier-a spec.host", "host name"),
        ({"host": None}, "Trunk carrier-a spec.host", "is required"),
        ({"port": 0}, "Trunk carrier-a spec.port", "1..65535"),
        ({"transport": "tls"}, "Trunk carrier-a spec.transport", "udp or tcp"),
        (
            {"outboundProxy": "edge.carrier.example"},
            "Trunk carrier-a spec.outboundProxy",
            "sip: URI",
        ),
        ({"username": "a b"}, "Trunk carrier-a spec.username", "SIP user name"),
        ({"password": "hunter2"}, "Trunk carrier-a spec.password", "never inline"),
        ({"password": {"file": "../etc/shadow"}}, "Trunk carrier-a spec.password.file", "no path"),
        (
            {"password": {"secretRef": {"name": "x"}}},
            "Trunk carrier-a spec.password.secretRef.key",
            "Secret key",
        ),
        ({"register": {"expires": 30}}, "Trunk carrier-a spec.register.expires", "60..86400"),
        (
            {"register": {"enabled": "yes"}},
            "Trunk carrier-a spec.register.enabled",
            "true or false",
        ),
        (
            {"callerId": {"policy": "fixed"}},
            "Trunk carrier-a spec.callerId.number",
            "needs a number",
        ),
        (
            {"callerId": {"policy": "trunk", "number": "+49"}},
            "Trunk carrier-a spec.callerId.number",
            "only a fixed",
        ),
        (
            {"callerId": {"policy": "spoof"}},
            "Trunk carrier-a spec.callerId.policy",
            "trunk, passthrough or fixed",
        ),
        ({"dids": ["+49 30 555"]}, "Trunk carrier-a spec.dids", "a DID is a number"),
        ({"dids": ["+4930555100", "+4930555100"]}, "Trunk carrier-a spec.dids", "twice"),
        ({"codecs": ["AMR"]}, "Trunk carrier-a spec.codecs", "unknown codec 'AMR'"),
        ({"maxChannels": -1}, "Trunk carrier-a spec.maxChannels", ">= 0"),
        ({"colour": "blue"}, "Trunk carrier-a spec", "unknown fields ['colour']"),
        ({"inboundSources": "203.0.113.0/24"}, "Trunk carrier-a spec.inboundSources", "list"),
        (
            {"inboundSources": ["203.0.113.5/24"]},
            "Trunk carrier-a spec.inboundSources",
            "host bits set",
        ),
        (
            {"inboundSources": ["10.0.0.0/8"]},
            "Trunk carrier-a spec.inboundSources",
            "wider than a /16",
        ),
        (
            {"inboundSources": ["2001:db8::/31"]},
            "Trunk carrier-a spec.inboundSources",
            "wider than a /32",
        ),
        (
            {"inboundSources": ["sip.carrier.example"]},
            "Trunk carrier-a spec.inboundSources",
            "not an address or network",
        ),
        (
            {"inboundSources": ["192.0.2.7", "192.0.2.7/32"]},
            "Trunk carrier-a spec.inboundSources",
            "listed twice",
        ),
        (
            {"inboundSources": [f"192.0.2.{n}" for n in range(33)]},
            "Trunk carrier-a spec.inboundSources",
            "at most 32",
        ),
        ({"from": {"domain": "not a host"}}, "Trunk carrier-a spec.from.domain", "host name"),
    ],
)
def test_an_invalid_trunk_is_refused_naming_the_field(
    spec: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(ManifestError) as refused:
        compile_trunk(manifest(**spec), tenant="acme")
    assert (refused.value.path, message in refused.value.message) == (where, True)
    assert "hunter2" not in str(refused.value)


def test_a_bad_name_or_kind_is_refused() -> None:
    wrong = manifest("Carrier A")
    with pytest.raises(ManifestError, match="DNS label"):
        compile_trunk(wrong, tenant="acme")
    other = copy.deepcopy(manifest())
    other["kind"] = "Tenant"
    with pytest.raises(ManifestError, match="apiVersion/kind"):
        compile_trunk(other, tenant="acme")


def test_trunks_by_name_and_each_did_on_one_trunk_only() -> None:
    b = manifest("carrier-b", dids=["+4930555200"])
    a = manifest("carrier-a", dids=["+4930555100"])
    assert [t.name for t in compile_trunks([b, a], tenant="acme")] == ["carrier-a", "carrier-b"]
    with pytest.raises(ManifestError, match="defined twice"):
        compile_trunks([a, a], tenant="acme")
    clash = manifest("carrier-c", dids=["+4930555100"])
    with pytest.raises(ManifestError, match=r"\+4930555100 is already routed by trunk carrier-a"):
        compile_trunks([a, clash], tenant="acme")
