"""One reconciliation of one Tenant: read what is → render → apply → write the status.

Every trigger (the Tenant changed, one of its Trunks or DialPlans changed, the operator
restarted) runs the same :meth:`Reconciler.tenant`, which reads everything afresh from the
API server, so an old event can never publish old content: per tenant, one runs at a time
in this process, and the Redis script makes concurrent operators safe as well.

A spec that cannot be served is a status (``Ready=False``, reason ``InvalidSpec``, a
message naming the object and field), never an exception: kopf would retry it for ever.
A store that cannot be reached is :class:`kopf.TemporaryError`: kopf retries after a delay.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import aiohttp
import asyncpg
import kopf
from redis.exceptions import RedisError

from cloudpbx_operator import render, workloads
from cloudpbx_operator.apply import HostTaken, NameTaken, Publisher, provision
from cloudpbx_operator.config import Platform
from cloudpbx_operator.kube import ApiError, Kube, owner_reference
from contracts.billing.store import BillingStore
from contracts.keys import trunk_status_key
from contracts.snapshot import TenantSnapshot

log = logging.getLogger("cloudpbx_operator")

#: Seconds before kopf tries again when a store or the API server is out of reach.
RETRY_DELAY_S = 5
#: Bytes of randomness in a generated SIP password (24 URL-safe characters).
PASSWORD_BYTES = 18
STORE_ERRORS = (
    RedisError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)


def now_text() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """The operator's state between handlers: its clients and the per-tenant locks."""

    def __init__(
        self,
        kube: Kube,
        publisher: Publisher,
        billing: BillingStore,
        *,
        served: frozenset[str] | None = None,
        platform: Platform | None = None,
        clock: Callable[[], str] = now_text,
        password: Callable[[], str] = lambda: secrets.token_urlsafe(PASSWORD_BYTES),
    ) -> None:
        self.kube = kube
        self.publisher = publisher
        self.billing = billing
        self.served = served
        self.platform = platform
        #: The ownerReference to the platform's ConfigMap, once read.
        self._owner: dict[str, Any] | None = None
        self.clock = clock
        self.password = password
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def tenant(self, namespace: str, name: str, *, deleting: bool = False) -> None:
        """Reconcile Tenant ``name``; ``deleting``: it is going (disable it, keep its money)."""
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            try:
                await _retrying(self._tenant(namespace, name, deleting=deleting))
            except kopf.TemporaryError as exc:
                await self._note_outage(namespace, name, str(exc))
                raise

    async def _note_outage(self, namespace: str, name: str, message: str) -> None:
        """Say in the status that a store is out of reach (best effort: the API server
        may be what is out of reach)."""
        try:
            body = await self.kube.get(namespace, "tenants", name)
            if body is not None:
                status = render.outage_status(body, message, now=self.clock())
                if render.merged(body.get("status") or {}, status) != body.get("status"):
                    await self.kube.patch_status(namespace, "tenants", name, status)
        except (ApiError, *STORE_ERRORS) as exc:
            log.warning("Tenant %s/%s: could not write the outage status: %s", namespace, name, exc)

    async def _tenant(self, namespace: str, name: str, *, deleting: bool) -> None:
        body = await self.kube.get(namespace, "tenants", name)
        if body is None:  # gone already (or never there): only its DialPlans say so
            await self._dial_plan_statuses(namespace, name, None, None)
            return
        deleting = deleting or bool(body.get("metadata", {}).get("deletionTimestamp"))
        if self.served is not None and namespace not in self.served:
            if not deleting:  # never served: nothing to disable
                await self._not_served(namespace, body)
            return
        outcome = await self._render(namespace, body, generate=not deleting)
        if deleting:
            if await self._disable(name, body["metadata"].get("uid", ""), outcome):
                await self._dedicated_edge(name, wanted=False)
            await self._dial_plan_statuses(namespace, name, None, None)
        elif isinstance(outcome, render.Problem):
            log.warning("Tenant %s/%s cannot be served: %s", namespace, name, outcome.message)
            await self._refuse(namespace, body, outcome)
        else:
            await self._serve(namespace, body, outcome)

    async def _render(
        self, namespace: str, body: dict[str, Any], *, generate: bool
    ) -> TenantSnapshot | render.Problem:
        """Read the Tenant's Trunks, DialPlans and Secrets (generating the missing
        credentials when ``generate``) and render its snapshot."""
        name = body["metadata"]["name"]
        tenant = render.with_credential_refs(body)
        trunks = render.tenant_objects(await self.kube.list(namespace, "trunks"), name)
        plans = render.tenant_objects(await self.kube.list(namespace, "dialplans"), name)
        secret_values = await self.kube.read_secrets(namespace, render.secret_names(tenant, trunks))
        if generate:
            await self._generate_credentials(namespace, body, tenant, secret_values)
        return render.render_snapshot(tenant, trunks, plans, secret_values)

    async def _serve(self, namespace: str, body: dict[str, Any], snapshot: TenantSnapshot) -> None:
        """Provision the account, publish the snapshot, run a dedicated edge, say so."""
        name = snapshot.name
        refusal = await provision(self.billing, snapshot)
        if refusal is not None:
            message = f"Tenant {name}: spec.billing: {refusal}"
            await self._refuse(namespace, body, render.Problem(render.INVALID_SPEC, message))
            return
        billing = snapshot.billing
        provisioned = render.Condition(
            "Provisioned",
            True,
            "AccountReady",
            f"account main ({billing.plan}, {billing.currency})",
        )
        published = await self.publisher.publish(snapshot)
        if isinstance(published, NameTaken):
            message = (
                f"Tenant {name}: the name is served for another Tenant (uid {published.owner}),"
                " in another namespace; a tenant's name is unique across the platform"
            )
            problem = render.Problem(render.NAME_CONFLICT, message)
            await self._refuse(namespace, body, problem, provisioned)
            return
        if isinstance(published, HostTaken):
            message = (
                f"Tenant {name}: host {published.host!r} is served by tenant {published.owner!r}"
            )
            problem = render.Problem(render.HOST_CONFLICT, message)
            await self._refuse(namespace, body, problem, provisioned)
            return
        if published.changed:
            log.info(
                "Tenant %s/%s: published snapshot version %d", namespace, name, published.version
            )
        await self._dedicated_edge(name, wanted=render.dedicated(body))
        await self._write_status(namespace, body, snapshot, provisioned, published.version)

    async def _refuse(
        self,
        namespace: str,
        body: dict[str, Any],
        problem: render.Problem,
        provisioned: render.Condition | None = None,
    ) -> None:
        """Ready=False with the problem (and Provisioned=False too, unless given)."""
        if provisioned is None:
            provisioned = render.Condition("Provisioned", False, problem.reason, problem.message)
        await self._write_status(namespace, body, problem, provisioned, None)

    async def platform_workloads(self) -> None:
        """The relay and the shared edge pool, as the platform configuration says (run at
        start: a changed configuration restarts the operator)."""
        await _retrying(self._platform_workloads())

    async def _platform_workloads(self) -> None:
        if self.platform is None:
            return
        document, owner = self.platform.document, await self._platform_owner(self.platform)
        for body in workloads.relay_objects(document, owner=owner) + workloads.edge_objects(
            document, None, owner=owner
        ):
            if await self.kube.ensure(body):
                log.info("%s %s written", body["kind"], body["metadata"]["name"])
        # the relay's other kind, if it was switched (DaemonSet, Deployment)
        other = "Deployment" if document["relay"]["kind"] == "DaemonSet" else "DaemonSet"
        relay = workloads.name_of(document["release"], "relay")
        await self.kube.remove("apps/v1", other, document["namespace"], relay)

    async def _platform_owner(self, platform: Platform) -> dict[str, Any]:
        """The ownerReference every workload carries: to the platform's ConfigMap, whose uid
        is read once (the file the operator reads is its mounted copy)."""
        if self._owner is None:
            found = await self.kube.config_map(platform.namespace, platform.config_map)
            if found is None or not found.get("metadata", {}).get("uid"):
                where = f"{platform.namespace}/{platform.config_map}"
                raise kopf.TemporaryError(
                    f"ConfigMap {where} (the platform, owner of the workloads) not found",
                    delay=RETRY_DELAY_S,
                )
            self._owner = owner_reference(found)
        return self._owner

    async def _dedicated_edge(self, tenant: str, *, wanted: bool) -> None:
        """The edge Deployment, Service and budget of a tenant with ``isolation:
        dedicated``; removed when it no longer is, or is deleted."""
        if self.platform is None:
            return
        owner = await self._platform_owner(self.platform)
        for body in workloads.edge_objects(self.platform.document, tenant, owner=owner):
            metadata = body["metadata"]
            if wanted:
                written = await self.kube.ensure(body)
            else:
                written = await self.kube.remove(
                    body["apiVersion"], body["kind"], metadata["namespace"], metadata["name"]
                )
            if written:
                done = "written" if wanted else "removed"
                log.info("Tenant %s: %s %s %s", tenant, body["kind"], metadata["name"], done)

    async def _not_served(self, namespace: str, body: dict[str, Any]) -> None:
        served = ", ".join(sorted(self.served or ()))
        message = f"namespace {namespace} is not one of the platform's tenantNamespaces ({served})"
        await self._refuse(namespace, body, render.Problem(render.NAMESPACE_NOT_SERVED, message))

    async def _generate_credentials(
        self,
        namespace: str,
        body: dict[str, Any],
        tenant: dict[str, Any],
        secret_values: dict[str, dict[str, str]],
    ) -> None:
        missing = render.missing_credentials(tenant, secret_values)
        if not missing:
            return
        secret = render.credentials_secret(body["metadata"]["name"])
        values = {number: self.password() for number in missing}
        secret_values[secret] = await self.kube.add_secret_values(
            namespace, secret, values, owner=owner_reference(body)
        )
        log.info("Tenant %s/%s: generated SIP credentials for %d extension(s) in Secret %s",
                 namespace, body["metadata"]["name"], len(missing), secret)  # fmt: skip

    async def _disable(self, name: str, uid: str, outcome: TenantSnapshot | render.Problem) -> bool:
        """Publish the tenant disabled (the edges end its calls and drop its registrations),
        then release its hosts; when its objects no longer compile, the stored snapshot
        disabled. False when the name is served for another Tenant (``uid`` is not the
        one published: this one was refused as a duplicate), which is left alone."""
        snapshot = (
            outcome if isinstance(outcome, TenantSnapshot) else await self.publisher.stored(name)
        )
        if snapshot is None:
            return True
        if snapshot.uid and uid and snapshot.uid != uid:
            log.info("Tenant %s (uid %s) was never served: nothing to disable", name, uid)
            return False
        published = await self.publisher.publish(replace(snapshot, enabled=False))
        if isinstance(published, NameTaken):
            log.info("Tenant %s (uid %s) was never served: nothing to disable", name, uid)
            return False
        if isinstance(published, HostTaken):  # the hosts went to another tenant meanwhile
            return True
        released = await self.publisher.release(snapshot)  # its domain is free to take again
        log.info("Tenant %s: disabled (snapshot version %d), %d hosts released",
                 name, published.version, released)  # fmt: skip
        return True

    async def _write_status(
        self,
        namespace: str,
        body: dict[str, Any],
        outcome: TenantSnapshot | render.Problem,
        provisioned: render.Condition,
        version: int | None,
    ) -> None:
        status = render.tenant_status(
            body, outcome, provisioned=provisioned, version=version, now=self.clock()
        )
        await self._dial_plan_statuses(namespace, body["metadata"]["name"], outcome, version)
        current = body.get("status") or {}
        if render.merged(current, status) == current:
            return
        await self.kube.patch_status(namespace, "tenants", body["metadata"]["name"], status)
        if isinstance(outcome, render.Problem):  # an Event too, once: kubectl describe shows it
            raw = cast("kopf.RawBody", body)  # an object as the API server gave it
            kopf.warn(kopf.Body(raw), reason=outcome.reason, message=outcome.message)

    async def _dial_plan_statuses(
        self,
        namespace: str,
        tenant: str,
        outcome: TenantSnapshot | render.Problem | None,
        version: int | None,
    ) -> None:
        """Each DialPlan of ``tenant`` says whether it is served (None: no such Tenant)."""
        for plan in render.tenant_objects(await self.kube.list(namespace, "dialplans"), tenant):
            status = render.dial_plan_status(plan, outcome, version=version, now=self.clock())
            current = plan.get("status") or {}
            if render.merged(current, status) != current:
                name = plan["metadata"]["name"]
                await self.kube.patch_status(namespace, "dialplans", name, status)

    async def trunk_status(self, namespace: str, body: dict[str, Any]) -> None:
        """Copy the registration state the edges report for this Trunk into its status."""
        spec = body.get("spec", {})
        tenant, name = spec.get("tenant"), body["metadata"]["name"]
        if not isinstance(tenant, str) or not tenant:
            return
        try:
            reported = await self.publisher.redis.get(trunk_status_key(tenant, name))
            if reported is not None and not await self._serves(namespace, tenant):
                reported = None  # the name's edges report for a Tenant in another namespace
        except STORE_ERRORS as exc:
            raise kopf.TemporaryError(f"Redis: {exc}", delay=RETRY_DELAY_S) from None
        status = render.trunk_status(body, reported, now=self.clock())
        current = body.get("status") or {}
        if render.without_times(render.merged(current, status)) != render.without_times(current):
            await self.kube.patch_status(namespace, "trunks", name, status)

    async def _serves(self, namespace: str, tenant: str) -> bool:
        """Whether the snapshot published under ``tenant`` is that of the Tenant of this
        name in ``namespace`` (names are unique across namespaces; a duplicate is
        refused, and must not see the owner's state)."""
        body = await self.kube.get(namespace, "tenants", tenant)
        uid = (body or {}).get("metadata", {}).get("uid")
        return bool(uid) and await self.publisher.stored_uid(tenant) == uid


async def _retrying(step: Awaitable[None]) -> None:
    """Turn an outage into kopf's retry-later, saying which store it was."""
    try:
        await step
    except RedisError as exc:
        raise kopf.TemporaryError(f"Redis: {exc}", delay=RETRY_DELAY_S) from None
    except (ApiError, aiohttp.ClientError) as exc:
        raise kopf.TemporaryError(f"API server: {exc!r}", delay=RETRY_DELAY_S) from None
    except STORE_ERRORS as exc:
        raise kopf.TemporaryError(f"store: {exc!r}", delay=RETRY_DELAY_S) from None
