"""The relay's Prometheus metrics, read from a snapshot the event loop takes once a second.

Packets are counted as plain integers by the session core (:mod:`mediarelay.session`) and
the media adapter, never through ``prometheus_client`` on the packet path (a Counter takes
a lock per ``inc()``). The scrape runs in the HTTP server's thread, so it reads only
:class:`Snapshot` values, which the loop replaces whole: it never walks live dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mediarelay.session import DropReason, RelayCounters


@dataclass(frozen=True, slots=True)
class AdapterCounters:
    """What the sockets saw before the session core: STUN and packets of no known kind."""

    stun_answered: int = 0
    stun_dropped: int = 0
    malformed: int = 0
    send_errors: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    relay: RelayCounters | None = None
    adapter: AdapterCounters = field(default_factory=AdapterCounters)


class RelayMetrics(Collector):
    """Sessions, packets and bytes per direction, drops by reason, latching, port pool."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 - a pod's port
        start_http_server(port, addr=host, registry=self.registry)

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        relay, adapter = snapshot.relay, snapshot.adapter
        if relay is not None:
            yield from _relay_families(relay)
        stun = CounterMetricFamily("relay_stun", "STUN requests by outcome", labels=["outcome"])
        stun.add_metric(["answered"], adapter.stun_answered)
        stun.add_metric(["dropped"], adapter.stun_dropped)
        yield stun
        yield CounterMetricFamily(
            "relay_malformed_packets", "Packets neither RTP/RTCP nor STUN", value=adapter.malformed
        )
        yield CounterMetricFamily(
            "relay_send_errors", "Datagrams the kernel refused to send", value=adapter.send_errors
        )


def _relay_families(relay: RelayCounters) -> Iterator[Metric]:
    sessions = GaugeMetricFamily("relay_sessions", "Calls with media on this relay")
    sessions.add_metric([], relay.sessions_active)
    yield sessions
    ended = CounterMetricFamily("relay_sessions_ended", "Calls ended, by how", labels=["how"])
    ended.add_metric(["deleted"], relay.sessions_deleted)
    ended.add_metric(["timed_out"], relay.sessions_expired)
    yield ended
    pool = GaugeMetricFamily("relay_port_pairs", "RTP/RTCP port pairs", labels=["state"])
    pool.add_metric(["in_use"], relay.port_pairs_in_use)
    pool.add_metric(["capacity"], relay.port_pairs_capacity)
    pool.add_metric(["unusable"], relay.port_pairs_unusable)
    yield pool
    media = relay.media
    packets = CounterMetricFamily("relay_packets", "Packets relayed", labels=["direction"])
    octets = CounterMetricFamily("relay_bytes", "UDP payload bytes relayed", labels=["direction"])
    for name, traffic in (
        ("caller_to_callee", media.caller_to_callee),
        ("callee_to_caller", media.callee_to_caller),
    ):
        packets.add_metric([name], traffic.packets)
        octets.add_metric([name], traffic.octets)
    yield packets
    yield octets
    drops = CounterMetricFamily("relay_drops", "Packets dropped, by reason", labels=["reason"])
    for reason in DropReason:
        drops.add_metric([reason.name.lower()], media.dropped(reason))
    yield drops
    latching = CounterMetricFamily("relay_latching", "Latching events", labels=["event"])
    latching.add_metric(["first"], media.first_latches)
    latching.add_metric(["relatch"], media.relatches)
    latching.add_metric(["fork_reset"], media.fork_resets)  # another fork answered
    yield latching
