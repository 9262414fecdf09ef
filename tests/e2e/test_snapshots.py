"""Edges serving the snapshots published in Redis (issue 7.2, the edge's side): a running
edge takes a new version of a tenant within 1 s of its notice, without a restart, and a
tenant published disabled (deleted) loses its calls (BYE on both legs) and its phones'
registrations.

The snapshots are published by the operator's own publisher
(``cloudpbx_operator.apply.Publisher``), on the test Redis.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from cloudpbx_operator.apply import Published, Publisher
from contracts.keys import SNAPSHOT_CHANNEL, domain_index_key, snapshot_key, snapshot_notice
from contracts.snapshot import TenantSnapshot
from sipedge.tenants import load_manifest_folder

from .conftest import PASSWORDS, REDIS_URL, EdgeFactory, write_tenant

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.scripted import SDP, ScriptedPhone


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        yield connection
    finally:
        connection.close()


def publish(client: redis.Redis, snapshot: TenantSnapshot) -> int:
    """Publish ``snapshot`` as the operator does (its one atomic script: the next version
    under the tenant's snapshot key, its hosts in the domain index, a notice)."""

    async def run() -> int:
        connection = AsyncRedis.from_url(REDIS_URL)
        try:
            published = await Publisher(connection).publish(snapshot)
        finally:
            await connection.aclose()
        assert isinstance(published, Published), published
        return published.version

    return asyncio.run(run())


def forget(client: redis.Redis, snapshot: TenantSnapshot) -> None:
    client.delete(snapshot_key(snapshot.name))
    client.hdel(domain_index_key(), *snapshot.hosts)


@pytest.fixture
def tenant(tmp_path: Path, client: redis.Redis) -> Iterator[TenantSnapshot]:
    """A tenant of its own (no alias: hosts in the shared index must not collide)."""
    name = f"snap{secrets.token_hex(3)}"
    folder = tmp_path / "compile"
    folder.mkdir()
    write_tenant(folder, name, f"{name}.pbx.test")
    (snapshot,) = load_manifest_folder(folder)
    snapshot = replace(snapshot, aliases=())
    try:
        yield snapshot
    finally:
        forget(client, snapshot)


def phone(user: str, snapshot: TenantSnapshot) -> ScriptedPhone:
    return ScriptedPhone(user, snapshot.domain, PASSWORDS[user])


def test_a_new_version_is_served_within_a_second_without_a_restart(
    edge_factory: EdgeFactory, client: redis.Redis, tenant: TenantSnapshot
) -> None:
    publish(client, tenant)
    edge = edge_factory(snapshots=True, tenant=tenant.name, domain=tenant.domain)
    caller = phone("2001", tenant)
    try:
        assert caller.register(edge.port).status == 200
        caller.invite(edge.port, "2003")
        assert caller.final().status == 480  # 2003 exists, registered nowhere

        fewer = replace(tenant, extensions=tenant.extensions[:2])  # 2003 goes
        published = time.monotonic()
        publish(client, fewer)
        status = 480
        while status == 480 and time.monotonic() - published < 5:
            caller.invite(edge.port, "2003")
            status = caller.final().status
        taken_s = time.monotonic() - published
        assert status == 404
        assert taken_s < 1.0, f"served {taken_s:.3f} s after the notice"
    finally:
        caller.close()
    assert edge.alive()


def test_a_disabled_tenant_loses_its_calls_and_registrations(
    edge_factory: EdgeFactory, client: redis.Redis, tenant: TenantSnapshot
) -> None:
    publish(client, tenant)
    edge = edge_factory(snapshots=True, tenant=tenant.name, domain=tenant.domain)
    caller, callee = phone("2001", tenant), phone("2002", tenant)
    try:
        callee.register(edge.port)
        invite = caller.invite(edge.port, "2002")
        incoming = callee.receive_request("INVITE")
        callee.answer(incoming, 200, "OK", edge.port, SDP)
        ok = caller.final()
        assert ok.status == 200
        target = str(ok.contacts[0].uri)  # type: ignore[index]
        to = ok.headers.get("To") or ""
        caller.send(
            caller.request("ACK", target, to, invite.call_id, invite.cseq.number), edge.port
        )
        callee.receive_request("ACK")

        publish(client, replace(tenant, enabled=False))
        for side in (caller, callee):
            bye = side.receive_request("BYE")
            side.answer(bye, 200, "OK", edge.port)
        assert caller.register_status(edge.port) == 403  # its phones register no more
    finally:
        caller.close()
        callee.close()


def test_an_edge_dedicated_to_a_tenant_serves_no_other(
    edge_factory: EdgeFactory, client: redis.Redis, tenant: TenantSnapshot
) -> None:
    other = replace(tenant, name=f"{tenant.name}-x", domain=f"x.{tenant.domain}")
    publish(client, tenant)
    publish(client, other)
    try:
        edge = edge_factory(
            snapshots=True,
            tenant=tenant.name,
            domain=tenant.domain,
            extra_args=["--only-tenant", tenant.name],
        )
        mine, theirs = phone("2001", tenant), phone("2001", other)
        try:
            assert mine.register(edge.port).status == 200
            assert theirs.register_status(edge.port) == 403
        finally:
            mine.close()
            theirs.close()
    finally:
        forget(client, other)


def test_a_deleted_tenants_domain_can_be_taken_by_a_new_tenant(
    edge_factory: EdgeFactory, client: redis.Redis, tenant: TenantSnapshot
) -> None:
    """The operator publishes a deleted tenant disabled, then releases its hosts: a new
    tenant on the same domain is served by the running edge in its place."""
    publish(client, tenant)
    edge = edge_factory(snapshots=True, tenant=tenant.name, domain=tenant.domain)
    publish(client, replace(tenant, enabled=False))
    asyncio.run(_release(tenant))
    successor = replace(tenant, name=f"{tenant.name}-new")
    try:
        publish(client, successor)
        caller = phone("2001", successor)
        try:
            deadline = time.monotonic() + 5
            status = caller.register_status(edge.port)
            while status != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
                status = caller.register_status(edge.port)
            assert status == 200
        finally:
            caller.close()
        assert f"tenant {successor.name}: serving version 1" in edge.log.read_text()
    finally:
        forget(client, successor)


async def _release(snapshot: TenantSnapshot) -> None:
    connection = AsyncRedis.from_url(REDIS_URL)
    try:
        await Publisher(connection).release(snapshot)
    finally:
        await connection.aclose()


def test_a_snapshot_that_does_not_decode_changes_nothing(
    edge_factory: EdgeFactory, client: redis.Redis, tenant: TenantSnapshot
) -> None:
    publish(client, tenant)
    edge = edge_factory(snapshots=True, tenant=tenant.name, domain=tenant.domain)
    client.set(snapshot_key(tenant.name), '{"name": "broken"}')
    client.publish(SNAPSHOT_CHANNEL, snapshot_notice(tenant.name, 99))
    caller = phone("2001", tenant)
    try:
        time.sleep(0.3)
        assert caller.register(edge.port).status == 200  # the last good version serves
    finally:
        caller.close()
    assert "its snapshot is not served" in edge.log.read_text()
