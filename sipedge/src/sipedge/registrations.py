"""The trunk registrations of one edge process (issue 6.2): the asyncio driver of
:mod:`sipedge.trunking`'s state machine, one per trunk, under a lease.

Every trunk with ``register`` of every enabled tenant has a lease (:mod:`sipedge.leases`):
of all edge processes, the one holding it registers the trunk, and renews the lease well
within its TTL (a third of it by default). A process that fails to get the lease leaves
the trunk alone; one that loses it stops registering without unregistering (the new
holder registers), and one that dies stops renewing, so another takes over once the
lease lapses. A Redis error while renewing changes nothing: it is logged and tried again
at the next renewal.

While held, a trunk's REGISTERs (RFC 3261 §10.2) go to its outbound proxy if it has one,
else to its host and port, over its transport; a host name is resolved (IPv4) before
each one. They keep one Call-ID and From tag for the whole registration (§10.2.4), take
CSeq, Expires and credentials from the machine, and bind the Contact
:func:`sipedge.trunking.contact_user` names, at our advertised address. Provisional
responses are ignored; a final one, a timeout or a transport failure goes to the
machine, and its waits are kept with a timer. A provider with several servers (SRV)
keeps the registration on the one it is bound at; one that fails a REGISTER (a 503, no
answer, no connection) gives way to the next at once, so the trunk is Failed only when
every server failed (RFC 3263 §4.3).

A trunk that goes away (removed, its tenant disabled, ``register`` off) is unregistered
(Expires 0) if it was registered, and its lease released. A trunk whose settings or
password changed is retired so, then registered afresh. A graceful stop releases every
lease without unregistering, so another edge takes the trunks over at once.

What the registrations look like (:class:`contracts.trunk_status.TrunkStatus`) is
written by the holder to a :class:`StatusBoard` on every change and every renewal (Redis:
``contracts.keys.trunk_status_key``, with a TTL so a dead holder's status lapses), and
shown in the metrics (``sip_trunk_registration_state``, on the holder only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from contracts.snapshot import TenantSnapshot
from contracts.trunk import Trunk
from contracts.trunk_status import TrunkStatus
from sipedge.adapters.dns import locate
from sipedge.edge import ClientEvent, ClientHandler
from sipedge.leases import Leases
from sipedge.metrics import Metrics
from sipedge.sip.message import Request, Response
from sipedge.sip.transaction import ClientKey, Peer, TimedOut
from sipedge.trunking import (
    BACKOFF_BASE_S,
    Hop,
    Register,
    Registration,
    State,
    Status,
    Wait,
    account,
    contact_user,
    next_hop,
    register_request,
    server_failed,
    wanted_trunks,
)

log = logging.getLogger("sipedge.registrations")

#: The published status lives this many renew intervals: a dead holder's lapses soon.
STATUS_TTL_RENEWALS = 3
#: What a shared store (Redis) raises when it cannot answer: logged, tried again later.
STORE_ERRORS = (RedisError, OSError)

TrunkKey = tuple[str, str]
#: (host, port) → an IPv4 address; raises OSError when the name does not resolve.
Resolve = Callable[[Hop], Awaitable[list[tuple[str, int]]]]
Sleep = Callable[[float], Awaitable[None]]


def holder_id() -> str:
    """This process among all edges: its host name and pid (stable while it runs)."""
    return f"{socket.gethostname()}/{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    lease_ttl_s: float = 30.0
    #: None: a third of the TTL.
    renew_s: float | None = None
    backoff_base_s: float = BACKOFF_BASE_S

    @property
    def renew_every_s(self) -> float:
        return self.renew_s if self.renew_s is not None else self.lease_ttl_s / 3

    @property
    def status_ttl_s(self) -> float:
        return STATUS_TTL_RENEWALS * self.renew_every_s


@dataclass(frozen=True, slots=True)
class Standing:
    """A trunk as this process sees it: its registration's status if this process holds
    it (else None), and the lease's holder as last seen (None: unknown or nobody)."""

    status: Status | None
    holder: str | None


class StatusBoard(Protocol):
    """Where holders publish their trunks' statuses (Redis, or this process's memory)."""

    async def publish(self, tenant: str, trunk: str, status: TrunkStatus, ttl_s: float) -> None:
        """Show ``status`` for ``ttl_s`` (each renewal publishes again)."""
        ...

    async def read(self, tenant: str, trunk: str) -> TrunkStatus | None: ...


class MemoryStatusBoard:
    """The statuses in this process's memory (``cloudpbx dev``: one edge, no Redis)."""

    def __init__(self) -> None:
        self.statuses: dict[TrunkKey, TrunkStatus] = {}

    async def publish(self, tenant: str, trunk: str, status: TrunkStatus, ttl_s: float) -> None:
        self.statuses[tenant, trunk] = status

    async def read(self, tenant: str, trunk: str) -> TrunkStatus | None:
        return self.statuses.get((tenant, trunk))


class Sender(Protocol):
    """What of :class:`sipedge.edge.Edge` a registration uses."""

    def request(self, request: Request, destination: Peer, handler: ClientHandler) -> ClientKey: ...

    def via_for(self, transport: str = "UDP") -> str: ...

    def contact(self, user: str, transport: str = "UDP") -> str: ...

    async def connect(self, destination: Peer) -> None: ...

    def wall(self) -> float:
        """Wall-clock seconds (what the published status says)."""
        ...


async def locate_all(hop: Hop) -> list[tuple[str, int]]:
    """The (IPv4 address, port) pairs ``hop`` is at, in the order to try them
    (:mod:`sipedge.adapters.dns`: by SRV when its host is named without a port); OSError
    if none."""
    found = await locate(hop.host, hop.port, hop.transport, srv=hop.srv)
    if not found:
        raise OSError(f"no IPv4 address for {hop.host}")
    return found


# -- the driver --------------------------------------------------------------------------
class TrunkRegistrations:
    """Registers the trunks whose leases this process holds (see the module docstring)."""

    def __init__(
        self,
        edge: Sender,
        leases: Leases,
        board: StatusBoard,
        metrics: Metrics,
        *,
        holder: str,
        user_agent: str,
        settings: Settings | None = None,
        resolve: Resolve = locate_all,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.edge, self.leases, self.board, self.metrics = edge, leases, board, metrics
        self.holder, self.user_agent = holder, user_agent
        self.settings = settings or Settings()
        self.resolve, self.sleep = resolve, sleep
        self._trunks: dict[TrunkKey, _Trunk] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def sync(self, tenants: Iterable[TenantSnapshot]) -> None:
        """Register what ``tenants`` ask for: start new trunks, retire gone ones, and
        retire then restart changed ones (their settings or password)."""
        wanted = wanted_trunks(tenants)
        for key, running in list(self._trunks.items()):
            if wanted.get(key) != (running.trunk, running.password):
                self._retire(key)
        for key, (trunk, password) in wanted.items():
            if key not in self._trunks:
                after = [task for task in self._retiring if task.get_name() == repr(key)]
                self._trunks[key] = _Trunk(self, key, trunk, password, after)

    def statuses(self) -> dict[TrunkKey, Standing]:
        """(tenant, trunk) → how it stands, for every trunk this process would register."""
        return {key: running.standing() for key, running in self._trunks.items()}

    async def stop(self) -> None:
        """Release every lease without unregistering: another edge takes over at once."""
        for task in self._retiring:
            task.cancel()
        trunks, self._trunks = list(self._trunks.values()), {}
        await asyncio.gather(*(running.stop(unregister=False) for running in trunks))
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def _retire(self, key: TrunkKey) -> None:
        running = self._trunks.pop(key)
        task = asyncio.create_task(running.stop(unregister=True), name=repr(key))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def exchange(self, request: Request, destination: Peer) -> ClientEvent:
        """Send ``request`` in a client transaction; its final response, or its failure."""
        await self.edge.connect(destination)
        done: asyncio.Future[ClientEvent] = asyncio.get_running_loop().create_future()

        def on_event(event: ClientEvent) -> None:
            if isinstance(event, Response) and event.status < 200:
                return
            if not done.done():
                done.set_result(event)

        self.edge.request(request, destination, on_event)
        return await done


class _Trunk:
    """One trunk: its lease kept (or sought) every renewal, its registration while held."""

    def __init__(
        self,
        owner: TrunkRegistrations,
        key: TrunkKey,
        trunk: Trunk,
        password: str,
        after: list[asyncio.Task[None]],
    ) -> None:
        self.owner, self.key, self.trunk, self.password = owner, key, trunk, password
        self.session: _Session | None = None
        self.seen_holder: str | None = None
        self.task = asyncio.create_task(self._hold(after))

    def standing(self) -> Standing:
        if self.session is not None:
            return Standing(self.session.machine.status, self.owner.holder)
        return Standing(None, self.seen_holder)

    async def _hold(self, after: list[asyncio.Task[None]]) -> None:
        if after:  # its retirement (asyncio.wait: our cancellation must not cancel it)
            await asyncio.wait(after)
        while True:
            await self._renew()
            await self.owner.sleep(self.owner.settings.renew_every_s)

    async def _renew(self) -> None:
        owner, (tenant, name) = self.owner, self.key
        try:
            held = await owner.leases.take(tenant, name, owner.holder, owner.settings.lease_ttl_s)
            if not held:
                self.seen_holder = await owner.leases.holder(tenant, name)
        except STORE_ERRORS as error:  # keep going as we are, try again
            log.warning("trunk %s/%s: lease not renewed (%s); trying again", tenant, name, error)
            return
        if not held:
            if self.session is not None:
                log.info("trunk %s/%s: lease went to %s", tenant, name, self.seen_holder)
                self._end_session()
            return
        self.seen_holder = owner.holder
        if self.session is None or self.session.task.done():
            self._end_session()
            self.session = _Session(self)
            log.info("trunk %s/%s: holding its registration", tenant, name)
        await self.publish()

    async def publish(self) -> None:
        """Show the registration's status: metrics, and the board (errors logged)."""
        if self.session is None:
            return
        status, owner = self.session.machine.status, self.owner
        owner.metrics.trunk_state(*self.key, status.state.value)
        record = TrunkStatus(
            status.state.value,
            status.status,
            status.reason,
            status.failures,
            owner.holder,
            owner.edge.wall(),
        )
        try:
            await owner.board.publish(*self.key, record, owner.settings.status_ttl_s)
        except STORE_ERRORS as error:
            log.warning("trunk %s/%s: status not published (%s)", *self.key, error)

    def _end_session(self) -> None:
        if self.session is not None:
            self.session.task.cancel()
            self.session = None
            self.owner.metrics.trunk_state(*self.key, None)

    async def stop(self, *, unregister: bool) -> None:
        """Stop: unregister first if asked and registered; release the lease if held."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        session = self.session
        if session is None:
            return
        session.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await session.task
        try:
            if unregister:
                await session.unregister()
                await self.publish()
        finally:
            self._end_session()
            try:
                await self.owner.leases.release(*self.key, self.owner.holder)
            except STORE_ERRORS as error:
                log.warning("trunk %s/%s: lease not released (%s)", *self.key, error)


class _Session:
    """One registration of a held trunk: a machine, a Call-ID and From tag it keeps."""

    def __init__(self, trunk: _Trunk) -> None:
        self.trunk = trunk
        owner = trunk.owner
        tenant, name = trunk.key
        self.transport = transport = next_hop(trunk.trunk).transport
        self.contact = owner.edge.contact(contact_user(tenant, name), transport)
        self.machine = Registration(
            account(tenant, trunk.trunk, trunk.password, self.contact),
            backoff_base_s=owner.settings.backoff_base_s,
        )
        self.call_id = f"{secrets.token_hex(10)}@cloudpbx"
        self.from_tag = secrets.token_hex(6)
        #: The provider's server (address, port) this registration goes to.
        self.server: tuple[str, int] | None = None
        self.was_registered = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            action: Register | Wait = self.machine.start()
            while True:
                if isinstance(action, Wait):
                    await self.trunk.owner.sleep(action.seconds)
                    action = self.machine.wait_over()
                    continue
                failures = self.machine.status.failures
                action = await self._step(action)
                self._tally(failures)
                await self.trunk.publish()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: logged; the next renewal starts a new registration
            log.exception("trunk %s/%s: registration failed", *self.trunk.key)

    def _tally(self, failures_before: int) -> None:
        status = self.machine.status
        if status.state is State.REGISTERED:
            self.was_registered = True
        if status.failures > failures_before:
            self.trunk.owner.metrics.trunk_failed(*self.trunk.key)
            log.info(
                "trunk %s/%s: registration failed: %d %s (%d in a row)",
                *self.trunk.key,
                status.status,
                status.reason,
                status.failures,
            )

    async def _step(self, register: Register) -> Register | Wait:
        """Send ``register``; what the machine says to the outcome. A server that fails
        it (a 503, no answer, no connection) gives way to the provider's next, with a
        fresh REGISTER (RFC 3263 §4.3); the machine hears of a failure when none is left."""
        jitter = random.random()  # noqa: S311  (spreads retries; no secret)
        hop = next_hop(self.trunk.trunk)
        host = hop.host
        try:
            found = await self.trunk.owner.resolve(hop)
        except OSError as error:
            reason = f"cannot resolve {host}: {error.strerror or error}"
            return self.machine.unreachable(reason, jitter=jitter)
        # the server registered with stays while it is one of the provider's (SRV may
        # list several in a weighted random order): refreshes go where the binding is
        if self.server not in found:
            self.server = found[0]
        untried = [server for server in found if server != self.server]
        while True:
            outcome = await self._send(register, hop, self.server)
            failed = server_failed(outcome.status if isinstance(outcome, Response) else None)
            if not (failed and untried) or self.machine.status.state is State.DISABLED:
                break
            log.info(
                "trunk %s/%s: server %s:%d failed (%s), trying %s:%d",
                *self.trunk.key,
                *self.server,
                "no answer" if isinstance(outcome, TimedOut) else _told(outcome),
                *untried[0],
            )
            self.trunk.owner.metrics.trunk_server_failed(*self.trunk.key, self.server, "REGISTER")
            self.server = untried.pop(0)
            register = self.machine.start()
        if isinstance(outcome, Response):
            return self.machine.answer(outcome, cnonce=secrets.token_hex(8), jitter=jitter)
        if isinstance(outcome, TimedOut):
            return self.machine.timed_out(jitter=jitter)
        return self.machine.unreachable(outcome, jitter=jitter)

    async def _send(
        self, register: Register, hop: Hop, server: tuple[str, int]
    ) -> Response | TimedOut | str:
        """``register`` sent to ``server``: its final response, a timeout, or why it could
        not be sent."""
        address, port = server
        try:
            event = await self.trunk.owner.exchange(
                self._request(register), Peer(hop.transport, address, port)
            )
        except OSError as error:
            return f"cannot connect to {hop.host}:{port}: {error.strerror or error}"
        if isinstance(event, (Response, TimedOut)):
            return event
        return f"cannot send to {hop.host}:{port} over {hop.transport}"

    def _request(self, register: Register) -> Request:
        owner = self.trunk.owner
        return register_request(
            self.trunk.trunk,
            register,
            via=owner.edge.via_for(self.transport),
            contact=self.contact,
            call_id=self.call_id,
            from_tag=self.from_tag,
            user_agent=owner.user_agent,
        )

    async def unregister(self) -> None:
        """Remove our binding (Expires 0) if it was registered; the trunk is Disabled."""
        registered = self.machine.status.state is State.REGISTERED or self.was_registered
        action: Register | Wait = self.machine.disable()
        if not registered:
            return
        while isinstance(action, Register):
            action = await self._step(action)


def _told(outcome: Response | str) -> str:
    return f"{outcome.status} {outcome.reason}" if isinstance(outcome, Response) else outcome
