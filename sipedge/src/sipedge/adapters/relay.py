"""The edge's media relay client: rtpengine's *ng* protocol over one UDP socket per process.

Speaks to our relay (``python -m mediarelay serve``) or to rtpengine alike; the wire
format is :mod:`contracts.ng.control`, the choice of relay :mod:`sipedge.media`.

* One socket, many commands in flight: each gets a cookie unique in this process (a
  random prefix per process, then a counter), and a reply is handed to the command whose
  cookie it repeats; a late reply to a finished command is dropped.
* Retransmission as Kamailio's rtpengine module does it: the same datagram (same cookie,
  so the relay answers it from its reply cache rather than acting twice) up to
  ``tries`` times, ``timeout_s`` apart. An error reply raises :class:`RelayRefused`,
  silence :class:`RelayUnanswered`, both carrying the reason to show the caller.
* A new call is offered to the first relay up on the ring for its Call-ID; one that does
  not answer is marked down and the next is tried. Later commands of the call go to the
  relay that took the offer. A ping every ``ping_interval_s`` marks relays up or down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contracts.ng.control import (
    Answer,
    Command,
    ControlError,
    Delete,
    Offer,
    Ping,
    Reply,
    Result,
    command_datagram,
    expect_reply,
    split_datagram,
)
from contracts.ng.notice import Notice, parse_notice
from sipedge.media import RelayAddress, RelayPool

log = logging.getLogger("sipedge.relay")


class RelayError(Exception):
    """A relay command failed; ``reason`` says why, fit for a SIP Warning to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RelayRefused(RelayError):
    """The relay answered with an error (out of ports, a call it does not know...)."""


class RelayUnanswered(RelayError):
    """No reply after every retransmission, or no relay up to ask."""


@dataclass(frozen=True, slots=True)
class Retransmission:
    """How long to wait for an ng reply: ``tries`` sends, ``timeout_s`` apart."""

    timeout_s: float = 1.0
    tries: int = 5


class _NgProtocol(asyncio.DatagramProtocol):
    """Moves datagrams: a reply goes to the future waiting for its cookie."""

    def __init__(self) -> None:
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        #: Gets what a relay reports unasked (contracts.ng.notice): a call it ended.
        self.on_notice: Callable[[Notice], None] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            cookie, _ = split_datagram(data)
        except ControlError:
            return
        waiter = self.pending.get(cookie)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(data)
            return
        notice = parse_notice(data)
        if notice is not None and self.on_notice is not None:
            self.on_notice(notice)

    def error_received(self, exc: Exception) -> None:
        log.debug("ng socket error: %s", exc)


class NgClient:
    """Sends ng commands and waits for their replies, retransmitting."""

    def __init__(self, retransmission: Retransmission) -> None:
        self.retransmission = retransmission
        self.protocol = _NgProtocol()
        self._transport: asyncio.DatagramTransport | None = None
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)

    async def open(self, family: int = socket.AF_INET) -> None:
        local = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104 - any port, ours
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self.protocol, local_addr=(local, 0), family=family
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def send(self, address: tuple[str, int], command: Command) -> Reply:
        """``command`` to ``address``; its reply. Raises :class:`RelayRefused` on an
        error reply, :class:`RelayUnanswered` when none comes."""
        if self._transport is None:
            raise RuntimeError("NgClient.send before open()")
        cookie = f"{self._prefix}_{next(self._counter)}".encode()
        datagram = command_datagram(cookie, command)
        waiter = asyncio.get_running_loop().create_future()
        self.protocol.pending[cookie] = waiter
        try:
            data = await self._exchange(datagram, address, waiter)
        finally:
            self.protocol.pending.pop(cookie, None)
        try:
            reply = expect_reply(data, cookie)
        except ControlError as err:
            raise RelayRefused(f"malformed {command.command} reply: {err.reason}") from None
        if reply.result is Result.ERROR:
            raise RelayRefused(f"{command.command} refused: {reply.error_reason}")
        return reply

    async def _exchange(
        self,
        datagram: bytes,
        address: tuple[str, int],
        waiter: asyncio.Future[bytes],
    ) -> bytes:
        assert self._transport is not None
        retransmission = self.retransmission
        for _ in range(retransmission.tries):
            self._transport.sendto(datagram, address)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retransmission.timeout_s):
                    return await asyncio.shield(waiter)
        seconds = retransmission.tries * retransmission.timeout_s
        raise RelayUnanswered(f"no reply from the media relay in {seconds:g} s")


class MediaRelays:
    """The relays of one edge process: who gets a new call, commands, health pings."""

    def __init__(
        self,
        relays: Sequence[RelayAddress],
        retransmission: Retransmission | None = None,
        ping_interval_s: float = 10.0,
    ) -> None:
        #: As configured; a name stands for every address it resolves to (:meth:`expand`).
        self.configured = tuple(relays)
        self.pool = RelayPool(relays)
        self.client = NgClient(retransmission or Retransmission())
        self.ping_interval_s = ping_interval_s
        self._resolved: dict[RelayAddress, tuple[str, int]] = {}
        self._family = _family(relays)
        self._pinger: asyncio.Task[None] | None = None

    def on_notice(self, handler: Callable[[Notice], None]) -> None:
        """Have ``handler`` called with each notice a relay sends (a media timeout)."""
        self.client.protocol.on_notice = handler

    async def start(self) -> None:
        await self.client.open(self._family)
        await self.expand()
        self._pinger = asyncio.create_task(self._ping_forever())

    async def expand(self) -> None:
        """A relay given by name (a headless Service: one address per relay pod) is every
        address the name resolves to, each a relay of its own on the ring, so calls spread
        over all relay pods and every edge process names a call's relay alike (its
        address). Looked up again before each round of pings: pods come and go. A name
        that does not resolve stays as it is (its pings fail: it is down)."""
        expanded: list[RelayAddress] = []
        loop = asyncio.get_running_loop()
        for relay in self.configured:
            try:
                ipaddress.ip_address(relay.host)
            except ValueError:
                pass
            else:
                expanded.append(relay)
                continue
            try:
                infos = await loop.getaddrinfo(
                    relay.host, relay.port, family=self._family, type=socket.SOCK_DGRAM
                )
            except OSError as err:
                log.warning("media relay %s does not resolve: %s", relay, err)
                expanded.append(relay)
                continue
            addresses = sorted({str(info[4][0]) for info in infos})
            expanded.extend(RelayAddress(address, relay.port) for address in addresses)
        if set(expanded) != set(self.pool.relays):
            log.info("media relays: %s", ", ".join(str(relay) for relay in expanded))
            self.pool = self.pool.with_relays(expanded)

    async def stop(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        self.client.close()

    # -- commands ------------------------------------------------------------------------
    async def offer(self, offer: Offer) -> tuple[RelayAddress, bytes]:
        """Offer a new call to the first relay up for its Call-ID (RFC 3264 §5 offer, as
        the relay rewrites it); the relay that took it and the SDP to pass on."""
        candidates = self.pool.candidates(offer.call_id)
        if not candidates:
            raise RelayUnanswered("no media relay is up")
        for relay in candidates:
            try:
                return relay, await self.reoffer(relay, offer)
            except RelayUnanswered:
                self._down(relay, "offer unanswered")
        raise RelayUnanswered(f"no media relay answered ({len(candidates)} tried)")

    async def reoffer(self, relay: RelayAddress, offer: Offer) -> bytes:
        """An offer to the relay the call is on (a re-INVITE's, RFC 3264 §8)."""
        return _sdp(await self.send(relay, offer), "offer")

    async def answer(self, relay: RelayAddress, answer: Answer) -> bytes:
        """The answer (RFC 3264 §6) to the relay that took the offer; the SDP to pass on."""
        return _sdp(await self.send(relay, answer), "answer")

    async def delete(self, relay: RelayAddress, call_id: str) -> None:
        await self.send(relay, Delete(call_id=call_id))

    async def send(self, relay: RelayAddress, command: Command) -> Reply:
        address = self._resolved.get(relay) or await self._resolve(relay)
        return await self.client.send(address, command)

    async def _resolve(self, relay: RelayAddress) -> tuple[str, int]:
        """A relay's socket address; names (a Kubernetes Service) are looked up off-loop."""
        try:
            ipaddress.ip_address(relay.host)
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(
                    relay.host, relay.port, family=self._family, type=socket.SOCK_DGRAM
                )
            except OSError as err:
                raise RelayUnanswered(f"cannot resolve media relay {relay}: {err}") from None
            host = str(infos[0][4][0])
        else:
            host = relay.host
        self._resolved[relay] = (host, relay.port)
        return host, relay.port

    # -- health --------------------------------------------------------------------------
    async def _ping_forever(self) -> None:
        while True:
            await self.expand()
            await self.ping_all()
            await asyncio.sleep(self.ping_interval_s)

    async def ping_all(self) -> None:
        """Ping every relay at once and mark it up or down; a ping is retransmitted as any
        command, so one lost datagram does not take a relay out."""
        relays = self.pool.relays
        outcomes = await asyncio.gather(
            *(self.send(relay, Ping()) for relay in relays), return_exceptions=True
        )
        for relay, outcome in zip(relays, outcomes, strict=True):
            if isinstance(outcome, Reply) and outcome.result is Result.PONG:
                if self.pool.mark(relay, up=True):
                    log.info("media relay %s is up", relay)
            else:
                self._resolved.pop(relay, None)  # a Service may have moved: look it up again
                self._down(relay, str(outcome))

    def _down(self, relay: RelayAddress, why: str) -> None:
        if self.pool.mark(relay, up=False):
            log.warning("media relay %s is down: %s", relay, why)


def _sdp(reply: Reply, command: str) -> bytes:
    if reply.sdp is None:
        raise RelayRefused(f"{command} reply without SDP")
    return reply.sdp


def _family(relays: Sequence[RelayAddress]) -> int:
    """IPv6 when a relay is given as an IPv6 literal; else IPv4 (names resolve to IPv4)."""
    return socket.AF_INET6 if any(":" in relay.host for relay in relays) else socket.AF_INET
