"""Locating a trunk's provider (RFC 3263 §4.2, RFC 2782) against a DNS server speaking the
real wire format (tests/e2e/dns_zone.py): SRV when the host is named without a port, in
priority and weight order, each target's A records with the record's port; A records on
the default port without SRV records; nothing when nothing resolves."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from contracts.snapshot import TenantSnapshot
from sipedge.adapters import dns
from sipedge.app import trunk_sources

from ..e2e.dns_zone import DnsZone

ZONE = {
    ("_sip._udp.carrier.test", "SRV"): [
        "20 0 5090 backup.carrier.test.",
        "10 0 5070 sip1.carrier.test.",
    ],
    ("_sip._tcp.carrier.test", "SRV"): ["10 0 5071 sip1.carrier.test."],
    ("sip1.carrier.test", "A"): ["127.0.0.11", "127.0.0.12"],
    ("backup.carrier.test", "A"): ["127.0.0.13"],
    ("plain.test", "A"): ["127.0.0.20"],
    ("_sip._udp.closed.test", "SRV"): ["0 0 0 ."],  # RFC 2782: no such service here
    ("closed.test", "A"): ["127.0.0.30"],
    ("_sip._udp.weighted.test", "SRV"): [
        "10 90 5060 heavy.weighted.test.",
        "10 10 5060 light.weighted.test.",
    ],
    ("heavy.weighted.test", "A"): ["127.0.0.41"],
    ("light.weighted.test", "A"): ["127.0.0.42"],
}


@pytest.fixture
def zone() -> Iterator[DnsZone]:
    with DnsZone(ZONE) as running:
        dns.use_server("127.0.0.1", running.port)
        try:
            yield running
        finally:
            dns.use_server(None)


@pytest.mark.asyncio
async def test_a_host_named_without_a_port_is_located_by_its_srv_records(zone: DnsZone) -> None:
    found = await dns.locate("carrier.test", 5060, "UDP", srv=True)
    # the first target's addresses (in the order the answer lists them), then the
    # lower priority's server
    assert sorted(found[:2]) == [("127.0.0.11", 5070), ("127.0.0.12", 5070)]
    assert found[2:] == [("127.0.0.13", 5090)]
    found = await dns.locate("carrier.test", 5060, "TCP", srv=True)
    assert sorted(found) == [("127.0.0.11", 5071), ("127.0.0.12", 5071)]
    assert ("_sip._udp.carrier.test.", "SRV") in zone.queries


@pytest.mark.asyncio
async def test_without_srv_records_or_with_a_port_the_a_records_count(zone: DnsZone) -> None:
    assert await dns.locate("plain.test", 5060, "UDP", srv=True) == [("127.0.0.20", 5060)]
    assert await dns.locate("closed.test", 5060, "UDP", srv=True) == [("127.0.0.30", 5060)]
    before = len(zone.queries)
    assert await dns.locate("carrier.test", 5080, "UDP", srv=False) == []  # no A records
    assert zone.queries[before:] == [("carrier.test.", "A")]  # a port given: no SRV asked


@pytest.mark.asyncio
async def test_an_address_is_not_looked_up_and_an_unknown_name_is_nowhere(zone: DnsZone) -> None:
    before = len(zone.queries)
    assert await dns.locate("192.0.2.7", 5060, "UDP", srv=True) == [("192.0.2.7", 5060)]
    assert zone.queries[before:] == []
    assert await dns.locate("nowhere.test", 5060, "UDP", srv=True) == []


@pytest.mark.asyncio
async def test_equal_priorities_are_tried_in_an_order_drawn_by_weight(zone: DnsZone) -> None:
    firsts: Counter[str] = Counter()
    for _ in range(200):
        firsts[(await dns.srv_targets("weighted.test", "UDP"))[0][0]] += 1
    assert set(firsts) == {"heavy.weighted.test", "light.weighted.test"}
    assert firsts["heavy.weighted.test"] > firsts["light.weighted.test"] * 3  # 9:1 expected


@pytest.mark.asyncio
async def test_a_server_that_does_not_answer_means_nothing_found() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    dns.use_server("127.0.0.1", silent.getsockname()[1], lifetime_s=0.3)
    try:
        assert await dns.locate("carrier.test", 5060, "UDP", srv=True) == []
    finally:
        dns.use_server(None)
        silent.close()


@pytest.mark.asyncio
async def test_a_trunk_located_by_srv_is_recognised_at_its_servers_addresses(
    zone: DnsZone,
) -> None:
    trunk = {
        "apiVersion": "cloudpbx.io/v1",
        "kind": "Trunk",
        "metadata": {"name": "carrier"},
        "spec": {
            "tenant": "acme",
            "host": "carrier.test",
            "username": "4930555",
            "password": {"file": "carrier.password"},
        },
    }
    tenant = TenantSnapshot(
        name="acme",
        domain="acme.test",
        trunk_manifests=(trunk,),
        trunk_passwords={"carrier": "secret"},
    )
    sources = await trunk_sources([tenant])
    for address, port in (("127.0.0.11", 5070), ("127.0.0.12", 5070), ("127.0.0.13", 5090)):
        assert [ref.trunk for ref in sources.at("UDP", address, port)] == ["carrier"]
    assert sources.at("UDP", "127.0.0.11", 5060) == ()
