"""Trunk registration end to end (issue 6.2): real edge processes register a Trunk with a
real Kamailio playing the provider (tests/e2e/provider.py).

The edge answers the provider's 401, binds the Contact that names tenant and trunk, and
refreshes before the registration ends (the provider grants 4 s: a refresh every ~2 s);
the holder's metrics and the status it publishes in Redis say Registered. A wrong password
leaves the trunk Failed with the provider's 403 and its reason, retried after growing
waits (base 1 s: ~1, 2, 4, 8 s, jittered), never a storm. Of ten edges sharing Redis,
exactly one registers the trunk; SIGKILL it and another holds the lease and registers
within about the lease's TTL; stop that one gracefully (SIGTERM) and it releases the
lease, so a third registers at its next renewal, without waiting for the TTL. A 423 is
answered by registering again for its Min-Expires. The intervals and counts measured are
printed (``pytest -s``).

Needs the Debian packages kamailio and sip-tester; skipped when they are missing.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from contracts.keys import trunk_status_key
from contracts.trunk_status import TrunkStatus
from sipedge.trunking import contact_user

from .conftest import REDIS_URL, EdgeFactory, EdgeProc, stop_edge, write_tenant
from .provider import Outcome, Provider

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None or shutil.which("kamailio") is None,
    reason="needs the Debian packages sip-tester and kamailio",
)

TRUNK = "carrier"
USER = "trunk-a"
PASSWORD = "s3cret-a"
REALM = "provider.test"
LEASE_TTL_S = 3.0


def trunk_folder(
    tenant: str, provider: Provider, *, password: str = PASSWORD, expires_s: int = 60
) -> Callable[[Path], None]:
    """Writes the tenant and its Trunk (password in a file beside it) into a folder."""

    def write(folder: Path) -> None:
        write_tenant(folder, tenant, f"{tenant}.pbx.test")
        (folder / "carrier.password").write_text(password + "\n")
        (folder / f"{tenant}-trunk.yaml").write_text(
            "apiVersion: cloudpbx.io/v1\nkind: Trunk\n"
            f"metadata: {{name: {TRUNK}}}\n"
            "spec:\n"
            f"  tenant: {tenant}\n"
            f"  host: {provider.host}\n"
            f"  port: {provider.port}\n"
            f'  username: "{USER}"\n'
            "  password: {file: carrier.password}\n"
            f"  register: {{enabled: true, expires: {expires_s}}}\n"
            f"  from: {{domain: {REALM}}}\n"
        )

    return write


def start(
    edge_factory: EdgeFactory, tmp: Path, provider: Provider, *, redis_on: bool = True, **kw: str
) -> EdgeProc:
    tenant = kw.pop("tenant")
    return edge_factory(
        redis=redis_on,
        tenant=tenant,
        domain=f"{tenant}.pbx.test",
        manifest=trunk_folder(tenant, provider, **kw),  # type: ignore[arg-type]
        extra_args=["--trunk-lease-ttl", str(LEASE_TTL_S), "--trunk-backoff-base", "1"],
    )


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def with_status(provider: Provider, status: int, since: float = 0.0) -> list[Outcome]:
    return [o for o in provider.registers() if o.status == status and o.seen_s >= since]


def published(tenant: str) -> TrunkStatus | None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        value = client.get(trunk_status_key(tenant, TRUNK))
    finally:
        client.close()
    return None if value is None else TrunkStatus.from_json(value)


def samples(edge: EdgeProc, name: str) -> dict[str, float]:
    """The edge's ``name`` samples for its trunk, by ``state`` label (or "")."""
    return {
        labels.get("state", ""): value
        for labels, value in edge.samples(name)
        if labels.get("trunk") == TRUNK
    }


Record = Callable[[str, object], None]


def report(record: Record, **values: object) -> None:
    """Show what was measured (``pytest -s``) and keep it in the junit properties."""
    print("\n" + ", ".join(f"{key}={value}" for key, value in values.items()))  # noqa: T201
    for key, value in values.items():
        record(key, value)


def intervals(outcomes: list[Outcome]) -> list[float]:
    return [round(b.seen_s - a.seen_s, 2) for a, b in itertools.pairwise(outcomes)]


@pytest.fixture
def tenant() -> str:
    return f"t{secrets.token_hex(4)}"


def test_the_edge_registers_and_refreshes_before_expiry(
    edge_factory: EdgeFactory, tmp_path: Path, tenant: str, record_property: Record
) -> None:
    with Provider(
        tmp_path, username=USER, password=PASSWORD, realm=REALM, max_expires_s=4
    ) as provider:
        edge = start(edge_factory, tmp_path, provider, tenant=tenant)
        wait_for("a 200 to the trunk's REGISTER", lambda: bool(with_status(provider, 200)), 15)
        contact = f"sip:{contact_user(tenant, TRUNK)}@127.0.0.1:{edge.port}"
        bindings = provider.registered_contacts()
        assert [b.contact.split(";")[0].strip("<>") for b in bindings] == [contact]
        first = provider.registers()[0]
        assert (first.status, first.user, first.expires_s) == (401, None, 60)
        wait_for("the status in Redis", lambda: published(tenant) is not None, 5)
        status = published(tenant)
        assert status is not None
        assert (status.state, status.status, status.reason) == ("Registered", 200, "OK")
        assert status.holder.endswith(f"/{edge.pid}")
        assert samples(edge, "sip_trunk_registration_state")["Registered"] == 1.0

        window_from = time.time()
        time.sleep(10.0)
        refreshed = with_status(provider, 200, window_from)
        report(record_property, refreshes_in_10_s=len(refreshed), gaps_s=intervals(refreshed))
        assert 3 <= len(refreshed) <= 7  # every ~2 s: half the 4 s granted
        assert all(1.5 <= gap <= 3.0 for gap in intervals(refreshed))
        every = provider.registers()
        assert len({o.call_id for o in every}) == 1  # one registration, refreshed
        assert [o.cseq for o in every] == sorted(o.cseq for o in every)
        assert provider.registered_contacts()[0].expires_s <= 4


def test_a_sha256_challenge_is_answered(
    edge_factory: EdgeFactory, tmp_path: Path, tenant: str
) -> None:
    """A provider that challenges with SHA-256 only (RFC 8760) registers the trunk too."""
    with Provider(
        tmp_path, username=USER, password=PASSWORD, realm=REALM, algorithm="SHA-256"
    ) as provider:
        start(edge_factory, tmp_path, provider, tenant=tenant)
        wait_for("a 200 to the trunk's REGISTER", lambda: bool(with_status(provider, 200)), 15)
        assert [o.status for o in provider.registers()][:2] == [401, 200]
        wait_for("the status in Redis", lambda: published(tenant) is not None, 5)
        status = published(tenant)
        assert status is not None
        assert status.state == "Registered"


def test_a_wrong_password_fails_with_403_and_backs_off(
    edge_factory: EdgeFactory, tmp_path: Path, tenant: str, record_property: Record
) -> None:
    with Provider(tmp_path, username=USER, password=PASSWORD, realm=REALM) as provider:
        edge = start(edge_factory, tmp_path, provider, tenant=tenant, password="not-it")
        wait_for("a 403", lambda: bool(with_status(provider, 403)), 15)
        time.sleep(16.0)
        refused = with_status(provider, 403)
        gaps = intervals(refused)
        registers = len(provider.registers())
        report(record_property, refusals=len(refused), registers=registers, gaps_s=gaps)
        assert 4 <= len(refused) <= 7  # a storm would be hundreds
        assert registers <= 2 * len(refused) + 1  # a 401, then the 403
        for n, gap in enumerate(gaps):  # 1 s * 2**n, scaled by 0.5-1.0 (jitter)
            assert 0.5 * 2**n - 0.2 <= gap <= 2**n + 0.5, gaps
        assert all(later >= earlier - 0.2 for earlier, later in itertools.pairwise(gaps))
        status = published(tenant)
        assert status is not None
        assert (status.state, status.status, status.reason) == ("Failed", 403, "Forbidden")
        assert status.failures >= len(refused) - 1
        assert samples(edge, "sip_trunk_registration_state")["Failed"] == 1.0
        failures = samples(edge, "sip_trunk_register_failures_total")[""]
        assert failures >= len(refused) - 1


def test_of_ten_edges_one_registers_and_another_takes_over_when_it_dies(
    edge_factory: EdgeFactory, tmp_path: Path, tenant: str, record_property: Record
) -> None:
    with Provider(
        tmp_path, username=USER, password=PASSWORD, realm=REALM, max_expires_s=20
    ) as provider:
        edges = [start(edge_factory, tmp_path, provider, tenant=tenant) for _ in range(10)]
        wait_for("a 200", lambda: bool(with_status(provider, 200)), 15)
        time.sleep(2 * LEASE_TTL_S)  # every edge has sought the lease a few times
        sources = {o.source for o in provider.registers()}
        bound = provider.registered_contacts()
        report(record_property, sources=sorted(map(str, sources)), bound=len(bound))
        assert len(sources) == 1
        assert len(bound) == 1
        status = published(tenant)
        assert status is not None
        holder = next(e for e in edges if status.holder.endswith(f"/{e.pid}"))
        assert sources == {f"127.0.0.1:{holder.port}"}

        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait()
        killed_at = time.time()
        wait_for(
            "another edge's 200",
            lambda: any(o.source != f"127.0.0.1:{holder.port}" for o in with_status(provider, 200)),
            4 * LEASE_TTL_S,
        )
        taken = next(o for o in with_status(provider, 200) if o.source not in sources)
        report(record_property, takeover_s=round(taken.seen_s - killed_at, 2), by=taken.source)
        assert taken.seen_s - killed_at <= LEASE_TTL_S + 2.0
        time.sleep(LEASE_TTL_S)
        after = {o.source for o in provider.registers() if o.seen_s > killed_at}
        assert after == {taken.source}  # one new holder, not several
        new = published(tenant)
        assert new is not None
        assert new.state == "Registered"
        second = next(e for e in edges if new.holder.endswith(f"/{e.pid}"))
        assert taken.source == f"127.0.0.1:{second.port}"

        stopped_at = time.time()  # a graceful stop releases the lease: no TTL to wait out
        stop_edge(second)
        seen = sources | {taken.source}
        wait_for(
            "a third edge's 200",
            lambda: any(o.source not in seen for o in with_status(provider, 200)),
            4 * LEASE_TTL_S,
        )
        third = next(o for o in with_status(provider, 200) if o.source not in seen)
        report(record_property, handover_after_sigterm_s=round(third.seen_s - stopped_at, 2))
        assert third.seen_s - stopped_at <= LEASE_TTL_S / 3 + 1.5  # the next renewal


def test_a_423_is_answered_with_its_min_expires(
    edge_factory: EdgeFactory, tmp_path: Path, tenant: str
) -> None:
    with Provider(
        tmp_path, username=USER, password=PASSWORD, realm=REALM, min_expires_s=120
    ) as provider:
        edge = start(edge_factory, tmp_path, provider, tenant=tenant, redis_on=False)
        wait_for("a 200", lambda: bool(with_status(provider, 200)), 15)
        asked = [(o.status, o.expires_s) for o in provider.registers()]
        assert asked == [(401, 60), (423, 60), (200, 120)]
        assert 60 < provider.registered_contacts()[0].expires_s <= 120
        assert samples(edge, "sip_trunk_registration_state")["Registered"] == 1.0
