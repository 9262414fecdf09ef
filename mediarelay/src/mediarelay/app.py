"""One relay process: the *ng* control endpoint, the media sockets, STUN, the idle reaper.

The glue between the sans-IO core (:mod:`mediarelay.control`, :mod:`mediarelay.session`)
and asyncio. A control request is handled at once; the ports an ``offer`` or ``answer``
allocated are bound *before* the reply leaves, so a phone can send media the moment it has
the rewritten SDP. Once a second the reaper ends calls idle past their timeout (logged
with their Call-ID: the edge ends and bills them) and the metrics snapshot is refreshed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Callable
from typing import cast

from mediarelay.adapters.media import MediaPlane
from mediarelay.adapters.stun_listener import StunCounters, start_stun
from mediarelay.config import RelayConfig
from mediarelay.control import Controller
from mediarelay.metrics import AdapterCounters, RelayMetrics, Snapshot
from mediarelay.portpool import PortPool
from mediarelay.session import SessionConfig, Sessions

log = logging.getLogger("mediarelay")

TICK_S = 1.0


class ControlPort(asyncio.DatagramProtocol):
    """The *ng* control socket: each request handled in order of arrival."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport is not an asyncio.DatagramTransport subclass: cast.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        task = asyncio.ensure_future(self.relay.control(data, addr, self))
        task.add_done_callback(_log_failure)


class Relay:
    """Everything one relay process runs, started and stopped together."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        low, high = config.ports
        self.plane = MediaPlane(config.bind)
        self.sessions = Sessions(
            PortPool(low, high, secrets.randbelow),
            SessionConfig(
                learning_window_s=config.learning_window_s, idle_timeout_s=config.idle_timeout_s
            ),
            claims=self.plane,
        )
        self.plane.sessions = self.sessions
        self.controller = Controller(self.sessions, config.advertise)
        self.metrics = RelayMetrics()
        self.stun_counters = StunCounters()
        self._lock = asyncio.Lock()
        self._control: asyncio.DatagramTransport | None = None
        self._closers: list[Callable[[], object]] = []

    async def control(self, data: bytes, addr: tuple[str | int, ...], port: ControlPort) -> None:
        """Handle one request; bind what it allocated, close what it freed, then reply."""
        async with self._lock:  # one request at a time: its ports are bound before the next
            loop = asyncio.get_running_loop()
            source = (str(addr[0]), int(addr[1]))
            handled = self.controller.handle(data, source, loop.time(), time.time())
            if handled.opened:
                await self.plane.open(handled.opened)
            self.plane.close(handled.closed)
        if handled.reply is not None and port.transport is not None:
            port.transport.sendto(handled.reply, addr)

    def tick(self) -> None:
        """Reap idle calls and refresh the metrics snapshot (once a second)."""
        loop = asyncio.get_running_loop()
        notices, closed = self.controller.reap(loop.time())
        self.plane.close(closed)
        for peer, notice in notices:
            log.info("media timeout: told %s:%d", *peer)
            if self._control is not None:
                self._control.sendto(notice, peer)
        adapter = self.plane.counters()
        stun = self.stun_counters
        self.metrics.snapshot = Snapshot(
            self.sessions.counters(),
            AdapterCounters(
                adapter.stun_answered + stun.answered,
                adapter.stun_dropped + stun.dropped,
                adapter.malformed,
                adapter.send_errors,
            ),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        control, _ = await loop.create_datagram_endpoint(
            lambda: ControlPort(self), local_addr=self.config.ng
        )
        self._control = control
        self._closers.append(control.close)
        if self.config.stun is not None:
            datagram, stream = await start_stun(*self.config.stun, self.stun_counters)
            self._closers += [datagram.close, stream.close]
        if self.config.metrics_port is not None:
            self.metrics.serve(self.config.metrics_port)

    async def run_ticks(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)

    def close(self) -> None:
        for close in self._closers:
            close()
        self.plane.close_all()


async def serve(config: RelayConfig, on_ready: Callable[[], None] | None = None) -> None:
    """Run the relay until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    relay = Relay(config)
    await relay.start()
    log.info("relay ready: ng %s:%d, advertising %s", *config.ng, config.advertise)
    if on_ready is not None:
        on_ready()
    try:
        await relay.run_ticks(stop)
    finally:
        relay.close()


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("control request failed", exc_info=task.exception())
