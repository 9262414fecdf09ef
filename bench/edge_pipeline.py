"""Micro-benchmark: the edge's CPU per request on the REGISTER path, in one process.

Builds a real :class:`sipedge.app.EdgeProcess` for a generated tenant of ``--users`` users
(the population of ``bench/register.py``), replaces its socket writes with a list, and
drives every user through REGISTER → 401 → REGISTER with digest → 200 by handing parsed
datagrams to ``edge._inbound`` as the UDP transport would. Only the edge's work is timed:

1. timed: parse and handle ``--window`` first REGISTERs (as many in flight as SIPp's ``-l``);
2. not timed: read the 401s and compute each client's digest answer (what SIPp does);
3. timed: parse and handle their REGISTERs with credentials, until every 200 is sent;

and so on, window after window.

CPU is the process's CPU time (:func:`time.process_time`), so waiting for Redis is not
counted but the Redis client's work is. With ``--redis URL`` the bindings go to that Redis
(the keys of its own tenant, ``edge-pipeline``, are cleared before and after); without
it, to the memory store.
``--profile FILE`` writes cProfile stats of the timed phases (``--profile -`` prints them).

Prints one line per phase and ends with::

    RESULT edge_pipeline store=<memory|redis> us_per_request=<n> registrations_per_cpu_s=<n> ...

The machine is shared, so noise only adds: ``--repeat`` runs, and the best one counts.

Run: ``.venv/bin/python bench/edge_pipeline.py [--users N] [--redis redis://127.0.0.1:6379/14]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import cast

sys.path.insert(0, "bench")

import uvloop
from redis.asyncio import Redis

from contracts.keys import tenant_key_pattern
from sipbench import User, make_users, write_tenant_manifest
from sipedge.adapters.transport import Inbound, _Udp
from sipedge.app import EdgeProcess, settle_heap
from sipedge.config import EdgeConfig, Listen
from sipedge.sip.auth import parse_challenge
from sipedge.sip.digest import answer_challenge
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Response
from sipedge.sip.transaction import Peer
from sipedge.sip.uri import SipUri

#: Not ``bench``: bench/register.py and bench/calls.py may share the same Redis database.
TENANT = "edge-pipeline"
DOMAIN = "bench.cloudpbx.test"
CLIENT = Peer("UDP", "127.0.0.1", 36000)


def register_bytes(number: str, cseq: int, authorization: str | None = None) -> bytes:
    """What SIPp's register.xml sends (same headers, same order)."""
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:36000;branch=z9hG4bK-{number}-{cseq};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{number}@{DOMAIN}>;tag=1SIPpTag00{number}\r\n"
        f"To: <sip:{number}@{DOMAIN}>\r\n"
        f"Call-ID: {number}-bench@127.0.0.1\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{number}@127.0.0.1:36000;transport=UDP>\r\n"
        "Expires: 3600\r\n"
        f"{auth}"
        "User-Agent: cloudpbx-bench-sipp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class _Sink:
    """Stands for the UDP socket's transport: what is sent lands in a list."""

    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append(data)


class Pipeline:
    """One edge process whose socket writes land in :attr:`sent`."""

    def __init__(self, manifests: Path, redis_url: str | None) -> None:
        listen = Listen("UDP", "127.0.0.1", 35999)
        self.listen = listen
        self.process = EdgeProcess(
            EdgeConfig(listens=(listen,), manifests=manifests, redis_url=redis_url)
        )
        self.sent: list[bytes] = []
        # No socket: the listener's protocol writes into a list. Patched at the transport,
        # not by replacing Transports.send: the compiled edge's methods cannot be replaced.
        protocol = _Udp(listen, lambda inbound: None)
        protocol.transport = cast(asyncio.DatagramTransport, _Sink(self.sent))
        self.process.edge.transports._udp[listen] = protocol

    async def drive(self, datagrams: list[bytes]) -> None:
        """Hand the datagrams to the edge as its socket would; wait for their handlers."""
        inbound = self.process.edge._inbound
        listen = self.listen
        tasks = self.process.ua._tasks
        for data in datagrams:
            inbound(Inbound(parse_datagram(data), CLIENT, listen))
        while tasks:
            await asyncio.wait(list(tasks))

    def take(self) -> list[Response]:
        out = [parse_datagram(data) for data in self.sent]
        self.sent.clear()
        return [message for message in out if isinstance(message, Response)]


def answers(challenges: list[Response], passwords: dict[str, str], cseq: int) -> list[bytes]:
    """The second REGISTER of each challenged user (the client's side: not timed)."""
    out = []
    for response in challenges:
        if response.status != 401:
            raise SystemExit(f"expected 401, got {response.status} {response.reason}")
        uri = response.to.uri
        assert isinstance(uri, SipUri)
        assert uri.user is not None
        number = uri.user
        value = response.headers.get("WWW-Authenticate")
        assert value is not None
        credentials = answer_challenge(
            parse_challenge(value),
            method="REGISTER",
            uri=f"sip:{DOMAIN}",
            username=number,
            password=passwords[number],
            cnonce="0a4f113b",
        )
        out.append(register_bytes(number, cseq, credentials.to_header_value()))
    return out


class Clock:
    """CPU seconds spent in timed sections per phase, and how much of it the GC took."""

    def __init__(self, profile: cProfile.Profile | None) -> None:
        self.profile = profile
        self.cpu: dict[str, float] = {}
        self.gc: dict[str, float] = {}
        self._phase: str | None = None
        self._gc_started = 0.0
        gc.callbacks.append(self._on_gc)

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, event: str, info: dict[str, int]) -> None:
        if self._phase is None:
            return
        if event == "start":
            self._gc_started = time.process_time()
        else:
            spent = time.process_time() - self._gc_started
            self.gc[self._phase] = self.gc.get(self._phase, 0.0) + spent

    async def timed(self, phase: str, work: Awaitable[None]) -> None:
        self._phase = phase
        started = time.process_time()
        if self.profile is not None:
            self.profile.enable()
        await work
        if self.profile is not None:
            self.profile.disable()
        self.cpu[phase] = self.cpu.get(phase, 0.0) + time.process_time() - started
        self._phase = None


async def clear(redis_url: str | None) -> None:
    if redis_url is None:
        return
    client = Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=tenant_key_pattern(TENANT), count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


async def register_all(
    pipeline: Pipeline,
    clock: Clock | None,
    users: list[User],
    passwords: dict[str, str],
    window: int,
    cseq: int = 1,
) -> None:
    """Register ``users`` ``window`` at a time (timed on ``clock`` when given).

    The REGISTERs carry ``cseq`` and ``cseq + 1``: a later round must count on (RFC 3261
    §10.3 step 7), or the registrar answers 500.
    """

    async def step(phase: str, work: Awaitable[None]) -> None:
        await (work if clock is None else clock.timed(phase, work))

    for start in range(0, len(users), window):
        batch = users[start : start + window]
        firsts = [register_bytes(user.number, cseq) for user in batch]
        await step("REGISTER -> 401", pipeline.drive(firsts))
        seconds = answers(pipeline.take(), passwords, cseq + 1)
        await step("REGISTER+auth -> 200", pipeline.drive(seconds))
        oks = [r for r in pipeline.take() if r.status == 200]
        if len(oks) != len(batch):
            raise SystemExit(f"only {len(oks)} of {len(batch)} registrations got a 200")


async def run_once(
    args: argparse.Namespace, manifests: Path, profile: cProfile.Profile | None
) -> float:
    """One fresh edge registering every user ``--rounds`` times; its CPU seconds.

    Users go ``--window`` at a time through the whole exchange, as with SIPp's closed
    loop: the answers to a challenge arrive while its REGISTER is still recent. One
    window of other users goes first, untimed: it opens the Redis connections (one per
    request in flight, each costing milliseconds once) as a running edge has them open.
    """
    everyone = make_users(args.users + args.window)
    users, warmup = everyone[: args.users], everyone[args.users :]
    passwords = {user.number: user.password for user in everyone}
    await clear(args.redis)
    pipeline = Pipeline(manifests, args.redis)
    clock = Clock(profile)
    try:
        await register_all(pipeline, None, warmup, passwords, args.window)
        if not args.default_gc:
            settle_heap()  # as sipedge.app.serve does once a worker is up
        for round_ in range(args.rounds):
            await register_all(pipeline, clock, users, passwords, args.window, 2 * round_ + 1)
    finally:
        clock.close()
        if pipeline.process.redis is not None:
            await pipeline.process.redis.aclose()
        await clear(args.redis)
    requests = len(users) * args.rounds
    for phase, cpu in clock.cpu.items():
        print(
            f"{phase:<22} {requests:>6} requests  cpu {cpu * 1e3:8.1f} ms  "
            f"{cpu / requests * 1e6:7.1f} us/request"
            f" (GC {clock.gc.get(phase, 0.0) / requests * 1e6:.1f})"
        )
    return sum(clock.cpu.values())


async def run(args: argparse.Namespace, manifests: Path) -> None:
    """``--repeat`` runs; the best one counts (the machine is shared: noise only adds)."""
    profile = cProfile.Profile() if args.profile else None
    cpus = [await run_once(args, manifests, profile) for _ in range(args.repeat)]
    cpu = min(cpus)
    registrations = args.users * args.rounds
    store = "redis" if args.redis else "memory"
    us, median_us = (c / (2 * registrations) * 1e6 for c in (cpu, statistics.median(cpus)))
    print(
        f"RESULT edge_pipeline store={store} us_per_request={us:.1f}"
        f" registrations_per_cpu_s={registrations / cpu:.0f}"
        f" (best of {len(cpus)}; median {median_us:.1f} us)"
    )
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stdout)
        if args.profile == "-":
            stats.sort_stats(args.sort).print_stats(40)
        else:
            stats.dump_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=1, help="register everyone N times")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts")
    parser.add_argument("--window", type=int, default=64, help="requests in flight")
    parser.add_argument("--redis", default=None, help="a redis:// URL (default: memory store)")
    parser.add_argument("--profile", default=None, help="cProfile output file, or -")
    parser.add_argument(
        "--default-gc", action="store_true", help="skip sipedge.app.settle_heap (compare)"
    )
    parser.add_argument("--sort", default="tottime", help="profile order (tottime, cumtime)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-pipeline-") as folder:
        manifests = Path(folder)
        users = make_users(args.users + args.window)
        write_tenant_manifest(manifests / "bench.yaml", users, tenant=TENANT)
        uvloop.run(run(args, manifests))


if __name__ == "__main__":
    main()
