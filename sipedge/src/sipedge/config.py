"""The edge's configuration: where it listens, what it advertises, which stores it uses.

One frozen value built once at start-up (from the command line, or by ``cloudpbx
dev``) and passed down; nothing reads a global. The media relays the edge anchors calls
on are listed here too (none: media is never anchored). Addresses the edge *binds* and the
address it *advertises* in Via, Contact and Record-Route are separate settings: a pod
binds 0.0.0.0 and advertises its Service's address.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from sipedge.media import RelayAddress
from sipedge.sip.transaction import TimerConfig


@dataclass(frozen=True, slots=True)
class Listen:
    """One listener: ``udp`` or ``tcp`` on a host (IPv4 or IPv6 literal) and port."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """``udp:127.0.0.1:5060``, ``tcp:[::1]:5060``."""
        transport, _, rest = text.partition(":")
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if transport.lower() not in ("udp", "tcp") or not host or not port.isdigit():
            raise ValueError(f"bad listen address {text!r} (want udp:HOST:PORT or tcp:HOST:PORT)")
        return cls(transport.upper(), host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"

    # Pickled to the edge's workers; compiled by mypyc, a frozen dataclass unpickles
    # through its own __setattr__ and fails: rebuild it through __init__.
    def __reduce__(self) -> tuple[type[Listen], tuple[str, str, int]]:
        return (type(self), (self.transport, self.host, self.port))


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Everything an edge process needs to know."""

    listens: tuple[Listen, ...]
    #: A folder of manifests (``cloudpbx dev``, or a pod given them); ``None``: the tenants
    #: are the snapshots the operator publishes in Redis (needs ``redis_url``).
    manifests: Path | None
    #: ``None``: in-process memory stores (the embedded default); else a redis:// URL.
    redis_url: str | None = None
    #: The host put in Via, Contact and Record-Route; defaults to the first listener's.
    advertise: str | None = None
    workers: int = 1
    #: Names this process's worker group (set by the parent that spawns the workers):
    #: responses reaching the wrong worker are handed over within the group.
    worker_group: str | None = None
    #: Shared by every edge process so that any of them can verify any nonce.
    nonce_secret: bytes = b"cloudpbx-dev-nonce-secret-change-me"
    nonce_ttl_s: float = 300.0
    #: Digest algorithms challenged with, most preferred first (see sipedge.authn).
    digest_algorithms: tuple[str, ...] = ("MD5",)
    metrics_port: int | None = None
    #: Keep-alive OPTIONS to NATed UDP bindings (RFC 3261 §10; NAT pinholes close).
    keepalive_interval_s: float = 25.0
    #: Graceful shutdown: how long to let transactions and calls finish.
    drain_s: float = 5.0
    timers: TimerConfig = field(default_factory=TimerConfig)
    user_agent: str = "cloudpbx-edge"
    #: Media relays (ng control addresses). None: no call's media is anchored, whatever
    #: its tenant's ``media.anchor`` says.
    relays: tuple[RelayAddress, ...] = ()
    #: An ng command is sent up to ``relay_tries`` times, ``relay_timeout_s`` apart, as
    #: Kamailio's rtpengine module does (``rtpengine_retr``, ``rtpengine_tout_ms``).
    relay_timeout_s: float = 1.0
    relay_tries: int = 5
    #: Seconds between health pings to every relay (a down relay is skipped).
    relay_ping_interval_s: float = 10.0
    #: The billing store (contracts.stores.url): prepaid credit control and CDRs. None:
    #: no prepaid tenant's call can be made (503).
    billing_url: str | None = None
    #: Talk time a prepaid call holds ahead (sipedge.calls.credit.SLICE_S).
    credit_slice_s: int = 60
    #: A trunk registration's lease (sipedge.registrations): held this long unless
    #: renewed, renewed this often (None: a third of the TTL). Another edge takes a
    #: dead holder's trunks over within about the TTL.
    trunk_lease_ttl_s: float = 30.0
    trunk_lease_renew_s: float | None = None
    #: The first wait after a failed trunk registration (None: sipedge.trunking's).
    trunk_backoff_base_s: float | None = None
    #: Serve only these tenants' snapshots (an edge dedicated to a tenant: issue 7's
    #: ``spec.isolation: dedicated``); empty: every tenant published.
    only_tenants: tuple[str, ...] = ()
    #: The DNS server (host, port) every lookup of a trunk's provider goes to
    #: (sipedge.adapters.dns); None: the system's resolver.
    dns_server: tuple[str, int] | None = None

    def __reduce__(self) -> tuple[type[EdgeConfig], tuple[object, ...]]:
        """Rebuilt through __init__ when unpickled (see :meth:`Listen.__reduce__`)."""
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

    @property
    def advertised_host(self) -> str:
        return self.advertise or self.listens[0].host
