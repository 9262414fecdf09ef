"""The transaction user of the edge: what happens to each request (RFC 3261 §8.2, §10).

The request route of STYLE habit 8 after the transaction layer: in-dialog requests go
to the call they belong to; out of dialog, OPTIONS is answered (§11), REGISTER goes
through authentication (401) to the registrar and the location store, INVITE through
authentication (407) to call control (:mod:`sipedge.calls`), except an INVITE from one
of the tenants' SIP trunks (:class:`~sipedge.calls.trunks.TrunkSources`: by its source
address; or from a network a trunk lists, when it calls one of its DIDs), which goes to
the DID it names. Whatever goes wrong while
handling a request is answered (a ParseError with its status, a store problem with
500 and Retry-After) and never takes the process down.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Coroutine
from typing import Any

from contracts.snapshot import TenantSnapshot
from sipedge.adapters.transport import Inbound
from sipedge.authn import Authenticator, AuthResult, Outcome
from sipedge.calls import CallControl, Caller
from sipedge.calls.admission import Refused
from sipedge.calls.trunks import Inbound as TrunkCall
from sipedge.calls.trunks import TrunkRef, TrunkSources, inbound_call
from sipedge.edge import Edge, TransactionUser
from sipedge.location import Binding, LocationBusy, LocationStore, Source
from sipedge.registrar import (
    RegistrarDecision,
    RegistrarPolicy,
    address_of_record,
    build_response,
    decide,
)
from sipedge.sip.errors import ParseError
from sipedge.sip.message import Request, make_response
from sipedge.sip.transaction import CancelReceived, TransactionKey
from sipedge.sip.uri import SipUri
from sipedge.tenants import TenantDirectory

log = logging.getLogger("sipedge.ua")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK"
#: Requests challenged before they are handled (REGISTER: 401, INVITE: 407).
_CHALLENGED = frozenset({"REGISTER", "INVITE"})
#: Starts the To tag of every stateless answer; the tags of dialogs are hex, never "s".
STATELESS_TAG_PREFIX = "sl"


def stateless_tag(request: Request) -> str:
    """The To tag of a stateless answer to ``request``: the same for its retransmissions
    (same Call-ID, From tag and branch), different for any other request."""
    key = f"{request.call_id}\x00{request.from_.tag}\x00{request.branch}"
    digest = hashlib.blake2s(key.encode("utf-8", "surrogateescape"), digest_size=6)
    return STATELESS_TAG_PREFIX + digest.hexdigest()


class UserAgent(TransactionUser):
    """Dispatches every new server transaction's request; one per edge process."""

    def __init__(
        self, edge: Edge, tenants: TenantDirectory, location: LocationStore, calls: CallControl
    ) -> None:
        self.edge = edge
        self.tenants = tenants
        self.location = location
        self.calls = calls
        config = edge.config
        self.auth = Authenticator(config.nonce_secret, config.nonce_ttl_s, config.digest_algorithms)
        self._tasks: set[asyncio.Task[None]] = set()
        self._edge_name = f"{socket.gethostname()}/{os.getpid()}"
        #: Where the tenants' trunks send from (set by the process as trunks resolve).
        self.trunk_sources = TrunkSources()

    # -- entry points from the edge ------------------------------------------------------
    def screen(self, request: Request, inbound: Inbound) -> bool:
        """Challenge a REGISTER or INVITE without credentials for its realm statelessly.

        RFC 3261 §8.2.7 names this the most common use of a stateless UAS: half of all
        requests are such first attempts, and a challenge needs no transaction, no task
        and no store. A lost 401/407 is recovered by the client's retransmission, which
        gets a new one; the To tag is derived from the request (:func:`stateless_tag`),
        so retransmissions see the same tag and the ACK of a 407 is recognised and
        dropped without a lookup (:meth:`on_ack`).
        """
        method = request.method
        if method not in _CHALLENGED or request.to.tag is not None:
            return False
        if method == "INVITE" and not self.edge.accepting:
            return False  # the transaction path answers 503
        if self._from_trunk(request, inbound):
            return False  # a provider is not challenged: its address is what we trust
        _, realm = self._tenant_of(request)
        if self.auth.has_credentials(request, realm):
            return False
        source = inbound.source.host
        challenge = self.auth.challenge(
            request, realm, source, self.edge.wall(), stale=False, to_tag=stateless_tag(request)
        )
        self.edge.reply_stateless(challenge, inbound)
        self.edge.metrics.challenged(method)
        return True

    def on_request(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        self._spawn(self._handle(request, key, inbound), request, key)

    def on_cancel(self, event: CancelReceived) -> None:
        self.calls.on_cancel(event)

    def on_ack(self, ack: Request, inbound: Inbound | None) -> None:
        tag = ack.to.tag
        if tag is not None and tag.startswith(STATELESS_TAG_PREFIX):
            return  # the ACK of a stateless 407: nothing to do (§8.2.7)
        self.calls.on_ack(ack)

    def _spawn(
        self, work: Coroutine[Any, Any, None], request: Request, key: TransactionKey | None
    ) -> None:
        task = asyncio.create_task(self._guarded(work, request, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(
        self, work: Coroutine[Any, Any, None], request: Request, key: TransactionKey | None
    ) -> None:
        try:
            await work
        except ParseError as exc:
            self._answer(key, request, exc.status, exc.reason, exc.reply_headers)
        except LocationBusy:
            self._answer(key, request, 500, "Server Internal Error", [("Retry-After", "1")])
        except Exception:
            log.exception("failed to handle %s call-id=%s", request.method, _call_id(request))
            self._answer(key, request, 500, "Server Internal Error", [])

    def _answer(
        self,
        key: TransactionKey | None,
        request: Request,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
    ) -> None:
        if key is None or request.method == "ACK":
            return
        response = make_response(request, status, reason, to_tag=self.calls.new_tag())
        for name, value in headers:
            response.headers.add(name, value)
        self.edge.respond(key, response)

    # -- the request route ----------------------------------------------------------------
    async def _handle(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        if request.to.tag is not None:
            await self.calls.in_dialog(request, key, inbound)
            return
        method = request.method
        if method == "OPTIONS":
            self._options(request, key)
        elif method == "REGISTER":
            await self._register(request, key, inbound)
        elif method == "INVITE":
            await self._invite(request, key, inbound)
        elif method in ("BYE", "UPDATE", "INFO", "PRACK"):
            self._answer(key, request, 481, "Call/Transaction Does Not Exist", [])
        else:
            self._answer(key, request, 405, "Method Not Allowed", [("Allow", ALLOW)])

    def _options(self, request: Request, key: TransactionKey) -> None:
        response = make_response(request, 200, "OK", to_tag=self.calls.new_tag())
        response.headers.add("Allow", ALLOW)
        response.headers.add("Accept", "application/sdp")
        response.headers.add("Supported", "timer, replaces")
        self.edge.respond(key, response)

    def _tenant_of(self, request: Request) -> tuple[TenantSnapshot | None, str]:
        """The tenant a request is for, and the realm to challenge with (§22.1)."""
        uri = request.uri
        host = uri.host_address if isinstance(uri, SipUri) else ""
        tenant = self.tenants.by_host(host)
        if tenant is None or not tenant.enabled:
            return None, host.lower()
        return tenant, tenant.domain

    def authenticate(
        self, request: Request, key: TransactionKey, inbound: Inbound
    ) -> tuple[TenantSnapshot, AuthResult] | None:
        """Run digest auth; answer 401/407/403/400 and return None unless it passed."""
        tenant, realm = self._tenant_of(request)
        now = self.edge.wall()
        result = self.auth.check(request, tenant, realm, inbound.source.host, now)
        if result.outcome is Outcome.OK and tenant is not None:
            return tenant, result
        if result.outcome in (Outcome.CHALLENGE, Outcome.STALE):
            challenge = self.auth.challenge(
                request,
                realm,
                inbound.source.host,
                now,
                stale=result.outcome is Outcome.STALE,
                to_tag=self.calls.new_tag(),
            )
            self.edge.respond(key, challenge)
        elif result.outcome is Outcome.FORBIDDEN:
            self.edge.metrics.auth_failures.labels(tenant.name if tenant else "-").inc()
            self._answer(key, request, 403, "Forbidden", [])
        else:
            self._answer(key, request, 400, f"Bad Request: bad credentials ({result.detail})", [])
        return None

    async def _register(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        passed = self.authenticate(request, key, inbound)
        if passed is None:
            return
        tenant, result = passed
        assert result.extension is not None
        to_user = request.to.uri.user if isinstance(request.to.uri, SipUri) else None
        if to_user != result.extension.number:
            self._answer(key, request, 403, "Forbidden: you may only register yourself", [])
            return
        limits = tenant.limits
        policy = RegistrarPolicy(
            tenant.domain,
            {result.extension.number},
            limits.min_expires_s,
            limits.max_expires_s,
            limits.default_expires_s,
            min(result.extension.max_contacts, limits.max_contacts_per_aor),
        )
        aor = address_of_record(request, policy)
        assert isinstance(aor, str)
        source = Source(
            inbound.source.transport,
            inbound.source.host,
            inbound.source.port,
            f"{self._edge_name}/{inbound.listener}",
        )
        now = self.edge.wall()

        def decide_now(existing: list[Binding]) -> RegistrarDecision:
            return decide(request, existing, now, policy, source)

        decision, after = await self.location.update(tenant.name, aor, decide_now, now)
        if decision.ok:
            self.edge.metrics.register_ok.labels(tenant.name).inc()
        log.debug("REGISTER %s -> %s", aor, decision.status, extra={"call_id": request.call_id})
        self.edge.respond(key, build_response(request, decision, after, now))

    async def _invite(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        if not self.edge.accepting:
            self._answer(key, request, 503, "Service Unavailable", [("Retry-After", "5")])
            return
        if self._from_trunk(request, inbound):
            await self._trunk_invite(request, key, inbound)
            return
        passed = self.authenticate(request, key, inbound)
        if passed is None:
            return
        tenant, result = passed
        extension = result.extension
        assert extension is not None
        caller = Caller(extension.number, extension.display_name)
        await self.calls.new_call(request, key, inbound, tenant, caller)

    def _from_trunk(self, request: Request, inbound: Inbound) -> bool:
        """From a trunk's address; or an INVITE to one of a trunk's DIDs from a network
        it lists (anything else from there is a phone's, challenged as usual)."""
        source = inbound.source
        if self.trunk_sources.at(source.transport, source.host, source.port):
            return True
        if request.method != "INVITE":
            return False
        near = self.trunk_sources.near(source.host)
        return bool(near) and not isinstance(self._near_call(request, near), Refused)

    def _near_call(self, request: Request, near: tuple[TrunkRef, ...]) -> TrunkCall | Refused:
        return inbound_call(request, near, self.tenants.by_name, listed_dids_only=True)

    async def _trunk_invite(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        """An INVITE from a trunk: to the DID it names, for the tenant whose trunk it is."""
        source = inbound.source
        refs = self.trunk_sources.at(source.transport, source.host, source.port)
        if refs:
            found = inbound_call(request, refs, self.tenants.by_name)
        else:
            found = self._near_call(request, self.trunk_sources.near(source.host))
        if isinstance(found, Refused):
            log.info(
                "call from trunk refused: %s", found.reason, extra={"call_id": request.call_id}
            )
            self._answer(key, request, found.status, found.reason, [])
            return
        sender = request.from_
        number = sender.uri.user if isinstance(sender.uri, SipUri) else None
        caller = Caller(number or "anonymous", sender.display_name or "", found.trunk.name)
        await self.calls.new_call(request, key, inbound, found.tenant, caller, found.did)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.edge.config.drain_s)


def _call_id(request: Request) -> str:
    try:
        return request.call_id
    except ParseError:
        return "?"
