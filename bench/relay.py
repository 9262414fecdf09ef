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
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sipbench.edge import prepare_build
from sipbench.relays import (
    CLOUDPBX_CMD,
    RTPENGINE_CMD,
    NgClient,
    RelayError,
    free_port,
    relay_process,
    set_up,
    tear_down,
)
from sipbench.rtpload import LoadResult, Stream, run_load

TARGETS = ("cloudpbx", "rtpengine")
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


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
            client.wait_ready(30.0)
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
