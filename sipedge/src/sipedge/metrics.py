"""Prometheus metrics of the edge: registrations, calls, SIP traffic, auth, transactions,
the registrations of the trunks this process holds, and the provider servers that failed.

One :class:`Metrics` object per process owns its own registry (no module globals, so
tests can build as many as they like). Traffic counters are labelled by method and
status class; what belongs to a tenant (registrations, calls, auth failures) is
labelled by tenant name. With several worker processes each serves its own
``/metrics`` port (``metrics_port + worker index``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from contracts.trunk_status import STATES
from sipedge.sip.parser import KNOWN_METHODS


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Per-message traffic counters are plain integers read when /metrics is scraped:
        # a prometheus_client Counter takes a lock on every inc(), which the edge would
        # pay several times per message (bench/edge_pipeline.py).
        self._requests_in = _Tally("sip_requests_received", "SIP requests received", "method")
        self._requests_out = _Tally("sip_requests_sent", "SIP requests sent", "method")
        self._responses_in = _Tally("sip_responses_received", "SIP responses received", "class")
        self._responses_out = _Tally("sip_responses_sent", "SIP responses sent", "class")
        self._challenges = _Tally(
            "sip_challenges", "401/407 challenges sent without a transaction", "method"
        )
        self._transactions = _Tally("sip_server_transactions", "Server transactions started")
        r.register(
            _Tallies(
                self._requests_in,
                self._requests_out,
                self._responses_in,
                self._responses_out,
                self._challenges,
                self._transactions,
            )
        )
        self.parse_errors = Counter(
            "sip_parse_errors", "Messages refused by the parser", registry=r
        )
        self.strays = Counter(
            "sip_stray_responses", "Responses matching no transaction", registry=r
        )
        self.auth_failures = Counter(
            "sip_auth_failures", "Refused credentials", ["tenant"], registry=r
        )
        self.registrations = Gauge(
            "sip_registrations", "Registered bindings (this process's view)", ["tenant"], registry=r
        )
        self.register_ok = Counter(
            "sip_register_accepted", "REGISTERs accepted", ["tenant"], registry=r
        )
        self.active_calls = Gauge(
            "sip_active_calls", "Calls in progress on this process", ["tenant"], registry=r
        )
        self.calls = Counter(
            "sip_calls", "Calls ended, by outcome", ["tenant", "outcome"], registry=r
        )

        self.trunk_states = Gauge(
            "sip_trunk_registration_state",
            "1 for the state of a trunk's registration, 0 for the others (on its holder only)",
            ["tenant", "trunk", "state"],
            registry=r,
        )
        self.trunk_failures = Counter(
            "sip_trunk_register_failures",
            "Trunk registrations that failed (a refusal, timeout or unreachable registrar)",
            ["tenant", "trunk"],
            registry=r,
        )

        self.trunk_failovers = Counter(
            "sip_trunk_server_failovers",
            "Requests a provider's server failed (a 503, no answer, no connection) and that "
            "went on to its next server (RFC 3263 §4.3), by the server that failed",
            ["tenant", "trunk", "server", "method"],
            registry=r,
        )

    def trunk_server_failed(
        self, tenant: str, trunk: str, server: tuple[str, int], method: str
    ) -> None:
        """``server`` (address, port) of ``trunk`` failed ``method``; the next one is tried."""
        host, port = server
        self.trunk_failovers.labels(tenant, trunk, f"{host}:{port}", method).inc()

    def trunk_state(self, tenant: str, trunk: str, state: str | None) -> None:
        """The trunk's registration is in ``state``; None: this process no longer holds
        it (its series go, so that only the holder shows one)."""
        for each in STATES:
            if state is None:
                with contextlib.suppress(KeyError):
                    self.trunk_states.remove(tenant, trunk, each)
            else:
                self.trunk_states.labels(tenant, trunk, each).set(1 if each == state else 0)

    def trunk_failed(self, tenant: str, trunk: str) -> None:
        self.trunk_failures.labels(tenant, trunk).inc()

    def request_in(self, method: str) -> None:
        self._requests_in.add(_method(method))

    def request_out(self, method: str) -> None:
        self._requests_out.add(_method(method))

    def response_in(self, status: int) -> None:
        self._responses_in.add(_CLASSES[status // 100])

    def response_out(self, status: int) -> None:
        self._responses_out.add(_CLASSES[status // 100])

    def parse_error(self) -> None:
        self.parse_errors.inc()

    def stray_response(self) -> None:
        self.strays.inc()

    def challenged(self, method: str) -> None:
        self._challenges.add(_method(method))

    def transaction_started(self) -> None:
        self._transactions.add("")

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


_CLASSES = {n: f"{n}xx" for n in range(1, 7)}


class _Tally:
    """A counter family kept as integers by label value (``""``: the unlabelled one)."""

    __slots__ = ("counts", "documentation", "label", "name")

    def __init__(self, name: str, documentation: str, label: str = "") -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.counts: dict[str, int] = {}

    def add(self, value: str) -> None:
        counts = self.counts
        counts[value] = counts.get(value, 0) + 1

    def family(self) -> CounterMetricFamily:
        labels = [self.label] if self.label else []
        family = CounterMetricFamily(self.name, self.documentation, labels=labels)
        # sorted() copies the items in C under the GIL: the scrape thread never sees the
        # dict change under it.
        for value, count in sorted(self.counts.items()):
            family.add_metric([value] if self.label else [], count)
        if not self.label and not self.counts:
            family.add_metric([], 0)
        return family


class _Tallies(Collector):
    def __init__(self, *tallies: _Tally) -> None:
        self.tallies = tallies

    def collect(self) -> Iterator[Metric]:
        return (tally.family() for tally in self.tallies)


def _method(method: str) -> str:
    """Unknown methods share one label: a peer must not grow our label set."""
    return method if method in KNOWN_METHODS else "other"
