"""kopf's entry points: thin, each hands its object to :mod:`.reconcile`.

* Tenant created, changed or found at start-up → reconcile it; every
  :data:`RESYNC_S` seconds again (a Secret it reads may have changed, Redis may have
  lost its keys: both mend themselves).
* Tenant deleted → its finalizer (``cloudpbx.io/finalizer``) holds it until the tenant is
  published disabled; its CDRs and ledger stay in Postgres.
* Trunk or DialPlan created, changed or deleted → reconcile the tenant it names (both,
  when ``spec.tenant`` moved). No finalizers on them: their deletion is only noticed.
* Every Trunk, every few seconds → copy the registration state the edges report.
* Start-up (every replica) → open the stores, create kopf's peering object when it is
  missing, write the relay and shared edge workloads (no change when they are as
  rendered). With peering, kopf keeps all replicas but the one of highest priority paused:
  no watching, no handlers, no timers; when that one stops or dies, the next resumes and
  reconciles every Tenant it finds.

kopf keeps its own bookkeeping in annotations under ``cloudpbx.io`` and leaves ``status``
to the operator; no handler returns a value (kopf would write it into the status).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import kopf
from redis.asyncio import Redis

from cloudpbx_operator.apply import Publisher
from cloudpbx_operator.config import Config
from cloudpbx_operator.kube import ApiError, Kube
from cloudpbx_operator.reconcile import RETRY_DELAY_S, Reconciler
from cloudpbx_operator.render import GROUP, VERSION
from contracts.stores.url import open_store

log = logging.getLogger("cloudpbx_operator")

FINALIZER = f"{GROUP}/finalizer"
RESYNC_S = 60.0
#: Postgres connections the operator keeps: it provisions one tenant at a time.
BILLING_POOL_SIZE = 2


def _ns(namespace: str | None) -> str:
    """Tenants, Trunks and DialPlans are namespaced: kopf always names the namespace."""
    if namespace is None:
        raise kopf.PermanentError("a cloudpbx.io object without a namespace")
    return namespace


def reconciler(memo: Any) -> Reconciler:
    found = memo.get("reconciler")
    if not isinstance(found, Reconciler):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return found


def register(config: Config, registry: kopf.OperatorRegistry) -> None:
    """Registers the operator's handlers with ``registry``."""

    @kopf.on.login(id="login", registry=registry)
    def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        """kopf's own minimal logins: the pod's service account, else the kubeconfig."""
        return kopf.login_with_service_account(
            settings=settings, **kwargs
        ) or kopf.login_with_kubeconfig(settings=settings, **kwargs)

    @kopf.on.startup(id="start", registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.level = logging.WARNING
        reconciler = memo.get("reconciler")
        if not isinstance(reconciler, Reconciler):  # not on kopf's retry of this handler
            billing = await open_store(config.billing_url, pool_size=BILLING_POOL_SIZE)
            await billing.migrate()
            reconciler = Reconciler(
                Kube.connect(settings),
                Publisher(Redis.from_url(config.redis_url)),
                billing,
                served=config.served_namespaces,
                platform=config.platform,
            )
            memo["reconciler"] = reconciler
        if config.peering is not None:
            settings.peering.lifetime = config.peering.lifetime_s
            await _peering(reconciler.kube, config)
        await reconciler.platform_workloads()

    @kopf.on.cleanup(id="stop", registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        found = memo.get("reconciler")
        if isinstance(found, Reconciler):
            await found.kube.close()
            await found.publisher.redis.aclose()
            await found.billing.close()

    @kopf.on.resume(GROUP, VERSION, "tenants", id="tenant", registry=registry)
    @kopf.on.create(GROUP, VERSION, "tenants", id="tenant", registry=registry)
    @kopf.on.update(GROUP, VERSION, "tenants", id="tenant", registry=registry)
    @kopf.timer(GROUP, VERSION, "tenants", id="tenant-resync", interval=RESYNC_S,
                initial_delay=RESYNC_S, registry=registry)  # fmt: skip
    async def tenant(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        await reconciler(memo).tenant(_ns(namespace), name)

    @kopf.on.delete(GROUP, VERSION, "tenants", id="tenant-deleted", registry=registry)
    async def tenant_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        await reconciler(memo).tenant(_ns(namespace), name, deleting=True)

    for plural in ("trunks", "dialplans"):

        @kopf.on.create(GROUP, VERSION, plural, id=f"{plural}-changed", registry=registry)
        @kopf.on.update(GROUP, VERSION, plural, id=f"{plural}-changed", registry=registry)
        async def changed(namespace: str | None, old: Any, new: Any, memo: Any, **_: Any) -> None:
            for owner in _tenants(old, new):
                await reconciler(memo).tenant(_ns(namespace), owner)

        @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-gone", registry=registry,
                       when=lambda type, **_: type == "DELETED")  # fmt: skip
        async def gone(namespace: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
            for owner in _tenants(body, None):
                await reconciler(memo).tenant(_ns(namespace), owner)

    @kopf.timer(GROUP, VERSION, "trunks", id="trunk-registration",
                interval=config.trunk_status_interval_s, registry=registry)  # fmt: skip
    async def trunk_registration(
        namespace: str | None, body: kopf.Body, memo: Any, **_: Any
    ) -> None:
        await reconciler(memo).trunk_status(_ns(namespace), dict(body))


async def _peering(kube: Kube, config: Config) -> None:
    """kopf's peering object, created when missing (replicas wait for it, paused)."""
    assert config.peering is not None
    # kopf peers through the cluster's object when it watches every namespace
    namespace = config.watched_namespaces[0] if config.watched_namespaces else None
    try:
        if await kube.ensure_peering(config.peering.name, namespace):
            log.info("created kopf's peering object %s", config.peering.name)
    except (ApiError, aiohttp.ClientError) as exc:
        raise kopf.TemporaryError(
            f"kopf's peering object {config.peering.name}: {exc!r}", delay=RETRY_DELAY_S
        ) from None


def _tenants(*bodies: Any) -> list[str]:
    """The tenants these versions of a Trunk or DialPlan name (old and new)."""
    names: list[str] = []
    for body in bodies:
        spec = body.get("spec") if isinstance(body, dict | kopf.Body) else None
        tenant = spec.get("tenant") if spec is not None else None
        if isinstance(tenant, str) and tenant and tenant not in names:
            names.append(tenant)
    return names
