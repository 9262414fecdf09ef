"""Assemble and run one edge process: stores, tenants, edge, user agent, housekeeping.

The composition root. ``redis_url`` set: bindings and calls live in Redis, shared with
every other edge process; unset: in this process's memory (``cloudpbx dev``).
``relays`` set: calls of tenants with ``media.anchor`` are anchored on those media
relays (one ng socket per process, health pings); unset: media is never anchored.
Housekeeping refreshes the gauges and, on worker 0, sends keep-alive OPTIONS to NATed
UDP bindings so their pinholes stay open. Worker 0 also registers the tenants' trunks
whose leases it gets (:mod:`sipedge.registrations`; leases and statuses in Redis, or in
memory without it). Every worker re-resolves where the tenants' trunks send from, so
that their calls are recognised (:mod:`sipedge.calls.trunks`), and reads its manifest
folder again when a file in it changes: a tenant, trunk or dial plan edited there is
served within :data:`MANIFEST_POLL_S`; a folder that no longer compiles is logged (file,
document, field) and the tenants as they were are kept serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable, Iterable

from redis.asyncio import BlockingConnectionPool, Redis

from contracts.billing.store import BillingStore
from contracts.snapshot import TenantSnapshot
from contracts.stores.url import open_store
from sipedge.adapters.dns import locate, use_server
from sipedge.adapters.memory_location import MemoryLocationStore
from sipedge.adapters.redis_dialogs import RedisDialogStore
from sipedge.adapters.redis_leases import RedisLeases
from sipedge.adapters.redis_location import RedisLocationStore
from sipedge.adapters.redis_pipe import RedisPipe
from sipedge.adapters.redis_quotas import RedisQuotas
from sipedge.adapters.redis_snapshots import RedisSnapshots
from sipedge.adapters.redis_trunk_status import RedisStatusBoard
from sipedge.adapters.relay import MediaRelays, Retransmission
from sipedge.calls import CallControl
from sipedge.calls.admission import Admission
from sipedge.calls.anchor import Anchor
from sipedge.calls.credit import ACCOUNT, Credit
from sipedge.calls.trunks import TrunkRef, TrunkSources, trunk_addresses
from sipedge.config import EdgeConfig
from sipedge.dialogs import DialogStore, MemoryDialogStore
from sipedge.edge import Edge
from sipedge.leases import Leases, MemoryLeases
from sipedge.location import Binding, LocationStore
from sipedge.metrics import Metrics
from sipedge.quotas import MemoryQuotas, Quotas
from sipedge.registrations import (
    MemoryStatusBoard,
    Settings,
    StatusBoard,
    TrunkRegistrations,
    holder_id,
)
from sipedge.sip.message import Request
from sipedge.sip.transaction import Peer
from sipedge.tenants import (
    ManifestFolderError,
    TenantConflict,
    TenantDirectory,
    folder_state,
    load_manifest_folder,
)
from sipedge.trunking import BACKOFF_BASE_S
from sipedge.ua import UserAgent

log = logging.getLogger("sipedge.app")

GAUGE_INTERVAL_S = 5.0
#: How often the addresses of the tenants' trunks are looked up again (their DNS).
TRUNK_SOURCES_INTERVAL_S = 300.0
#: How often the manifest folder is checked for changes.
MANIFEST_POLL_S = 1.0
#: How often each edge process settles the legs of edges that died (their reservations
#: expired): a dead edge's call is billed within this of its grace.
RECOVER_INTERVAL_S = 10.0
#: Allocations between young-generation collections (CPython's default is 700). A
#: request allocates a few hundred container objects that die young; at 700 the
#: collector ran every couple of requests and re-scanned each transaction still alive.
GC_THRESHOLDS = (50_000, 20, 100)


class EdgeProcess:
    """Everything one edge process runs, started and stopped together."""

    def __init__(self, config: EdgeConfig, worker: int = 0) -> None:
        self.config = config
        self.worker = worker
        self.metrics = Metrics()
        if config.dns_server is not None:
            use_server(*config.dns_server)
        folder = config.manifests
        self.tenants = TenantDirectory(load_manifest_folder(folder) if folder else ())
        #: Billing key (a Tenant's UID) → tenant name, of every snapshot seen, served
        #: here or not: recovery settles any tenant's calls and then ends them.
        self._names: dict[str, str] = {}
        self.redis: Redis | None = None
        self.pipe: RedisPipe | None = None
        location: LocationStore
        dialogs: DialogStore
        quotas: Quotas
        if config.redis_url:
            # Requests wait for a free connection instead of failing when many hold one.
            pool = BlockingConnectionPool.from_url(config.redis_url, max_connections=64, timeout=5)
            self.redis = Redis(connection_pool=pool)
            # Every REGISTER's script goes over one pipelined connection (redis_pipe.py).
            self.pipe = RedisPipe(config.redis_url)
            location = RedisLocationStore(self.redis, pipe=self.pipe)
            dialogs = RedisDialogStore(self.redis, pipe=self.pipe)
            quotas = RedisQuotas(self.redis)
        else:
            location, dialogs = MemoryLocationStore(), MemoryDialogStore()
            quotas = MemoryQuotas()
        self.location, self.dialogs = location, dialogs
        self.edge = Edge(config, self.metrics, worker)
        self.relays = _relays(config)
        anchor = Anchor(self.relays) if self.relays is not None else None
        self.calls = CallControl(
            self.edge, location, dialogs, anchor, Admission(quotas), tenants=self.tenants
        )
        self.ua = UserAgent(self.edge, self.tenants, location, self.calls)
        self.edge.tu = self.ua
        self._housekeeping: list[asyncio.Task[None]] = []
        self.billing: BillingStore | None = None
        self.trunks: TrunkRegistrations | None = None

    async def start(self) -> None:
        if self.config.metrics_port is not None:
            self.metrics.serve(self.config.metrics_port + self.worker)
        if self.config.manifests is None:
            await self._follow_snapshots()
        if self.config.billing_url is not None:
            await self._open_billing(self.config.billing_url)
        self.ua.trunk_sources = await trunk_sources(self.tenants)
        await self.edge.start()
        if self.relays is not None:
            await self.relays.start()
        self._housekeeping.append(asyncio.create_task(self._gauges()))
        self._housekeeping.append(asyncio.create_task(self._trunk_sources()))
        if self.config.manifests is not None:
            self._housekeeping.append(asyncio.create_task(self._watch_manifests()))
        if self.worker == 0:
            self._housekeeping.append(asyncio.create_task(self._keepalives()))
            self.trunks = self._trunk_registrations()
            self.trunks.sync(self.tenants)
        log.info(
            "edge worker %d listening on %s",
            self.worker,
            ", ".join(str(listen) for listen in self.config.listens),
        )
        if self.worker == 0:
            _log_media(self.config)

    async def stop(self) -> None:
        self.edge.accepting = False
        for task in self._housekeeping:
            task.cancel()
        if self.trunks is not None:  # first: another edge takes the trunks over at once
            await self.trunks.stop()
        await self.ua.drain()
        await self.edge.stop()
        if self.relays is not None:
            await self.relays.stop()
        if self.pipe is not None:
            await self.pipe.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.billing is not None:
            await self.billing.close()

    def _trunk_registrations(self) -> TrunkRegistrations:
        """The trunk registrations, sharing leases and statuses with every edge (Redis)."""
        config = self.config
        leases: Leases
        board: StatusBoard
        if self.redis is not None:
            leases, board = RedisLeases(self.redis), RedisStatusBoard(self.redis)
        else:
            leases, board = MemoryLeases(time.time), MemoryStatusBoard()
        settings = Settings(
            lease_ttl_s=config.trunk_lease_ttl_s,
            renew_s=config.trunk_lease_renew_s,
            backoff_base_s=config.trunk_backoff_base_s or BACKOFF_BASE_S,
        )
        return TrunkRegistrations(
            self.edge,
            leases,
            board,
            self.metrics,
            holder=holder_id(),
            user_agent=config.user_agent,
            settings=settings,
        )

    async def _open_billing(self, url: str) -> None:
        """The billing store, migrated, with the account of each tenant loaded from the
        manifests (the operator provisions them in a cluster; this makes ``cloudpbx dev``
        and a bare edge work too), and the recovery of dead edges' legs."""
        store = self.billing = await open_store(url)
        await store.migrate()
        await self._provision_accounts(store)
        self.calls.credit = credit = Credit(store, self.config.credit_slice_s)
        self._housekeeping.append(asyncio.create_task(self._recover(credit)))

    async def _provision_accounts(self, store: BillingStore) -> None:
        for tenant in self.tenants:
            await store.upsert_tenant(
                tenant.billing_id, plan=tenant.billing.plan, currency=tenant.billing.currency
            )
            await store.create_account(tenant.billing_id, ACCOUNT)

    async def _recover(self, credit: Credit) -> None:
        """Settle the legs whose edge died (:mod:`sipedge.calls.credit`), every edge
        process alike: the store settles each leg once."""
        while True:
            await asyncio.sleep(RECOVER_INTERVAL_S)
            try:
                recovered = await credit.recover(int(self.edge.wall() * 1000))
            except Exception:
                log.exception("billing recovery failed; trying again")
                continue
            if recovered:
                log.info("settled %d call legs of edges that stopped", len(recovered))
            names = {tenant.billing_id: tenant.name for tenant in self.tenants}
            for cdr in recovered:  # its edge is gone: nothing else would end it
                # The CDR names the tenant by its billing key (a Tenant's UID); the
                # calls are stored by tenant name. Any edge may end any tenant's call.
                name = names.get(cdr.tenant) or self._names.get(cdr.tenant, cdr.tenant)
                try:
                    await self.calls.end_recovered(name, cdr.call_id)
                except Exception:
                    log.exception("recovered call-id=%s not ended", cdr.call_id)

    async def _follow_snapshots(self) -> None:
        """Serve the snapshots the operator publishes: subscribed first, then all read,
        so that no version published in between is missed."""
        if self.redis is None:
            raise RuntimeError("tenants from snapshots need Redis (--redis)")
        snapshots = RedisSnapshots(self.redis, self._snapshot)
        subscribed = asyncio.Event()
        self._housekeeping.append(asyncio.create_task(snapshots.follow(subscribed)))
        await asyncio.wait_for(subscribed.wait(), timeout=10)
        for snapshot in await snapshots.load_all():
            self._serve(snapshot)
        log.info("serving %d tenants from their snapshots", len(self.tenants))

    def _serve(self, snapshot: TenantSnapshot) -> bool:
        """Serve ``snapshot`` if it is newer than what is served (and, on an edge
        dedicated to some tenants, one of theirs); False if not taken."""
        self._names[snapshot.billing_id] = snapshot.name
        only = self.config.only_tenants
        if only and snapshot.name not in only:
            return False
        try:
            taken = self.tenants.replace(snapshot)
        except TenantConflict as error:
            holder = self.tenants.by_name(error.owner)
            if holder is not None and not holder.enabled:  # deleted: its hosts pass on
                self.tenants.remove(holder.name)
                return self._serve(snapshot)
            log.error("tenant %s version %d not served: %s", snapshot.name, snapshot.version, error)
            return False
        if taken:
            log.info("tenant %s: serving version %d", snapshot.name, snapshot.version)
        return taken

    async def _snapshot(self, snapshot: TenantSnapshot) -> None:
        """A snapshot announced while running: served, and what follows the tenants
        updated; a tenant just disabled (deleted) loses its calls and registrations."""
        before = self.tenants.by_name(snapshot.name)
        if not self._serve(snapshot):
            return
        if not snapshot.enabled and (before is None or before.enabled):
            ended = await self.calls.end_tenant_calls(snapshot.name)
            await self.location.remove_all(snapshot.name)
            log.info(
                "tenant %s disabled: %d calls ended, its phones unregistered", snapshot.name, ended
            )
        await self._tenants_changed()

    async def _watch_manifests(self) -> None:
        """Serve the manifest folder as it is edited; a broken edit changes nothing."""
        folder = self.config.manifests
        assert folder is not None
        seen = folder_state(folder)
        while True:
            await asyncio.sleep(MANIFEST_POLL_S)
            state = folder_state(folder)
            if state == seen:
                continue
            seen = state
            try:
                snapshots = await asyncio.to_thread(load_manifest_folder, folder)
                self.tenants.reload(snapshots)
            except (ManifestFolderError, TenantConflict) as error:
                log.error("manifests not reloaded, still serving the last good ones: %s", error)
                continue
            log.info("manifests reloaded: %d tenants", len(snapshots))
            await self._tenants_changed()

    async def _tenants_changed(self) -> None:
        """What follows the tenants: their trunks' registrations (worker 0), where their
        trunks send from, their accounts."""
        if self.trunks is not None:
            self.trunks.sync(self.tenants)
        self.ua.trunk_sources = await trunk_sources(self.tenants)
        if self.billing is not None:
            await self._provision_accounts(self.billing)

    async def _trunk_sources(self) -> None:
        while True:
            await asyncio.sleep(TRUNK_SOURCES_INTERVAL_S)
            self.ua.trunk_sources = await trunk_sources(self.tenants)

    async def _gauges(self) -> None:
        while True:
            now = self.edge.wall()
            for tenant in self.tenants:
                registered = await self.location.count(tenant.name, now)
                self.metrics.registrations.labels(tenant.name).set(registered)
                self.metrics.active_calls.labels(tenant.name).set(
                    await self.dialogs.count(tenant.name)
                )
            await asyncio.sleep(GAUGE_INTERVAL_S)

    async def _keepalives(self) -> None:
        while True:
            await asyncio.sleep(self.config.keepalive_interval_s)
            for tenant in self.tenants:
                pairs = await self.location.nat_bindings(tenant.name, self.edge.wall(), 1000)
                for _aor, binding in pairs:
                    self._ping(tenant.name, binding)

    def _ping(self, tenant: str, binding: Binding) -> None:
        """An OPTIONS to a NATed binding's real address, from our SIP port."""
        source, contact = binding.source, binding.contact
        me = self.calls.identity(tenant, source.transport)
        options = Request(
            "OPTIONS",
            contact,
            [
                ("Via", me.via),
                ("Max-Forwards", "70"),
                (
                    "From",
                    f"<sip:keepalive@{self.config.advertised_host}>;tag={self.calls.new_tag()}",
                ),
                ("To", f"<{contact}>"),
                ("Call-ID", f"ka-{self.calls.new_tag()}"),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        self.edge.request(options, Peer(source.transport, source.ip, source.port), lambda e: None)


async def trunk_sources(tenants: Iterable[TenantSnapshot]) -> TrunkSources:
    """Where each trunk of ``tenants`` sends from, its host names resolved (one that does
    not resolve is left out, with a warning, until the next look-up)."""
    entries: list[tuple[tuple[str, str, int], TrunkRef]] = []
    networks: list[tuple[str, TrunkRef]] = []
    for tenant in tenants:
        for trunk in tenant.trunks:
            ref = TrunkRef(tenant.name, trunk.name)
            networks.extend((network, ref) for network in trunk.inbound_sources)
            for hop in trunk_addresses(trunk):
                found = await locate(hop.host, hop.port, hop.transport, srv=hop.srv)
                if not found:
                    log.warning(
                        "trunk %s of %s: %s does not resolve", trunk.name, tenant.name, hop.host
                    )
                entries.extend(((hop.transport, address, port), ref) for address, port in found)
    return TrunkSources(entries, networks)


def _relays(config: EdgeConfig) -> MediaRelays | None:
    if not config.relays:
        return None
    retransmission = Retransmission(config.relay_timeout_s, config.relay_tries)
    return MediaRelays(config.relays, retransmission, config.relay_ping_interval_s)


def _log_media(config: EdgeConfig) -> None:
    """Say once, at start-up, whether calls' media will be anchored."""
    if config.relays:
        log.info(
            "anchoring media on %s (tenants with media.anchor)",
            ", ".join(str(relay) for relay in config.relays),
        )
    else:
        log.info("no media relay configured: media is not anchored, whatever tenants say")


def settle_heap() -> None:
    """Freeze what start-up built and collect less often (measured: GC was 15-40 % of
    a busy worker's CPU, mostly re-scanning the tenant snapshots at every full
    collection; frozen objects are never scanned again).

    Call once the process has loaded its tenants and opened its sockets.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    config: EdgeConfig, worker: int = 0, on_ready: Callable[[], None] | None = None
) -> None:
    """Run one edge process until SIGTERM or SIGINT, then shut down gracefully.

    The signal handlers come first: a SIGTERM that arrives while the process loads its
    tenants or right after it said it is ready still means a graceful stop.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    process = EdgeProcess(config, worker)
    await process.start()
    settle_heap()
    if on_ready is not None:
        on_ready()
    await stop.wait()
    log.info("edge worker %d draining", worker)
    await process.stop()
