"""The call controller: call set-up (forking, CANCEL, failures) and in-dialog routing.

Set-up state lives in this process while the INVITE transaction runs (the A-leg
server transaction is here anyway); an answered call goes to the dialog store.
With media relays configured and the tenant's ``media.anchor`` on, every offer and
answer passes a relay first (:mod:`.anchor`); a relay that refuses or is silent gets
the caller a 503 and no B leg. Without either, no ng work and no SDP look-up is done.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from contracts.billing.rating import Rate
from contracts.billing.store import Disposition
from contracts.snapshot import TenantSnapshot
from contracts.trunk import Trunk
from sipedge.adapters.dns import locate
from sipedge.adapters.relay import RelayError
from sipedge.adapters.transport import Inbound
from sipedge.calls.admission import UNLIMITED, Admission, Admitted, Refused
from sipedge.calls.anchor import Anchor, has_sdp
from sipedge.calls.build import (
    Identity,
    ack_for_2xx,
    b_leg_invite,
    cancel_for,
    copy_end_to_end,
    in_dialog_request,
    relayed_response,
    unavailable,
)
from sipedge.calls.credit import CALLER_LEG, Billed, Credit, rate_of
from sipedge.calls.trunks import (
    Local,
    Outbound,
    fails_over,
    from_uri,
    only_codecs,
    presented,
    to_next_server,
    to_uri,
    trunk_invite,
    with_credentials,
)
from sipedge.calls.trunks import route as route_call
from sipedge.dialogs import DIALOG_TTL_S, Call, DialogStore, Leg
from sipedge.edge import ClientEvent, ClientHandler, Edge
from sipedge.location import Binding, LocationStore
from sipedge.media import RelayAddress
from sipedge.quotas import MemoryQuotas
from sipedge.sip.message import Request, Response, make_response
from sipedge.sip.transaction import CancelReceived, ClientKey, Peer, TimedOut, TransactionKey
from sipedge.sip.uri import SipUri
from sipedge.tenants import TenantDirectory
from sipedge.trunking import next_hop, server_failed

log = logging.getLogger("sipedge.calls")

#: In-dialog requests that may carry a new offer (RFC 3264 §8, RFC 3311).
_OFFERS = ("INVITE", "UPDATE")
#: RFC 3261 §16.7 step 6: the order in which failures are preferred for the caller.
_FAILURE_PREFERENCE = (486, 600, 603, 404, 604, 488, 606, 415, 480, 408, 503, 500)
#: A trunk channel held by a call being set up lapses this long after its ring time.
_CHANNEL_GRACE_S = 30
#: A provider's server that has not even said 100 Trying this long after our INVITE is
#: taken for down when the trunk has another (Timer B would wait 32 s, RFC 3263 §4.3;
#: proxies commonly give a server a few seconds, as Kamailio's fr_timer does).
SERVER_SILENT_S = 4.0


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: an extension of the tenant, or someone from a trunk (``trunk``: its
    name; the call holds one of its channels)."""

    number: str
    display_name: str = ""
    trunk: str = ""


@dataclass(eq=False)
class Attempts:
    """A call going out through trunks, one after the other (issue 6.5)."""

    route: Outbound
    caller: Caller
    #: Trunks still to try, in order.
    pending: list[Trunk]
    #: The offer for the provider (anchored, or the caller's own).
    sdp: bytes | None = None
    #: The trunk being tried and its no-answer timer.
    trunk: Trunk | None = None
    #: The trunk's servers not tried yet (the next after a 503 or no answer, RFC 3263 §4.3).
    servers: list[Peer] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    #: The final statuses of the trunks tried (for the caller when all fail).
    statuses: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Fork:
    """One B-leg INVITE of a call being set up."""

    invite: Request
    destination: Peer
    key: ClientKey | None = None
    provisional: bool = False
    final: int | None = None
    cancel_pending: bool = False
    #: Sent with credentials answering the trunk's challenge (a second one: refused).
    authorized: bool = False
    #: CANCELled for want of an answer in time: its final status is no news.
    abandoned: bool = False
    #: Its CANCEL went (one per INVITE: §9.1).
    cancelled: bool = False


@dataclass(eq=False)
class Answered:
    """What an answered fork's INVITE transaction still needs while it lingers (Timer M)."""

    tenant: str
    #: The B leg as we started it; each 2xx completes it into a dialog.
    template: Leg
    destination: Peer
    #: The ACK we sent for each dialog a 2xx of this INVITE made, by the callee's To tag.
    acks: dict[str, Request] = field(default_factory=dict)
    #: The ACK owed to the dialog whose 2xx carried the offer (a late offer), if any.
    owed: OwedAck | None = None


@dataclass(eq=False)
class OwedAck:
    """A 2xx that carried an offer (the INVITE had no SDP: RFC 3261 §13.2.1): its ACK
    must carry the answer, which only the other side's ACK brings. Until then the 2xx's
    retransmissions go unanswered; once sent, the ACK is kept here to be sent again."""

    #: The callee's To tag (initial INVITE) or the Call-ID of the leg that sent the 2xx.
    key: str
    ack: Request | None = None
    #: Whether the 2xx went on to the other side (later ones are retransmissions).
    passed_on: bool = False


@dataclass(eq=False)
class Setup:
    """A call between INVITE and its final answer to the caller."""

    tenant: TenantSnapshot
    a_invite: Request
    a_key: TransactionKey
    a_source: Peer
    a_tag: str
    b_call_id: str
    b_from_tag: str
    #: The B leg's From and To URIs (the caller's and the callee's AORs), as we wrote them.
    b_local_uri: str
    b_remote_uri: str
    forks: list[Fork] = field(default_factory=list)
    answered: bool = False
    finished: bool = False
    ring_timer: asyncio.TimerHandle | None = None
    #: The relay anchoring the media, once it took the offer; None: not anchored.
    relay: RelayAddress | None = None
    #: Orders the callee's answers (18x, then 2xx) through the relay.
    media_lock: asyncio.Lock | None = None
    #: The INVITE had no SDP: the callee's 2xx makes the offer, the caller's ACK answers.
    late_offer: bool = False
    #: What admission granted: a cut-off, a concurrent-call slot to free.
    admitted: Admitted = UNLIMITED
    #: A prepaid call's billing (None: no credit control) and its first grant's seconds.
    billed: Billed | None = None
    granted_s: int = 0
    #: The final status the caller got, for the CDR of a call that never connected.
    final_status: int = 0
    #: Out through trunks: their attempts (None: to an extension's bindings).
    outbound: Attempts | None = None
    #: Trunks whose channels this call holds (the one it came in by, the one it goes out).
    channels: list[str] = field(default_factory=list)
    #: The trunk the call came in by ("" from a phone).
    a_trunk: str = ""


class CallControl:
    """Sets up calls and routes in-dialog requests; one per edge process."""

    def __init__(
        self,
        edge: Edge,
        location: LocationStore,
        dialogs: DialogStore,
        anchor: Anchor | None = None,
        admission: Admission | None = None,
        credit: Credit | None = None,
        tenants: TenantDirectory | None = None,
    ) -> None:
        self.edge = edge
        #: The tenants served (for their trunks' credentials in calls already set up).
        self.tenants = tenants
        self.location = location
        self.dialogs = dialogs
        #: Trial rules and concurrent-call limits (in this process's memory by default).
        self.admission = admission if admission is not None else Admission(MemoryQuotas())
        #: Prepaid credit control; None: no billing store, no prepaid tenant's call goes.
        self.credit = credit
        #: None: no relay configured, so no call is anchored.
        self.anchor = anchor
        if anchor is not None:
            anchor.on_timeout(self._media_timeout)
        self._setups: dict[TransactionKey, Setup] = {}
        self._retransmits: dict[str, asyncio.TimerHandle] = {}
        self._contacts: dict[tuple[str, str], str] = {}
        #: ACKs owed for late offers, by the Call-ID on which the answering ACK comes.
        self._owed: dict[str, OwedAck] = {}

    @staticmethod
    def new_tag() -> str:
        return secrets.token_hex(6)

    def identity(self, tenant: str, transport: str = "UDP") -> Identity:
        """A fresh Via (new branch) and our Contact (:meth:`contact`)."""
        contact = self.contact(tenant, transport)
        return Identity(self.edge.via_for(transport), contact, self.edge.config.user_agent)

    def contact(self, tenant: str, transport: str = "UDP") -> str:
        """Our Contact, which names the tenant in its user part so an in-dialog request
        tells us whose dialog store entry to read (built once per tenant and transport)."""
        contact = self._contacts.get((tenant, transport))
        if contact is None:
            contact = self._contacts[(tenant, transport)] = self.edge.contact(tenant, transport)
        return contact

    # -- a new call ------------------------------------------------------------------------
    async def new_call(
        self,
        invite: Request,
        key: TransactionKey,
        inbound: Inbound,
        tenant: TenantSnapshot,
        caller: Caller,
        dialled: str | None = None,
    ) -> None:
        """Set up a call of ``caller`` to ``dialled`` (the Request-URI's user unless given:
        a DID from a trunk), where the tenant's dial plans send it."""
        a_tag = self.new_tag()
        if dialled is None:
            dialled = (invite.uri.user if isinstance(invite.uri, SipUri) else None) or ""
        if invite.max_forwards == 0:
            self._refuse_attempt(tenant, key, invite, a_tag, caller, dialled, 483, "Too Many Hops")
            return
        target = route_call(tenant, dialled)
        if isinstance(target, Refused):
            status, reason = target.status, target.reason
            self._refuse_attempt(tenant, key, invite, a_tag, caller, dialled, status, reason)
            return
        bindings: list[Binding] = []
        if isinstance(target, Local):
            callee_number = target.callee.number
            aor = f"sip:{callee_number}@{tenant.domain}"
            bindings = [
                b
                for b in await self.location.lookup(tenant.name, aor, self.edge.wall())
                if not self._is_us(b)
            ]
            if not bindings:
                status, reason = 480, "Temporarily Unavailable"
                self._refuse_attempt(tenant, key, invite, a_tag, caller, dialled, status, reason)
                return
        else:
            callee_number, aor = target.number, ""
            if not target.trunks:
                status, reason = 503, "Service Unavailable (no trunk to route to)"
                self._refuse_attempt(tenant, key, invite, a_tag, caller, dialled, status, reason)
                return
        admitted = await self.admission.admit(tenant, invite.call_id, self.edge.wall())
        if isinstance(admitted, Refused):
            log.info("call refused: %s", admitted.reason, extra={"call_id": invite.call_id})
            status, reason = admitted.status, admitted.reason
            self._refuse_attempt(tenant, key, invite, a_tag, caller, dialled, status, reason)
            return
        self._reply(key, invite, 100, "Trying", None)
        setup = Setup(
            tenant,
            invite,
            key,
            inbound.source,
            a_tag,
            f"{secrets.token_hex(12)}@{self.edge.config.advertised_host}",
            self.new_tag(),
            f"sip:{caller.number}@{tenant.domain}",
            aor,
        )
        setup.admitted = admitted
        setup.a_trunk = caller.trunk
        self._setups[key] = setup
        if caller.trunk and not await self._take_channel(setup, caller.trunk):
            self._refuse(setup, 503, "Service Unavailable (trunk channels busy)")
            return
        internal = isinstance(target, Local) and not caller.trunk
        if not await self._open_credit(setup, caller, callee_number, internal=internal):
            return
        sdp: bytes | None = None
        setup.late_offer = not has_sdp(invite)
        if self.anchor is not None and tenant.media.anchor and not setup.late_offer:
            sdp = await self._anchor_offer(self.anchor, setup)
            if sdp is None:
                return
        if isinstance(target, Outbound):
            setup.outbound = Attempts(target, caller, list(target.trunks), sdp)
            await self._next_trunk(setup)
            return
        shown = f'"{caller.display_name}" ' if caller.display_name else ""
        from_value = f"{shown}<{setup.b_local_uri}>;tag={setup.b_from_tag}"
        to_value = f"<{aor}>"
        for binding in bindings:
            fork_invite = b_leg_invite(
                invite,
                target=binding.contact,
                from_value=from_value,
                to_value=to_value,
                call_id=setup.b_call_id,
                max_forwards=self._max_forwards(invite),
                me=self.identity(tenant.name, binding.source.transport),
            )
            if sdp is not None:
                fork_invite.body = sdp
            destination = Peer(binding.source.transport, binding.source.ip, binding.source.port)
            fork = Fork(fork_invite, destination)
            setup.forks.append(fork)
            fork.key = self.edge.request(
                fork_invite, destination, partial(self._b_event, setup, fork)
            )
        loop = asyncio.get_running_loop()
        setup.ring_timer = loop.call_later(tenant.limits.ring_timeout_s, self._ring_timeout, setup)

    @staticmethod
    def _max_forwards(invite: Request) -> int:
        return (invite.max_forwards if invite.max_forwards is not None else 70) - 1

    # -- out through trunks ----------------------------------------------------------------
    async def _next_trunk(self, setup: Setup) -> None:
        """Try the next trunk of the route: its channel, its address, its INVITE; when
        none is left, the caller gets the most telling of their failures."""
        attempts = setup.outbound
        assert attempts is not None
        tenant = setup.tenant
        while attempts.pending and not setup.finished:
            trunk = attempts.pending.pop(0)
            if not await self._take_channel(setup, trunk.name):
                log.info("trunk %s: all channels busy", trunk.name, extra=_fields(setup))
                attempts.statuses.append(503)
                continue
            servers = await self._trunk_servers(trunk)
            if not servers:
                log.warning("trunk %s: its address does not resolve", trunk.name)
                self._free_channel(setup, trunk.name)
                attempts.statuses.append(503)
                continue
            destination, attempts.servers = servers[0], servers[1:]
            if _hung_up(setup):  # the caller CANCELled meanwhile
                self._free_channel(setup, trunk.name)
                return
            caller = attempts.caller
            user, _ = presented(trunk, caller.number, caller.display_name)
            setup.b_local_uri = from_uri(trunk, user)
            setup.b_remote_uri = to_uri(trunk, attempts.route.number)
            invite = trunk_invite(
                setup.a_invite,
                trunk,
                number=attempts.route.number,
                caller_number=caller.number,
                caller_name=caller.display_name,
                call_id=setup.b_call_id,
                from_tag=setup.b_from_tag,
                max_forwards=self._max_forwards(setup.a_invite),
                me=self.identity(tenant.name, destination.transport),
            )
            if attempts.sdp is not None:
                invite.body = attempts.sdp
            log.info("calling out via trunk %s", trunk.name, extra=_fields(setup))
            attempts.trunk = trunk
            self._to_server(setup, Fork(invite, destination))
            return
        if not setup.finished:
            self._fail(setup, _preferred_failure(attempts.statuses))

    def _send_fork(self, setup: Setup, fork: Fork) -> None:
        setup.forks.append(fork)
        fork.key = self.edge.request(
            fork.invite, fork.destination, partial(self._b_event, setup, fork)
        )

    @staticmethod
    async def _trunk_servers(trunk: Trunk) -> list[Peer]:
        """Where the trunk's requests go (its outbound proxy, or itself), located: its
        servers in the order to try them (by SRV when it is named without a port)."""
        hop = next_hop(trunk)
        found = await locate(hop.host, hop.port, hop.transport, srv=hop.srv)
        return [Peer(hop.transport, address, port) for address, port in found]

    def _trunk_final(self, setup: Setup, fork: Fork, response: Response | None) -> None:
        """A trunk's final non-2xx answer (None: no answer at all): its challenge answered,
        the next trunk tried, or the callee's answer passed to the caller."""
        attempts = setup.outbound
        assert attempts is not None
        trunk = attempts.trunk
        if setup.finished or fork.abandoned or trunk is None:
            return
        status = fork.final or 503
        challenged = response is not None and status in (401, 407)
        if challenged and not fork.authorized:
            assert response is not None
            again = with_credentials(
                fork.invite,
                response,
                username=trunk.auth_username,
                password=setup.tenant.trunk_password(trunk.name),
                cnonce=secrets.token_hex(8),
                via=self.edge.via_for(fork.destination.transport),
            )
            if again is not None:
                self._stop_no_answer(attempts)
                self._send_fork(setup, Fork(again, fork.destination, authorized=True))
                attempts.timer = asyncio.get_running_loop().call_later(
                    attempts.route.no_answer_s, self._no_answer, setup, setup.forks[-1]
                )
                return
        self._stop_no_answer(attempts)
        if server_failed(None if response is None else status) and attempts.servers:
            self._next_server(setup, fork, trunk, f"failed with {status}")
            return
        if fails_over(status, auth_refused=challenged):
            log.info("trunk %s failed with %d", trunk.name, status, extra=_fields(setup))
            self._free_channel(setup, trunk.name)
            attempts.statuses.append(503 if challenged else status)
            attempts.trunk = None
            self._spawn(self._next_trunk(setup))
            return
        self._fail(setup, 480 if status in (408, 487) else status)

    def _to_server(self, setup: Setup, fork: Fork) -> None:
        """Send a trunk's INVITE to one of its servers, timed: the route's no-answer time,
        and, while the trunk has other servers, :data:`SERVER_SILENT_S` to say anything."""
        attempts = setup.outbound
        assert attempts is not None
        self._send_fork(setup, fork)
        loop = asyncio.get_running_loop()
        attempts.timer = loop.call_later(attempts.route.no_answer_s, self._no_answer, setup, fork)
        if attempts.servers:
            loop.call_later(SERVER_SILENT_S, self._silent, setup, fork)

    def _next_server(self, setup: Setup, fork: Fork, trunk: Trunk, failure: str) -> None:
        """The trunk's server failed the call (a 503, no answer at all, silence): the
        INVITE goes to its next server, on the same channel (RFC 3263 §4.3)."""
        attempts = setup.outbound
        assert attempts is not None
        failed, destination = fork.destination, attempts.servers.pop(0)
        log.info(
            "trunk %s: server %s:%d %s, trying %s:%d",
            trunk.name,
            failed.host,
            failed.port,
            failure,
            destination.host,
            destination.port,
            extra=_fields(setup),
        )
        server = (failed.host, failed.port)
        self.edge.metrics.trunk_server_failed(setup.tenant.name, trunk.name, server, "INVITE")
        again = to_next_server(fork.invite, via=self.edge.via_for(destination.transport))
        self._to_server(setup, Fork(again, destination))

    def _silent(self, setup: Setup, fork: Fork) -> None:
        """The trunk's server said nothing to the INVITE in :data:`SERVER_SILENT_S`: it is
        given up (CANCELled should it speak after all, §9.1) for the trunk's next."""
        attempts = setup.outbound
        assert attempts is not None
        trunk = attempts.trunk
        if setup.finished or fork.provisional or fork.final is not None or fork.abandoned:
            return
        if trunk is None or not attempts.servers:
            return
        fork.abandoned = True
        self._cancel(fork)
        self._stop_no_answer(attempts)
        self._next_server(setup, fork, trunk, f"said nothing in {SERVER_SILENT_S:g} s")

    def _no_answer(self, setup: Setup, fork: Fork) -> None:
        """The trunk did not answer in time: CANCEL it and try the next."""
        attempts = setup.outbound
        assert attempts is not None
        attempts.timer = None
        if setup.finished or fork.final is not None:
            return
        fork.abandoned = True
        self._cancel(fork)
        if attempts.trunk is not None:
            log.info("trunk %s: no answer in time", attempts.trunk.name, extra=_fields(setup))
            self._free_channel(setup, attempts.trunk.name)
        attempts.trunk = None
        attempts.statuses.append(480)
        self._spawn(self._next_trunk(setup))

    @staticmethod
    def _stop_no_answer(attempts: Attempts) -> None:
        if attempts.timer is not None:
            attempts.timer.cancel()
            attempts.timer = None

    async def _take_channel(self, setup: Setup, trunk_name: str) -> bool:
        """One of the trunk's channels for this call, if it limits them and has one free."""
        trunk = setup.tenant.trunk(trunk_name)
        if trunk is None or not trunk.max_channels:
            return True
        now = self.edge.wall()
        until = now + setup.tenant.limits.ring_timeout_s + _CHANNEL_GRACE_S
        if setup.outbound is not None:
            until = max(until, now + setup.outbound.route.no_answer_s + _CHANNEL_GRACE_S)
        held = await self.admission.quotas.take_slot(
            setup.tenant.name,
            setup.a_invite.call_id,
            trunk.max_channels,
            until,
            now,
            trunk=trunk.name,
        )
        if held:
            setup.channels.append(trunk.name)
        return held

    def _free_channel(self, setup: Setup, trunk_name: str) -> None:
        if trunk_name in setup.channels:
            setup.channels.remove(trunk_name)
            work = self.admission.quotas.free_slot(
                setup.tenant.name, setup.a_invite.call_id, trunk=trunk_name
            )
            self._spawn(work)

    def _refuse_attempt(
        self,
        tenant: TenantSnapshot,
        key: TransactionKey,
        invite: Request,
        a_tag: str,
        caller: Caller,
        dialled: str,
        status: int,
        reason: str,
    ) -> None:
        """Refuse a call before it is set up (no such number, nobody registered, a
        trial's limits); the attempt still gets its CDR (the caller's leg, unrated)."""
        self._reply(key, invite, status, reason, a_tag)
        if self.credit is None:
            return
        now_ms = _ms(self.edge.wall())
        billed = Billed(None, now_ms, caller.number, dialled, cseq=invite.cseq.number)
        work = self.credit.settle(
            tenant.billing_id,
            invite.call_id,
            billed,
            _disposition(status),
            None,
            now_ms,
            callee_leg=False,
        )
        self._spawn(work)

    async def _open_credit(
        self, setup: Setup, caller: Caller, callee_number: str, *, internal: bool
    ) -> bool:
        """The call's rate and its caller leg opened in the billing store with a first
        grant (:mod:`.credit`); False when the caller was refused (402, 403: no money or
        no rate; 503: the store failed, or a prepaid call on an edge without one). Without
        a billing store, other plans' calls go unrecorded."""
        tenant = setup.tenant
        if self.credit is None:
            if tenant.billing.plan != "prepaid":
                return True
            self._refuse(setup, 503, "Billing Unavailable")
            return False
        rate = rate_of(tenant, callee_number, internal=internal)
        now_ms = _ms(self.edge.wall())
        if isinstance(rate, Refused):
            self._refuse(setup, rate.status, rate.reason)
            return False
        invoiced = tenant.billing.plan == "postpaid"
        setup.billed = Billed(
            rate, now_ms, caller.number, callee_number, invoiced, cseq=setup.a_invite.cseq.number
        )
        opened = await self.credit.open(
            tenant.billing_id,
            setup.a_invite.call_id,
            setup.billed,
            tenant.limits.ring_timeout_s,
            now_ms,
        )
        if isinstance(opened, Refused):
            self._refuse(setup, opened.status, opened.reason)
            return False
        grant, setup.billed = opened  # under legs of its own if it reuses a Call-ID
        setup.granted_s = grant.total_s
        return not setup.finished  # CANCELled meanwhile: that ended it

    def _refuse(self, setup: Setup, status: int, reason: str) -> None:
        """Refuse a set-up before any B leg (credit control), with its CDR if billed."""
        log.info("call refused: %s", reason, extra=_fields(setup, status=status))
        setup.finished = True
        setup.final_status = status
        self._reply(setup.a_key, setup.a_invite, status, reason, setup.a_tag)
        self._end_setup(setup, "failed")

    async def _anchor_offer(self, anchor: Anchor, setup: Setup) -> bytes | None:
        """The caller's offer (RFC 3264 §5) through a relay: the SDP for the callee. None
        when the call cannot go on: the relay refused or was silent (503 to the caller:
        never a call without audio), or the caller cancelled meanwhile."""
        invite = setup.a_invite
        setup.media_lock = asyncio.Lock()
        try:
            setup.relay, sdp = await anchor.offer(
                setup.tenant.name, invite.call_id, invite.from_.tag or "", invite.body
            )
        except RelayError as err:
            log.warning("media not anchored: %s", err.reason, extra=_fields(setup))
            if not setup.finished:
                self._unavailable(setup, err.reason)
            return None
        if setup.finished:  # CANCELled while the relay answered
            self._release_setup(setup)
            return None
        return sdp

    def _unavailable(self, setup: Setup, why: str) -> None:
        setup.finished = True
        self._stop_ringing(setup)
        host = self.edge.config.advertised_host
        self.edge.respond(setup.a_key, unavailable(setup.a_invite, setup.a_tag, host, why))
        setup.final_status = 503
        self._end_setup(setup, "failed")

    def _release_setup(self, setup: Setup) -> None:
        """Delete a call that never got answered from its relay."""
        if setup.relay is not None and self.anchor is not None:
            self._spawn(self.anchor.delete(setup.relay, setup.a_invite.call_id))

    def _release(self, call: Call, disposition: Disposition | None = None) -> None:
        """What an ended call (BYE, session timer, no ACK, cut-off) held: its relay
        session, its concurrent-call slot, a trial's seconds of the day; its legs are
        settled (their CDRs, the caller's charged)."""
        if call.billed_at_ms and self.credit is not None:
            billed = Billed(
                None,
                call.billed_at_ms,
                _user(call.a.remote_uri),
                _user(call.b.remote_uri),  # the number called (after the dial plan)
                caller_leg=call.billed_leg or CALLER_LEG,
            )
            work = self.credit.settle(
                call.billing_id,
                call.a.call_id,
                billed,
                disposition or Disposition.ANSWERED,
                _ms(call.answered_at),
                self._end_ms(call, disposition),
                callee_leg=True,
            )
            self._spawn(work)
        if call.relay and self.anchor is not None:
            self._spawn(self.anchor.delete(RelayAddress.parse(call.relay), call.a.call_id))
        for trunk in call.channels:
            self._spawn(self.admission.quotas.free_slot(call.tenant, call.a.call_id, trunk=trunk))
        if call.holds_slot or call.trial:
            work = self.admission.ended(
                call.tenant,
                call.a.call_id,
                holds_slot=call.holds_slot,
                trial_answered_at=call.answered_at if call.trial else 0.0,
                now=self.edge.wall(),
            )
            self._spawn(work)

    def _is_us(self, binding: Binding) -> bool:
        return any(
            binding.source.ip == listen.host and binding.source.port == listen.port
            for listen in self.edge.config.listens
        )

    def _reply(
        self, key: TransactionKey, request: Request, status: int, reason: str, tag: str | None
    ) -> None:
        self.edge.respond(key, make_response(request, status, reason, to_tag=tag))

    # -- B-leg events during set-up ------------------------------------------------------------
    def _b_event(self, setup: Setup, fork: Fork, event: ClientEvent) -> None:
        if isinstance(event, Response):
            if event.status < 200:
                self._b_provisional(setup, fork, event)
            elif event.status < 300:
                self._b_answered(setup, fork, event)
            else:
                fork.final = event.status
                self._settled(fork, _ignore)  # Completed: only ACK retransmissions follow
                if setup.outbound is not None:
                    self._trunk_final(setup, fork, event)
                else:
                    self._maybe_fail(setup)
        else:
            fork.final = 408 if isinstance(event, TimedOut) else 503
            if setup.outbound is not None:
                self._trunk_final(setup, fork, None)
            else:
                self._maybe_fail(setup)

    def _settled(self, fork: Fork, handler: ClientHandler) -> None:
        """A fork has its final answer: from now on its INVITE transaction (which lingers
        32 s on UDP, Timers D and M) hands its events to ``handler``, which holds what
        they need, not the set-up with both parsed INVITEs."""
        if fork.key is not None:
            self.edge.rehandle(fork.key, handler)

    def _b_provisional(self, setup: Setup, fork: Fork, response: Response) -> None:
        fork.provisional = True
        if fork.cancel_pending:
            self._cancel(fork)
            return
        if response.status == 100 or setup.finished:
            return
        contact = self.contact(setup.tenant.name)
        relayed = relayed_response(setup.a_invite, response, setup.a_tag, contact)
        if setup.relay is not None and has_sdp(response):
            self._spawn(self._early_answer(setup, response, relayed))
            return
        if setup.late_offer and self._anchors(setup.tenant) and has_sdp(response):
            # An offer in an unreliable 18x is no offer (RFC 3261 §13.2.1: without 100rel
            # it is a preview at most): passed on, its SDP would bypass the relay.
            relayed.body = b""
            relayed.headers.remove("Content-Type")
        self.edge.respond(setup.a_key, relayed)

    def _anchors(self, tenant: TenantSnapshot) -> bool:
        """Whether this process anchors ``tenant``'s calls (relays configured, tenant on)."""
        return self.anchor is not None and tenant.media.anchor

    async def _early_answer(self, setup: Setup, response: Response, relayed: Response) -> None:
        """An 18x with SDP (early media, RFC 3261 §13.2.1): its answer through the relay
        first. If the relay fails, the 18x is not passed on (its SDP would bypass it)."""
        try:
            relayed.body = await self._anchor_answer(setup, response)
        except RelayError as err:
            log.warning("early media not anchored: %s", err.reason, extra=_fields(setup))
            return
        if not setup.finished:
            self.edge.respond(setup.a_key, relayed)

    async def _anchor_answer(self, setup: Setup, response: Response) -> bytes:
        """The callee's answer (RFC 3264 §6) through the relay, in the order it came."""
        assert self.anchor is not None
        assert setup.relay is not None
        assert setup.media_lock is not None
        invite = setup.a_invite
        async with setup.media_lock:
            return await self.anchor.answer(
                setup.relay,
                invite.call_id,
                invite.from_.tag or "",
                response.to.tag or "",
                response.body,
            )

    def _b_answered(self, setup: Setup, fork: Fork, response: Response) -> None:
        template = _leg_template(setup, fork)
        b_leg = _dialog_of(template, response)
        answered = Answered(setup.tenant.name, template, fork.destination)
        self._settled(fork, partial(self._b_late_2xx, answered))
        offer_in_2xx = setup.late_offer and has_sdp(response) and not setup.finished
        if offer_in_2xx:  # the ACK must carry the caller's answer: it waits for it
            answered.owed = self._owed[setup.a_invite.call_id] = OwedAck(b_leg.remote_tag)
        else:
            ack = self._send_ack(b_leg, template.local_cseq, answered.tenant)
            answered.acks[b_leg.remote_tag] = ack
        if setup.finished or fork.abandoned:
            # A second fork answered too late (§13.2.2.4), or a trunk given up for not
            # answering answered anyway, its 200 crossing our CANCEL (§9.1): the caller
            # is another's now and the trunk's channel was given back, so hang it up.
            self._send_bye(b_leg, setup.tenant.name)
            return
        setup.answered = setup.finished = True
        fork.final = response.status
        self._stop_ringing(setup)
        for other in setup.forks:
            if other is not fork and other.final is None:
                self._cancel(other)
        contact = self.contact(setup.tenant.name)
        answer = relayed_response(setup.a_invite, response, setup.a_tag, contact)
        now = self.edge.wall()
        admitted = setup.admitted
        call = _with_session_timer(
            Call(
                setup.tenant.name,
                self._a_leg(setup),
                b_leg,
                now,
                holds_slot=admitted.holds_slot,
                cutoff_at=now + admitted.limit_s if admitted.limit_s else 0.0,
                trial=setup.tenant.billing.trial,
                billed_at_ms=setup.billed.setup_ms if setup.billed is not None else 0,
                billed_leg=_billed_leg(setup.billed),
                channels=tuple(setup.channels),
                account=setup.tenant.uid,
            ),
            response,
            now,
        )
        if setup.relay is not None:
            call = replace(call, relay=str(setup.relay))
        if offer_in_2xx:
            call = replace(call, awaiting_ack=b_leg.call_id)
        self._end_setup(setup, "answered")
        log.info("call answered", extra=_fields(setup, status=response.status))
        self._spawn(self._store_and_answer(setup, call, answer, response))

    async def _store_and_answer(
        self, setup: Setup, call: Call, answer: Response, response: Response
    ) -> None:
        """Store the call, then pass the 2xx on: the caller's BYE or re-INVITE may reach
        any edge process the moment it has the 2xx, so the dialog must be there first.
        An anchored call's answer goes through the relay before anything else: if the
        relay fails, the call is hung up rather than connected without audio."""
        if setup.relay is not None and has_sdp(response):
            try:
                answer.body = await self._anchor_answer(setup, response)
            except RelayError as err:
                log.warning("answer not anchored, hanging up: %s", err.reason, extra=_fields(setup))
                self._send_bye(call.b, call.tenant)
                self._release_setup(setup)
                self._unavailable(setup, err.reason)
                return
        elif call.awaiting_ack and self.anchor is not None and setup.tenant.media.anchor:
            # A late offer: the callee's 2xx offers, so the relay session starts here,
            # with the callee's tag as the offerer's.
            try:
                relay, answer.body = await self.anchor.offer(
                    call.tenant, call.a.call_id, call.b.remote_tag, response.body
                )
            except RelayError as err:
                log.warning(
                    "late offer not anchored, hanging up: %s", err.reason, extra=_fields(setup)
                )
                self._settle_owed_ack(call)
                self._send_bye(call.b, call.tenant)
                self._unavailable(setup, err.reason)
                return
            setup.relay = relay
            call = replace(call, relay=str(relay))
        billed = setup.billed
        if billed is not None:
            call, until = await self._answered_credit(setup, call, billed)
        try:
            await self.dialogs.put(call, self.edge.wall())
        except Exception:
            log.exception("could not store the call: hanging up", extra=_fields(setup))
            self._settle_owed_ack(call)
            self._send_bye(call.b, call.tenant)
            self._release_setup(setup)
            self._setup_over(setup)
            self._reply(setup.a_key, setup.a_invite, 500, "Server Internal Error", setup.a_tag)
            return
        self.edge.respond(setup.a_key, answer)
        self._retransmit_2xx(call, answer)
        self._arm_session_timer(call)
        self._arm_cutoff(call)
        if billed is not None and billed.rate is not None:
            self._arm_extension(call, billed.rate, until, capped=billed.capped)
        if setup.admitted.holds_slot:
            work = self.admission.answered(
                call.tenant, call.a.call_id, setup.admitted, call.answered_at
            )
            self._spawn(work)
        for trunk in call.channels:  # held while the call lasts
            until = call.answered_at + DIALOG_TTL_S
            self._spawn(
                self.admission.quotas.renew_slot(call.tenant, call.a.call_id, until, trunk=trunk)
            )

    async def _answered_credit(
        self, setup: Setup, call: Call, billed: Billed
    ) -> tuple[Call, float]:
        """Report the answer and take the next slice; returns the call and when its
        granted time runs out. A prepaid rated call's credit cut-off (or the trial's, if
        sooner) is that moment; other calls keep the cut-off admission gave them."""
        assert self.credit is not None
        assert billed.rate is not None
        answered_ms = _ms(call.answered_at)
        total_s = await self.credit.extend(
            call.billing_id,
            call.a.call_id,
            billed.rate,
            answered_ms,
            answered_ms,
            caller_leg=billed.caller_leg,
        )
        until = call.answered_at + (total_s if total_s is not None else setup.granted_s)
        if not billed.capped:
            return call, until
        cutoff = min(until, call.cutoff_at) if call.cutoff_at else until
        return replace(call, cutoff_at=cutoff), until

    def _arm_extension(self, call: Call, rate: Rate, until: float, *, capped: bool) -> None:
        """Ask for the next slice a little before the granted time runs out
        (:mod:`.credit`): for a prepaid call, more money; for any other, the store's
        record that the call still runs (a dead edge's call is closed near its end)."""
        assert self.credit is not None
        delay_s = max(0.0, until - self.credit.lead_s - self.edge.wall())
        work = partial(self._extend, call.tenant, call.a.call_id, rate, capped=capped)
        asyncio.get_running_loop().call_later(delay_s, lambda: self._spawn(work()))

    async def _extend(self, tenant: str, call_id: str, rate: Rate, *, capped: bool) -> None:
        call = await self.dialogs.get(tenant, call_id)
        if call is None or self.credit is None:
            return  # ended meanwhile
        now = self.edge.wall()
        answered_ms = _ms(call.answered_at)
        total_s = await self.credit.extend(
            call.billing_id,
            call_id,
            rate,
            answered_ms,
            _ms(now),
            caller_leg=call.billed_leg or CALLER_LEG,
        )
        if total_s is None:
            return  # prepaid: no more money, the cut-off stands
        until = call.answered_at + total_s
        if capped:
            if until <= call.cutoff_at:
                return
            call = replace(call, cutoff_at=until)
            await self.dialogs.put(call, now)
        self._arm_extension(call, rate, until, capped=capped)

    def _settle_owed_ack(self, call: Call) -> None:
        """A late-offer call ended before the answer came: ACK the B leg's 2xx anyway
        (without an answer: its BYE follows), so it stops resending it."""
        if call.awaiting_ack:
            self._owed.pop(call.a.call_id, None)
            self._send_ack(call.b, call.b.local_cseq, call.tenant)

    def _a_leg(self, setup: Setup) -> Leg:
        invite = setup.a_invite
        contact = invite.contacts
        target = (
            str(contact[0].uri) if isinstance(contact, tuple) and contact else str(invite.from_.uri)
        )
        return Leg(
            call_id=invite.call_id,
            local_tag=setup.a_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=str(invite.to.uri),
            remote_uri=str(invite.from_.uri),
            remote_target=target,
            route_set=tuple(str(r) for r in invite.record_routes),
            local_cseq=0,
            remote_cseq=invite.cseq.number,
            transport=setup.a_source.transport,
            host=setup.a_source.host,
            port=setup.a_source.port,
            trunk=setup.a_trunk,
        )

    def _b_late_2xx(self, answered: Answered, event: ClientEvent) -> None:
        """An answered fork's INVITE after its first 2xx: only 2xx reach the TU (Accepted
        state), each either a retransmission or another dialog forked downstream."""
        if not isinstance(event, Response) or not 200 <= event.status < 300:
            return
        tag = event.to.tag or ""
        ack = answered.acks.get(tag)
        owed = answered.owed
        if ack is None and owed is not None and owed.key == tag:
            ack = owed.ack
            if ack is None:
                return  # the caller's ACK with the answer is not here yet
        if ack is not None:  # a retransmitted 2xx: our ACK was lost or late (§13.2.2.4)
            self.edge.send_stateless(ack, answered.destination)  # the same bytes again
            return
        # Another dialog of the same INVITE: ACK it, then BYE it (§13.2.2.4).
        b_leg = _dialog_of(answered.template, event)
        answered.acks[tag] = self._send_ack(b_leg, b_leg.local_cseq, answered.tenant)
        self._send_bye(b_leg, answered.tenant)

    def _maybe_fail(self, setup: Setup) -> None:
        if setup.finished or any(fork.final is None for fork in setup.forks):
            return
        finals = [fork.final for fork in setup.forks if fork.final is not None]
        self._fail(setup, _preferred_failure(finals))

    def _fail(self, setup: Setup, status: int) -> None:
        log.info("call failed", extra=_fields(setup, status=status))
        setup.finished = True
        self._stop_ringing(setup)
        setup.final_status = status
        reasons = {
            486: "Busy Here",
            480: "Temporarily Unavailable",
            487: "Request Terminated",
            603: "Decline",
            600: "Busy Everywhere",
            404: "Not Found",
            403: "Forbidden",
            488: "Not Acceptable Here",
            503: "Service Unavailable",
        }
        self._reply(
            setup.a_key, setup.a_invite, status, reasons.get(status, "Call Failed"), setup.a_tag
        )
        self._release_setup(setup)
        self._end_setup(setup, "failed" if status != 487 else "cancelled")

    def _ring_timeout(self, setup: Setup) -> None:
        setup.ring_timer = None
        if setup.finished:
            return
        for fork in setup.forks:
            if fork.final is None:
                self._cancel(fork)
        self._fail(setup, 480)

    def _stop_ringing(self, setup: Setup) -> None:
        if setup.ring_timer is not None:
            setup.ring_timer.cancel()
            setup.ring_timer = None
        if setup.outbound is not None:
            self._stop_no_answer(setup.outbound)

    def _end_setup(self, setup: Setup, outcome: str) -> None:
        if self._setups.pop(setup.a_key, None) is not None:
            self.edge.metrics.calls.labels(setup.tenant.name, outcome).inc()
        if outcome != "answered":
            self._setup_over(setup)

    def _setup_over(self, setup: Setup) -> None:
        """A call that never got established frees its concurrent-call slot and gets its
        CDRs (nothing charged): the callee's leg too when it was tried."""
        if setup.billed is not None and self.credit is not None:
            end_ms = _ms(self.edge.wall())
            work = self.credit.settle(
                setup.tenant.billing_id,
                setup.a_invite.call_id,
                setup.billed,
                _disposition(setup.final_status),
                None,
                end_ms,
                callee_leg=bool(setup.forks),
            )
            self._spawn(work)
        if setup.admitted.holds_slot:
            work = self.admission.ended(
                setup.tenant.name, setup.a_invite.call_id, holds_slot=True, now=self.edge.wall()
            )
            self._spawn(work)
        for trunk in list(setup.channels):
            self._free_channel(setup, trunk)

    def _cancel(self, fork: Fork) -> None:
        """CANCEL a pending fork; before any provisional, wait for one (§9.1)."""
        if fork.final is not None or fork.cancelled:
            return  # answered, or CANCELled already (a trunk that did not answer in time)
        if not fork.provisional:
            fork.cancel_pending = True
            return
        fork.cancel_pending = False
        fork.cancelled = True
        self.edge.request(cancel_for(fork.invite), fork.destination, lambda event: None)

    # -- CANCEL and ACK from the caller ---------------------------------------------------------
    def on_cancel(self, event: CancelReceived) -> None:
        cancel = event.request
        if event.target is None:
            self._reply(event.key, cancel, 481, "Call/Transaction Does Not Exist", self.new_tag())
            return
        self._reply(event.key, cancel, 200, "OK", self.new_tag())
        setup = self._setups.get(event.target)
        if setup is None or setup.finished:
            return
        for fork in setup.forks:
            self._cancel(fork)
        self._fail(setup, 487)

    def on_ack(self, ack: Request) -> None:
        """An ACK for our 2xx: absorbed (the other leg was ACKed on its own 2xx) unless
        the 2xx carried an offer, whose answer this ACK brings; no I/O unless so, so it
        runs at once rather than as a task of its own."""
        timer = self._retransmits.pop(ack.call_id, None)
        if timer is not None:
            timer.cancel()
        if ack.call_id in self._owed or has_sdp(ack):
            self._spawn(self._answer_in_ack(ack))

    async def _answer_in_ack(self, ack: Request) -> None:
        """The answer to a late offer (RFC 3261 §13.2.1, RFC 3264 §4): through the relay,
        then in the ACK we owe the side whose 2xx offered. Any edge process may get the
        ACK (the dialog store says what is owed); the one that sent the 2xx also keeps
        our ACK, to answer the 2xx's retransmissions. An ACK without the answer, or an
        answer the relay refuses, ends the call: there is no session to have."""
        owed = self._owed.pop(ack.call_id, None)
        tenant = ack.uri.user if isinstance(ack.uri, SipUri) else None
        call = await self.dialogs.get(tenant, ack.call_id) if tenant else None
        legs = call.leg_of(ack.call_id) if call is not None else None
        if call is None or legs is None or call.awaiting_ack != legs[1].call_id:
            return  # an ACK with SDP where no answer was due, or a repeated one
        other = legs[1]
        call = replace(call, awaiting_ack="")
        await self.dialogs.put(call, self.edge.wall())
        answer = ack.body if has_sdp(ack) else b""
        if answer and call.relay and self.anchor is not None:
            try:
                answer = await self.anchor.reanswer(call, other.call_id, answer)
            except RelayError as err:
                log.warning("answer in ACK not anchored call-id=%s: %s", ack.call_id, err.reason)
                answer = b""
        forwarded = ack_for_2xx(
            other, other.local_cseq, self.identity(call.tenant, other.transport)
        )
        if answer:
            forwarded.headers.add("Content-Type", "application/sdp")
            forwarded.body = answer
        self.edge.send_stateless(forwarded, Peer(other.transport, other.host, other.port))
        if owed is not None:
            owed.ack = forwarded
        if not answer:
            log.info("no answer to the offer in the 2xx call-id=%s: hanging up", ack.call_id)
            await self._hang_up(call)

    # -- answered calls ----------------------------------------------------------------------------
    @staticmethod
    def _spawn(work: Coroutine[Any, Any, object]) -> None:
        asyncio.create_task(work).add_done_callback(_log_failure)

    def _arm_session_timer(self, call: Call) -> None:
        """RFC 4028 §10: without a refresh by the deadline, end the call on both legs."""
        if not call.session_interval_s:
            return
        delay_s = max(0.0, call.session_expires_at - self.edge.wall())
        asyncio.get_running_loop().call_later(
            delay_s, lambda: self._spawn(self._session_expired(call.tenant, call.a.call_id))
        )

    def _end_ms(self, call: Call, disposition: Disposition | None) -> int:
        """When a call ended, for its CDR: a cut-off call ended at its limit (the
        milliseconds the BYE took to leave do not start another increment)."""
        now_ms = _ms(self.edge.wall())
        if disposition is Disposition.CUT_OFF and call.cutoff_at:
            limit_ms = _ms(call.answered_at) + _ms(call.cutoff_at - call.answered_at)
            return min(now_ms, limit_ms)
        return now_ms

    def _arm_cutoff(self, call: Call) -> None:
        """A call with a limit (a trial's per-call minute) is ended on both legs then."""
        if not call.cutoff_at:
            return
        delay_s = max(0.0, call.cutoff_at - self.edge.wall())
        asyncio.get_running_loop().call_later(
            delay_s, lambda: self._spawn(self._cut_off(call.tenant, call.a.call_id))
        )

    async def _cut_off(self, tenant: str, call_id: str) -> None:
        call = await self.dialogs.get(tenant, call_id)
        while call is not None and (early_s := call.cutoff_at - self.edge.wall()) > 0:
            if early_s > 0.05:
                self._arm_cutoff(call)  # extended meanwhile (more credit)
                return
            # The timer ran a little early (the loop's clock resolution, or the wall
            # clock against the loop's): the caller paid until the limit, so wait it out.
            await asyncio.sleep(early_s + 0.001)
            call = await self.dialogs.get(tenant, call_id)
        if call is None:
            return  # ended before its limit
        log.info("call cut off at its limit call-id=%s", call_id)
        await self._hang_up(call, Disposition.CUT_OFF if call.billed_at_ms else None)

    async def _session_expired(self, tenant: str, call_id: str) -> None:
        call = await self.dialogs.get(tenant, call_id)
        if call is None:
            return
        if call.session_expires_at > self.edge.wall():
            self._arm_session_timer(call)  # refreshed meanwhile, maybe via another edge
            return
        log.info("session timer expired call-id=%s: hanging up", call_id)
        await self._hang_up(call)

    def _retransmit_2xx(self, call: Call, answer: Response, interval_s: float = 0.5) -> None:
        """Resend our 2xx to the caller until its ACK comes (§13.3.1.4), at most 64·T1."""
        destination = Peer(call.a.transport, call.a.host, call.a.port)
        if destination.reliable:
            return
        t1, t2 = self.edge.config.timers.t1_s, self.edge.config.timers.t2_s
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 64 * t1

        def again(interval: float) -> None:
            if loop.time() >= give_up:
                self._retransmits.pop(call.a.call_id, None)
                log.info("no ACK for 2xx call-id=%s: hanging up", call.a.call_id)
                self._spawn(self._hang_up(call))
                return
            self.edge.send_stateless(answer, destination)
            next_interval = min(2 * interval, t2)
            self._retransmits[call.a.call_id] = loop.call_later(next_interval, again, next_interval)

        self._retransmits[call.a.call_id] = loop.call_later(t1, again, t1)

    def _send_ack(self, leg: Leg, cseq: int, tenant: str) -> Request:
        ack = ack_for_2xx(leg, cseq, self.identity(tenant, leg.transport))
        self.edge.send_stateless(ack, Peer(leg.transport, leg.host, leg.port))
        return ack

    def _send_bye(self, leg: Leg, tenant: str) -> None:
        leg = leg.next_cseq()
        bye = in_dialog_request("BYE", leg, leg.local_cseq, self.identity(tenant, leg.transport))
        peer = Peer(leg.transport, leg.host, leg.port)
        handler = partial(self._bye_challenged, tenant, leg, bye, peer) if leg.trunk else _ignore
        self.edge.request(bye, peer, handler)

    def _bye_challenged(
        self, tenant: str, leg: Leg, bye: Request, peer: Peer, event: ClientEvent
    ) -> None:
        """A provider that challenges our BYE (some do) gets it once more, answered."""
        if isinstance(event, Response) and event.status in (401, 407):
            again = self._authorized(tenant, leg.trunk, bye, event, peer.transport)
            if again is not None:
                self.edge.request(again, peer, _ignore)

    def _trunk_codecs(self, tenant: str, trunk_name: str, sdp: bytes) -> bytes:
        """A new offer into a trunk's dialog keeps to the trunk's codecs, as the first did."""
        snapshot = self.tenants.by_name(tenant) if self.tenants is not None else None
        trunk = snapshot.trunk(trunk_name) if snapshot is not None else None
        return only_codecs(sdp, trunk.codecs) if trunk is not None and trunk.codecs else sdp

    def _authorized(
        self, tenant: str, trunk_name: str, request: Request, challenge: Response, transport: str
    ) -> Request | None:
        """``request`` again with the trunk's credentials for ``challenge``; None when
        the tenant or its trunk is gone, or the challenge is none we answer."""
        snapshot = self.tenants.by_name(tenant) if self.tenants is not None else None
        trunk = snapshot.trunk(trunk_name) if snapshot is not None else None
        if snapshot is None or trunk is None:
            return None
        return with_credentials(
            request,
            challenge,
            username=trunk.auth_username,
            password=snapshot.trunk_password(trunk.name),
            cnonce=secrets.token_hex(8),
            via=self.edge.via_for(transport),
        )

    def _media_timeout(self, tenant: str, call_id: str) -> None:
        """The relay ended a call that carried no media for its idle timeout (a phone
        gone without a BYE): end both legs, which ends the bill too."""
        self._spawn(self._end_silent_call(tenant, call_id))

    async def _end_silent_call(self, tenant: str, call_id: str) -> None:
        call = await self.dialogs.get(tenant, call_id)
        if call is None:
            return  # ended meanwhile, or never answered (set-up has its ring timeout)
        log.info("media timeout on the relay call-id=%s: hanging up", call_id)
        await self._hang_up(call)

    async def end_recovered(self, tenant: str, call_id: str) -> bool:
        """End a call whose caller's leg recovery just settled (its edge died without
        ending it): BYE on both legs, its relay session and slot released; its CDRs
        stand. False when no such call runs (it was not answered, or has ended)."""
        call = await self.dialogs.get(tenant, call_id)
        if call is None:
            return False
        log.info("ending a call whose edge stopped call-id=%s", call_id)
        await self._hang_up(call, Disposition.RECOVERED)
        return True

    async def end_tenant_calls(self, tenant: str) -> int:
        """End every call of ``tenant`` (it was disabled or deleted): BYE on both legs,
        settled as usual. Any edge process may do it; each call ends once."""
        calls = await self.dialogs.calls(tenant)
        for call in calls:
            await self._hang_up(call)
        return len(calls)

    async def _hang_up(self, call: Call, disposition: Disposition | None = None) -> None:
        """End both legs (no ACK came, a session timer ran out, the tenant went away,
        the call's credit or trial limit ran out)."""
        self._owed.pop(call.a.call_id, None)
        self._owed.pop(call.b.call_id, None)
        if await self.dialogs.delete(call):
            self._send_bye(call.a, call.tenant)
            self._send_bye(call.b, call.tenant)
            self._release(call, disposition)
            self.edge.metrics.calls.labels(call.tenant, "ended").inc()

    # -- in-dialog requests ----------------------------------------------------------------------
    async def in_dialog(self, request: Request, key: TransactionKey, inbound: Inbound) -> None:
        tenant = request.uri.user if isinstance(request.uri, SipUri) else None
        if tenant and request.method == "BYE":
            await self._bye(tenant, request, key)
            return
        call = await self.dialogs.get(tenant, request.call_id) if tenant else None
        legs = call.leg_of(request.call_id) if call is not None else None
        if call is None or legs is None:
            self._reply(key, request, 481, "Call/Transaction Does Not Exist", None)
            return
        this, other = legs
        if request.cseq.number <= this.remote_cseq and request.method != "ACK":
            self._reply(key, request, 500, "Server Internal Error: CSeq out of order", None)
            return
        call = call.with_leg(_replace_remote_cseq(this, request.cseq.number))
        other = other.next_cseq()
        call = call.with_leg(other)
        await self.dialogs.put(call, self.edge.wall())
        forwarded = in_dialog_request(
            request.method, other, other.local_cseq, self.identity(call.tenant, other.transport)
        )
        copy_end_to_end(request, forwarded)
        offers = call.relay and request.method in _OFFERS and has_sdp(request)
        if offers and not await self._reoffer(call, request, key, forwarded):
            return
        if other.trunk and request.method in _OFFERS and has_sdp(forwarded):
            forwarded.body = self._trunk_codecs(call.tenant, other.trunk, forwarded.body)
        # A re-INVITE without SDP asks the other side for an offer, in its 2xx.
        late = (
            OwedAck(other.call_id) if request.method == "INVITE" and not has_sdp(request) else None
        )
        self.edge.request(
            forwarded,
            Peer(other.transport, other.host, other.port),
            lambda event: self._relay_back(call, request, key, other, event, late, forwarded),
        )

    async def _bye(self, tenant: str, request: Request, key: TransactionKey) -> None:
        """End the call (RFC 3261 §15.1.2) and BYE its other leg. The call is taken from
        the store in one step, so of two BYEs (one from each side, or one reaching two
        processes) exactly one ends it; the other finds no dialog (481)."""
        call = await self.dialogs.take(tenant, request.call_id)
        legs = call.leg_of(request.call_id) if call is not None else None
        if call is None or legs is None:
            self._reply(key, request, 481, "Call/Transaction Does Not Exist", None)
            return
        this, other = legs
        if request.cseq.number <= this.remote_cseq:
            await self.dialogs.put(call, self.edge.wall())  # not a BYE to act on: keep it
            self._reply(key, request, 500, "Server Internal Error: CSeq out of order", None)
            return
        self._reply(key, request, 200, "OK", None)
        log.debug(
            "call ended by BYE",
            extra={"call_id": request.call_id, "tenant": tenant, "other_call_id": other.call_id},
        )
        self._send_bye(other, tenant)
        self._release(call)
        self.edge.metrics.calls.labels(tenant, "ended").inc()

    async def _reoffer(
        self, call: Call, request: Request, key: TransactionKey, forwarded: Request
    ) -> bool:
        """A re-INVITE's or UPDATE's offer (RFC 3264 §8: hold, resume, a new codec) through
        the call's relay, from-tag the sender's; False (503 sent) if the relay failed."""
        if self.anchor is None:
            return True  # anchored by an edge with relays; this one has none: pass it on
        try:
            forwarded.body = await self.anchor.reoffer(call, request.call_id, request.body)
        except RelayError as err:
            log.warning("re-offer not anchored call-id=%s: %s", request.call_id, err.reason)
            host = self.edge.config.advertised_host
            self.edge.respond(key, unavailable(request, request.to.tag, host, err.reason))
            return False
        return True

    async def _reanswer(
        self, call: Call, request: Request, key: TransactionKey, relayed: Response
    ) -> None:
        """The answer to an in-dialog offer through the relay, then on to the offerer."""
        assert self.anchor is not None
        try:
            relayed.body = await self.anchor.reanswer(call, request.call_id, relayed.body)
        except RelayError as err:
            log.warning("re-answer not anchored call-id=%s: %s", request.call_id, err.reason)
            host = self.edge.config.advertised_host
            relayed = unavailable(request, request.to.tag, host, err.reason)
        self.edge.respond(key, relayed)

    async def _late_reoffer(
        self, call: Call, request: Request, key: TransactionKey, relayed: Response, late: OwedAck
    ) -> None:
        """The other side's offer in the 2xx to a re-INVITE without SDP: stored as owing
        an ACK (:meth:`_answer_in_ack` sends it with the answer), through the relay when
        the call is anchored, then on to the re-INVITE's sender."""
        call = replace(call, awaiting_ack=late.key)
        self._owed[request.call_id] = late
        await self.dialogs.put(call, self.edge.wall())
        if call.relay and self.anchor is not None:
            try:
                relayed.body = await self.anchor.reoffer(call, late.key, relayed.body)
            except RelayError as err:
                log.warning(
                    "late re-offer not anchored call-id=%s: %s", request.call_id, err.reason
                )
                self._owed.pop(request.call_id, None)
                await self.dialogs.put(replace(call, awaiting_ack=""), self.edge.wall())
                legs = call.leg_of(late.key)
                assert legs is not None
                offerer = legs[0]
                late.ack = self._send_ack(offerer, offerer.local_cseq, call.tenant)
                host = self.edge.config.advertised_host
                self.edge.respond(key, unavailable(request, request.to.tag, host, err.reason))
                return
        self.edge.respond(key, relayed)

    def _reauthorize(
        self,
        call: Call,
        request: Request,
        key: TransactionKey,
        other: Leg,
        challenge: Response,
        late: OwedAck | None,
        forwarded: Request,
    ) -> bool:
        """A request passed into a trunk's dialog that its provider challenged: sent once
        more with the trunk's credentials and the next CSeq (stored, for the requests that
        follow); its answer goes back as usual. False when it cannot be answered."""
        again = self._authorized(call.tenant, other.trunk, forwarded, challenge, other.transport)
        if again is None:
            return False
        other = other.next_cseq()
        call = call.with_leg(other)
        self._spawn(self.dialogs.put(call, self.edge.wall()))
        self.edge.request(
            again,
            Peer(other.transport, other.host, other.port),
            lambda event: self._relay_back(call, request, key, other, event, late),
        )
        return True

    def _relay_back(
        self,
        call: Call,
        request: Request,
        key: TransactionKey,
        other: Leg,
        event: ClientEvent,
        late: OwedAck | None = None,
        forwarded: Request | None = None,
    ) -> None:
        challenged = isinstance(event, Response) and event.status in (401, 407)
        if challenged and other.trunk and forwarded is not None:
            assert isinstance(event, Response)
            if self._reauthorize(call, request, key, other, event, late, forwarded):
                return
        if not isinstance(event, Response):
            self._reply(
                key,
                request,
                408 if isinstance(event, TimedOut) else 503,
                "Request Timeout" if isinstance(event, TimedOut) else "Service Unavailable",
                None,
            )
            return
        if event.status == 100:
            return
        offer_in_2xx = False
        if request.method == "INVITE" and 200 <= event.status < 300:
            if late is not None and has_sdp(event):
                if late.passed_on:  # a retransmission: our ACK again, once we have it
                    if late.ack is not None:
                        self.edge.send_stateless(
                            late.ack, Peer(other.transport, other.host, other.port)
                        )
                    return
                late.passed_on = offer_in_2xx = True
            else:
                self._send_ack(other, other.local_cseq, call.tenant)
        if request.method in ("INVITE", "UPDATE") and 200 <= event.status < 300:
            call = _with_session_timer(call, event, self.edge.wall())
            if not offer_in_2xx:  # else stored with the ACK it owes, just below
                self._spawn(self.dialogs.put(call, self.edge.wall()))
            self._arm_session_timer(call)
        contact = self.contact(call.tenant)
        relayed = relayed_response(request, event, request.to.tag or "", contact)
        if offer_in_2xx:
            assert late is not None
            self._spawn(self._late_reoffer(call, request, key, relayed, late))
        elif (
            call.relay
            and self.anchor is not None
            and request.method in _OFFERS
            and has_sdp(event)
            and has_sdp(request)
        ):
            self._spawn(self._reanswer(call, request, key, relayed))
        else:
            self.edge.respond(key, relayed)


def _hung_up(setup: Setup) -> bool:
    """Whether the set-up ended while we awaited something (a CANCEL came)."""
    return setup.finished


def _preferred_failure(statuses: list[int]) -> int:
    """The final status a caller gets of several failures (§16.7 step 6)."""
    if not statuses:
        return 503
    status = next((s for s in _FAILURE_PREFERENCE if s in statuses), min(statuses))
    return 480 if status in (408, 487) else status


def _leg_template(setup: Setup, fork: Fork) -> Leg:
    """The B leg as we started it: everything but what the callee's 2xx settles."""
    return Leg(
        call_id=setup.b_call_id,
        local_tag=setup.b_from_tag,
        remote_tag="",
        local_uri=setup.b_local_uri,
        remote_uri=setup.b_remote_uri,
        remote_target=fork.invite.uri_text,
        route_set=(),
        local_cseq=fork.invite.cseq.number,
        remote_cseq=0,
        transport=fork.destination.transport,
        host=fork.destination.host,
        port=fork.destination.port,
        trunk=trunk.name if setup.outbound and (trunk := setup.outbound.trunk) else "",
    )


def _dialog_of(template: Leg, response: Response) -> Leg:
    """The B-leg dialog a 2xx made (§12.1.2): its To tag, Contact and Record-Route."""
    contact = response.contacts
    target = (
        str(contact[0].uri) if isinstance(contact, tuple) and contact else template.remote_target
    )
    return replace(
        template,
        remote_tag=response.to.tag or "",
        remote_target=target,
        route_set=tuple(str(r) for r in reversed(response.record_routes)),
    )


def _ignore(event: ClientEvent) -> None:
    """A settled fork's handler when nothing that can still come matters."""


def _replace_remote_cseq(leg: Leg, cseq: int) -> Leg:
    return replace(leg, remote_cseq=cseq)


def _with_session_timer(call: Call, response: Response, now: float) -> Call:
    """RFC 4028: remember the negotiated interval so a missed refresh can end the call."""
    value = response.headers.get("Session-Expires")
    if value is None:
        return call
    try:
        interval = int(value.split(";")[0].strip())
    except ValueError:
        return call
    return replace(call, session_interval_s=interval, session_expires_at=now + interval)


def _disposition(status: int) -> Disposition:
    """How a call that never connected ended, by the final status its caller got."""
    if status in (486, 600):
        return Disposition.BUSY
    if status in (402, 403):
        return Disposition.REFUSED
    if status in (0, 408, 480, 487, 603):
        return Disposition.NO_ANSWER  # 0: the caller hung up (CANCEL) before an answer
    return Disposition.FAILED


def _billed_leg(billed: Billed | None) -> str:
    """The caller's leg a call records under, as its stored form keeps it (empty: the
    usual :data:`~sipedge.calls.credit.CALLER_LEG`)."""
    if billed is None or billed.caller_leg == CALLER_LEG:
        return ""
    return billed.caller_leg


def _ms(seconds: float) -> int:
    """Epoch (or a span of) seconds as the billing store's whole milliseconds, rounded
    alike everywhere so that a call cut at 3 s lasts 3,000 ms, not 3,001."""
    return round(seconds * 1000)


def _user(uri: str) -> str:
    """The user part of a SIP URI (``sip:2001@acme.pbx.test`` → ``2001``), for CDRs."""
    return uri.partition(":")[2].partition("@")[0]


def _fields(setup: Setup, **more: object) -> dict[str, object]:
    """What every call log line carries: both legs' Call-IDs and the tenant."""
    return {
        "call_id": setup.a_invite.call_id,
        "b_call_id": setup.b_call_id,
        "tenant": setup.tenant.name,
        **more,
    }


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call task failed", exc_info=task.exception())
