"""Benchmark: CPU per relayed RTP packet, the cloudpbx relay vs rtpengine-daemon (userspace).

Both relays get the same load in the same run, one after the other, each started afresh:
``--streams`` calls (default 1,000), each set up over the *ng* control protocol exactly as
an edge does it (``offer`` with the caller's SDP, ``answer`` with the callee's, both from
:mod:`contracts.ng`), then two-way RTP through the relay from :mod:`sipbench.rtpload`:
160-byte payloads, 50 packets/s per stream and direction, so 1,000 streams are 100,000
packets/s. After ``--warmup-s`` (latching settles), the relay's CPU time (user + system,
from ``/proc/<pid>/stat``, all its threads) is read before and after ``--seconds`` of load;
CPU µs per packet is that time over the packets the relay forwarded (those the far sockets
received). Loss counts what never arrived, misrouted packets included (every packet carries
its sender's SSRC). The calls are deleted afterwards.

* rtpengine: ``rtpengine --table=-1`` (no kernel forwarding: userspace, as the issue's
  yardstick), ``--num-threads=2``, listening for *ng* on loopback.
* cloudpbx: ``python -m mediarelay serve`` (one process, uvloop) from ``build/compiled``:
  the relay as it ships, its session core and media sockets compiled by mypyc
  (``./pbx build`` runs first; ``--cloudpbx-cmd`` replaces the command).

Ends with exactly one line::

    RESULT relay cloudpbx_us_per_pkt=<x> rtpengine_us_per_pkt=<y> loss=<pct> ratio=<x/y>

``loss`` is cloudpbx's (the worse of both is printed above it); ``n/a`` marks a side not
measured (``--only``). Run: ``.venv/bin/python bench/relay.py [--only cloudpbx|rtpengine]
[--streams N] [--seconds S]``. Traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contracts.ng.control import (
    Answer,
    Command,
    Delete,
    Offer,
    Ping,
    Result,
    command_datagram,
    expect_reply,
)
from contracts.sdp import parse_sdp
from sipbench.edge import COMPILED_TREE, prepare_build
from sipbench.kamailio import require_loopback
from sipbench.rtpload import LoadResult, Stream, run_load

TARGETS = ("cloudpbx", "rtpengine")
ROOT = Path(__file__).resolve().parents[1]
RTPENGINE_CMD = (
    "rtpengine --foreground --log-stderr --log-level=4 --table=-1 --no-fallback"
    " --interface=127.0.0.1 --listen-ng=127.0.0.1:{ng} --port-min={low} --port-max={high}"
    " --num-threads=2 --pidfile={workdir}/rtpengine.pid"
)
CLOUDPBX_CMD = (
    f"env PYTHONPATH={COMPILED_TREE} .venv/bin/python -m mediarelay serve"
    " --ng 127.0.0.1:{ng} --bind 127.0.0.1 --ports {low}-{high} --log-level warning"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


class RelayError(Exception):
    """A relay that did not start, refused a call, or died."""


@dataclass(frozen=True, slots=True)
class Measured:
    """One relay's run: what the load saw and the relay's CPU over it."""

    load: LoadResult
    cpu_s: float

    @property
    def forwarded(self) -> int:
        return self.load.received

    @property
    def us_per_packet(self) -> float:
        return 1e6 * self.cpu_s / self.forwarded if self.forwarded else float("inf")


class NgClient:
    """A blocking *ng* client on loopback: one command, one reply, a fresh cookie each."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = (require_loopback(address[0]), address[1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self._cookies = 0

    def call(self, command: Command) -> bytes | None:
        """Send ``command``; the reply's SDP (None for replies without one)."""
        self._cookies += 1
        cookie = f"b{os.getpid()}-{self._cookies}".encode()
        self.sock.sendto(command_datagram(cookie, command), self.address)
        reply = expect_reply(self.sock.recv(65_535), cookie)
        if reply.result is Result.ERROR:
            raise RelayError(f"{command.command} refused: {reply.error_reason}")
        return reply.sdp

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.call(Ping())
                return
            except (TimeoutError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RelayError(f"no ng pong from {self.address} in {timeout_s} s") from None
                time.sleep(0.1)

    def close(self) -> None:
        self.sock.close()


def sdp_for(port: int, session: int) -> bytes:
    """A phone's PCMU offer or answer, receiving RTP on 127.0.0.1:``port``."""
    return (
        f"v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    ).encode()


def relay_address(sdp: bytes | None) -> tuple[str, int]:
    """Where the relay wants the other side's RTP: the rewritten SDP's c= and m= port."""
    if sdp is None:
        raise RelayError("the relay answered without SDP")
    description = parse_sdp(sdp)
    media = description.media[0]
    connection = media.connections[0] if media.connections else description.connection
    if connection is None:
        raise RelayError("the rewritten SDP has no c= line")
    return require_loopback(connection.address), media.port


def set_up(client: NgClient, streams: list[Stream]) -> None:
    """Offer and answer every stream's call through the relay, as an edge would."""
    for number, stream in enumerate(streams):
        call_id = f"bench-relay-{number}"
        offer = Offer(
            call_id=call_id, from_tag="caller", sdp=sdp_for(stream.caller.address[1], number)
        )
        stream.callee.relay = relay_address(client.call(offer))
        answer = Answer(
            call_id=call_id,
            from_tag="caller",
            to_tag="callee",
            sdp=sdp_for(stream.callee.address[1], number),
        )
        stream.caller.relay = relay_address(client.call(answer))


def tear_down(client: NgClient, streams: list[Stream]) -> None:
    for number in range(len(streams)):
        # The relay may have reaped the call already, or be gone: nothing left to free.
        with contextlib.suppress(RelayError, TimeoutError):
            client.call(Delete(call_id=f"bench-relay-{number}"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextmanager
def relay_process(command: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            shlex.split(command),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def measure(target: str, args: argparse.Namespace, workdir: Path) -> Measured:
    ng = free_port()
    template = RTPENGINE_CMD if target == "rtpengine" else args.cloudpbx_cmd
    command = template.format(
        ng=ng,
        low=args.port_min,
        high=args.port_max,
        workdir=workdir,
    )
    log = workdir / f"{target}.log"
    streams = [Stream.open(number) for number in range(args.streams)]
    client = NgClient(("127.0.0.1", ng))
    try:
        with relay_process(command, log) as process:
            client.wait_ready(10.0)
            set_up(client, streams)
            run_load(streams, args.warmup_s)
            before = cpu_seconds(process.pid)
            load = run_load(streams, args.seconds)
            cpu_s = cpu_seconds(process.pid) - before
            if process.poll() is not None:
                raise RelayError(f"{target} died during the run (log: {log})")
            tear_down(client, streams)
    finally:
        client.close()
        for stream in streams:
            stream.close()
    return Measured(load, cpu_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def show(target: str, measured: Measured) -> None:
    load = measured.load
    directions = ", ".join(
        f"{name} {received}/{sent}" for name, (sent, received) in load.per_direction.items()
    )
    print(
        f"{target}: offered {load.rate:,.0f} packets/s, forwarded {measured.forwarded:,}"
        f" of {load.sent:,} ({directions}), misrouted {load.misrouted},"
        f" loss {100 * load.loss:.3f} %, cpu {measured.cpu_s:.2f} s"
        f" = {measured.us_per_packet:.2f} us/packet"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=TARGETS, help="measure one side only")
    parser.add_argument("--streams", type=int, default=1000, help="two-way streams (1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured load (10)")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="load before measuring (2)")
    # Below Linux's ephemeral range (32768-60999): the load's own sockets take ports there.
    parser.add_argument("--port-min", type=int, default=20000, help="relay ports (20000)")
    parser.add_argument("--port-max", type=int, default=29999, help="relay ports (29999)")
    parser.add_argument("--cloudpbx-cmd", default=CLOUDPBX_CMD, help="relay command template")
    args = parser.parse_args()
    results: dict[str, Measured] = {}
    if args.only != "rtpengine":
        print(f"cloudpbx: measuring {prepare_build(args.cloudpbx_cmd)}")
    with tempfile.TemporaryDirectory(prefix="cloudpbx-bench-relay-") as folder:
        for target in TARGETS:
            if args.only not in (None, target):
                continue
            results[target] = measure(target, args, Path(folder))
            show(target, results[target])
    ours, theirs = results.get("cloudpbx"), results.get("rtpengine")
    x = f"{ours.us_per_packet:.2f}" if ours else "n/a"
    y = f"{theirs.us_per_packet:.2f}" if theirs else "n/a"
    loss = f"{100 * ours.load.loss:.3f}%" if ours else "n/a"
    ratio = f"{ours.us_per_packet / theirs.us_per_packet:.2f}" if ours and theirs else "n/a"
    print(
        f"RESULT relay cloudpbx_us_per_pkt={x} rtpengine_us_per_pkt={y} loss={loss} ratio={ratio}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
