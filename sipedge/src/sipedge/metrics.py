"""Prometheus metrics of the edge: registrations, calls, SIP traffic, auth, transactions.

One :class:`Metrics` object per process owns its own registry (no module globals, so
tests can build as many as they like). Traffic counters are labelled by method and
status class; what belongs to a tenant (registrations, calls, auth failures) is
labelled by tenant name. With several worker processes each serves its own
``/metrics`` port (``metrics_port + worker index``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from sipedge.sip.parser import KNOWN_METHODS


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests_in: dict[str, Any] = {}
        self._requests_out: dict[str, Any] = {}
        self._responses_in: dict[str, Any] = {}
        self._responses_out: dict[str, Any] = {}
        self._challenges: dict[str, Any] = {}
        self.requests_in = Counter(
            "sip_requests_received", "SIP requests received", ["method"], registry=r
        )
        self.requests_out = Counter(
            "sip_requests_sent", "SIP requests sent", ["method"], registry=r
        )
        self.responses_in = Counter(
            "sip_responses_received", "SIP responses received", ["class"], registry=r
        )
        self.responses_out = Counter(
            "sip_responses_sent", "SIP responses sent", ["class"], registry=r
        )
        self.parse_errors = Counter(
            "sip_parse_errors", "Messages refused by the parser", registry=r
        )
        self.strays = Counter(
            "sip_stray_responses", "Responses matching no transaction", registry=r
        )
        self.transactions = Counter(
            "sip_server_transactions", "Server transactions started", registry=r
        )
        self.challenges = Counter(
            "sip_challenges",
            "401/407 challenges sent without a transaction",
            ["method"],
            registry=r,
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

    # Hot path: one dict lookup per message instead of a labels() call (about 8 us each).
    def request_in(self, method: str) -> None:
        _child(self._requests_in, self.requests_in, _method(method)).inc()

    def request_out(self, method: str) -> None:
        _child(self._requests_out, self.requests_out, _method(method)).inc()

    def response_in(self, status: int) -> None:
        _child(self._responses_in, self.responses_in, _CLASSES[status // 100]).inc()

    def response_out(self, status: int) -> None:
        _child(self._responses_out, self.responses_out, _CLASSES[status // 100]).inc()

    def parse_error(self) -> None:
        self.parse_errors.inc()

    def stray_response(self) -> None:
        self.strays.inc()

    def challenged(self, method: str) -> None:
        _child(self._challenges, self.challenges, _method(method)).inc()

    def transaction_started(self) -> None:
        self.transactions.inc()

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


_CLASSES = {n: f"{n}xx" for n in range(1, 7)}


def _child(cache: dict[str, Any], counter: Counter, label: str) -> Any:
    child = cache.get(label)
    if child is None:
        child = cache[label] = counter.labels(label)
    return child


def _method(method: str) -> str:
    """Unknown methods share one label: a peer must not grow our label set."""
    return method if method in KNOWN_METHODS else "other"
