"""The relay's per-call decisions: where each packet goes, which is dropped, which call is idle.

Owns, sans-IO (no socket, no clock: ``now`` is a monotonic reading in seconds, passed in):

* **Sessions by offer/answer**, as rtpengine's ng ``offer`` and ``answer`` shape them
  (sipwise/rtpengine ``docs/ng_control_protocol.md``): a :class:`Session` per call-id with
  a caller :class:`Leg` (the from-tag of the first offer) and a callee leg, *pending*
  from the offer on (its ports must be in the offer sent on to the callee) and named by
  the to-tag of the latest answer (see forks). A leg's ports receive from its own phone:
  the SDP sent to a phone names that phone's leg's ports. Each m= line of a leg's SDP
  (:class:`MediaStream`) gets one RTP/RTCP port pair from the
  :class:`~mediarelay.portpool.PortPool`; streams pair up across legs by position (RFC
  3264 §6). A re-INVITE keeps a leg's ports (RFC 3264 §8: m= lines are never removed, only
  disabled with port 0); a changed SDP address is the new expected address.
* **Forks** (RFC 3261 §16.7: a proxy or our edge forks the INVITE to several phones, each
  answering with its own to-tag, RFC 3261 §12.1.2): every fork was offered the same callee
  ports, so an answer to the caller's offer from another to-tag — a second phone's 183
  with early media, or its 200 after the first one's 183 — takes the callee leg over: the
  latest answerer gets the call's media, as in rtpengine. The leg is re-tagged, its SDP
  replaced and its ports kept, so the caller's answer names the same relay ports each time
  (rtpengine gives every fork new ones, but the edge, a B2BUA, shows the caller a single
  dialog, and a caller keeps the first answer it gets: RFC 3261 §13.2.1). Every latch on
  the leg is reset: the new phone sends from another address, and until it latches the
  caller's media goes to its SDP address. The superseded phone's latched source may never
  latch that port again (unless it is the new SDP address): its late early media is
  dropped as :attr:`DropReason.NOT_LATCHED_PEER` instead of grabbing the port within the
  learning window. A superseded tag names no leg: an offer from it (a re-INVITE in the
  dead fork's dialog) is refused; an answer naming it as the to-tag is that fork
  answering again (183s from both, then the first one's 200) and takes the leg back.
* **Symmetric latching** (RFC 4961's motivation: a phone behind NAT is reached at the
  address it sends from, not the one its SDP names). Per local port: the first packet
  latches its source; within ``learning_window_s`` of that first packet any source may
  re-latch; afterwards only the SDP-advertised address may (a phone that moved), and every
  other source is dropped and counted (:attr:`DropReason.NOT_LATCHED_PEER`: RTP bleed and
  injection). A packet goes out of the other leg's port of the same stream and kind to
  that leg's latched source, else to its SDP address. A changed SDP address re-opens
  learning on that port: a phone that moved behind a new NAT advertises a private address
  it will never send from, so only a fresh latch can reach it (rtpengine issue #817).
* **RTCP** latches on its own port, by the same rules, and is sent to the other leg's
  latched RTCP source, else to its SDP RTCP address (``a=rtcp``, RFC 3605; else RTP + 1,
  RFC 3550 §11). It is *not* inferred as "latched RTP address, port + 1": a NAT maps the
  phone's RTCP port only once the phone sends from it — to us, which latches it anyway —
  and behind a carrier-grade NAT that guessed port on a shared address may belong to
  another subscriber, which would leak RTCP (SSRCs, CNAMEs) to a stranger.
* **Hold** (RFC 3264 §8.4): a leg whose SDP address is ``0.0.0.0`` or ``::`` is sent
  nothing (:attr:`DropReason.ON_HOLD`); a stream with port 0 is disabled (RFC 3264 §6).
* **Idle timeout**: a session whose latest activity — creation, an offer or answer, or a
  packet from a latched source — is ``idle_timeout_s`` old has expired; while a leg is on
  hold no media is expected, so ``hold_timeout_s`` applies (rtpengine's ``timeout`` and
  ``silent-timeout``, 60 s and 3600 s by default). Dropped packets never keep a session
  alive. :meth:`Sessions.reap` ends expired sessions, releases their ports and returns
  them so that the adapter tells the edge; :meth:`Sessions.next_deadline` is its timer.
* **Counters** (:class:`Counters`, :class:`RelayCounters`): packets and octets forwarded
  per direction, drops by reason, first latches, re-latches and resets by a fork's answer,
  sessions, port-pool use.

Speed: :meth:`Session.receive` runs per packet (100,000/s is the aim), so it is one dict
lookup (local port → the port's ``_Socket``, which holds its session, leg, stream, kind
and peer), one tuple comparison (source against the latched source), one attribute store
(last activity) and two counter increments, and it allocates nothing: the :class:`Forward`
it returns is preallocated per local port and updated when that port latches or its SDP
changes, and each :class:`Drop` is a singleton per reason. Counters exist only per
socket and per session; the global ones are summed when read (a scrape, not a packet).
The idle timers sit in a lazy heap that packets never touch: a popped deadline is checked
against the session's real last activity and pushed again if the session was busy.

Past ~400 lines on purpose (about half is types, docstrings and counters): the packet
path, the latching rules, the offer/answer updates and the registry's port index all share
one private ``_Socket`` per local port, and splitting them would turn its fields into a
cross-module interface that the per-packet path must not pay for.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeAlias

from mediarelay.portpool import PoolExhausted, PortPool

#: A UDP transport address as a socket reports it: (IP address text, port). An IPv6
#: socket's four-tuple must be cut to its first two items by the adapter.
Address: TypeAlias = tuple[str, int]


class Role(enum.Enum):
    """Which side of the call a leg is: created by the offer, or added by the answer."""

    CALLER = "caller"
    CALLEE = "callee"


class Kind(enum.Enum):
    """Which port of a stream's pair (RFC 3550 §11)."""

    RTP = "rtp"
    RTCP = "rtcp"


class DropReason(enum.IntEnum):
    """Why a packet was not forwarded. An IntEnum so that it indexes the drop counters."""

    UNKNOWN_PORT = 0  # no session owns the local port (ended, or never allocated)
    NOT_LATCHED_PEER = 1  # neither the latched source nor allowed to re-latch: bleed
    NO_DESTINATION = 2  # the other leg, or its stream, is not negotiated yet
    ON_HOLD = 3  # the other leg's SDP address is 0.0.0.0 or :: (RFC 3264 §8.4)
    STREAM_DISABLED = 4  # the other leg's m= line has port 0 (RFC 3264 §6)


@dataclass(frozen=True, slots=True)
class Drop:
    """Do not forward the packet; :attr:`reason` says why (one instance per reason)."""

    reason: DropReason


_DROP = {reason: Drop(reason) for reason in DropReason}
_UNKNOWN_PORT = _DROP[DropReason.UNKNOWN_PORT]
_NOT_LATCHED_PEER = _DROP[DropReason.NOT_LATCHED_PEER]
_NO_DESTINATION = _DROP[DropReason.NO_DESTINATION]


@dataclass(slots=True)
class Forward:
    """Send the packet from local port :attr:`from_port` to :attr:`destination`.

    One instance per local port, reused: read it before the next ``receive``, keep none.
    """

    from_port: int
    destination: Address


class PortPair(NamedTuple):
    """The relay's local ports of one stream, for the rewritten SDP."""

    rtp: int
    rtcp: int


@dataclass(frozen=True, slots=True)
class MediaStream:
    """One m= line as the relay needs it: the c= address and the RTP and RTCP ports.

    ``rtcp_port`` is ``a=rtcp`` (RFC 3605) when the SDP has one, else RTP + 1 (RFC 3550
    §11). Port 0 disables the stream (RFC 3264 §6); address ``0.0.0.0`` or ``::`` puts it
    on hold (RFC 3264 §8.4). The address is stored in its canonical text form, the one a
    socket reports sources in. :attr:`on_hold` is computed: whether the address is
    unspecified (send this leg nothing).
    """

    address: str
    rtp_port: int
    rtcp_port: int | None = None
    on_hold: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            canonical = str(ipaddress.ip_address(self.address))
        except ValueError:
            raise ValueError(f"SDP address {self.address!r} is not an IP address") from None
        object.__setattr__(self, "address", canonical)
        object.__setattr__(self, "on_hold", ipaddress.ip_address(canonical).is_unspecified)
        if not 0 <= self.rtp_port <= 0xFFFF:
            raise ValueError(f"SDP RTP port {self.rtp_port} is outside 0–65535")
        if self.rtcp_port is None:
            implied = self.rtp_port + 1 if self.rtp_port else 0
            if implied > 0xFFFF:
                raise ValueError("SDP RTP port 65535 leaves no RTCP port: give rtcp_port")
            object.__setattr__(self, "rtcp_port", implied)
        elif not 0 <= self.rtcp_port <= 0xFFFF:
            raise ValueError(f"SDP RTCP port {self.rtcp_port} is outside 0–65535")

    @property
    def disabled(self) -> bool:
        """Whether the m= line's port is 0 (RFC 3264 §6)."""
        return self.rtp_port == 0

    def advertised(self, kind: Kind) -> Address:
        """The address this stream's RTP or RTCP is to be sent to, per the SDP."""
        if kind is Kind.RTP:
            return (self.address, self.rtp_port)
        rtcp = self.rtcp_port if self.rtcp_port is not None else self.rtp_port + 1
        return (self.address, rtcp)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Latching and timeout settings (seconds)."""

    learning_window_s: float = 3.0
    idle_timeout_s: float = 60.0
    hold_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.learning_window_s < 0:
            raise ValueError(f"learning_window_s must be ≥ 0, not {self.learning_window_s}")
        if self.idle_timeout_s <= 0 or self.hold_timeout_s <= 0:
            raise ValueError("idle_timeout_s and hold_timeout_s must be positive")


class NegotiationError(ValueError):
    """An offer or answer the relay cannot apply; ``reason`` fits an ng ``error-reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownCall(NegotiationError):
    """An answer for a call-id without a session (rtpengine: "Unknown call-id")."""


# --- counters ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Traffic:
    """Packets and octets (UDP payload) forwarded in one direction."""

    packets: int = 0
    octets: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.packets + other.packets, self.octets + other.octets)


_NO_DROPS = (0,) * len(DropReason)


@dataclass(frozen=True, slots=True)
class Counters:
    """A session's (or the relay's) media counters. ``drops`` is indexed by DropReason."""

    caller_to_callee: Traffic = Traffic()
    callee_to_caller: Traffic = Traffic()
    drops: tuple[int, ...] = _NO_DROPS
    first_latches: int = 0
    relatches: int = 0
    #: Callee legs taken over by another fork's answer, each resetting the leg's latches.
    fork_resets: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.caller_to_callee + other.caller_to_callee,
            self.callee_to_caller + other.callee_to_caller,
            tuple(a + b for a, b in zip(self.drops, other.drops, strict=True)),
            self.first_latches + other.first_latches,
            self.relatches + other.relatches,
            self.fork_resets + other.fork_resets,
        )

    def dropped(self, reason: DropReason) -> int:
        """How many packets were dropped for ``reason``."""
        return self.drops[reason]


@dataclass(frozen=True, slots=True)
class RelayCounters:
    """The whole relay's counters: sessions, port-pool use (in pairs) and media."""

    sessions_active: int
    sessions_started: int
    sessions_deleted: int
    sessions_expired: int
    port_pairs_in_use: int
    port_pairs_capacity: int
    media: Counters
    #: Pairs set aside because the adapter could not bind them (see Sessions.unusable).
    port_pairs_unusable: int = 0


# --- one local port ----------------------------------------------------------------------


class _Socket:
    """One local port of a leg's stream: what its SDP says, what was learned, where to send.

    ``forward``/``blocked`` describe sending *to* this port's remote side: the packets a
    peer port receives go out through here. ``superseded`` is what the phone of a fork
    whose answer was superseded had latched here: it may not latch again.
    """

    __slots__ = (
        "advertised",
        "blocked",
        "forward",
        "kind",
        "latched",
        "learn_until",
        "leg",
        "local_port",
        "media",
        "octets",
        "packets",
        "peer",
        "session",
        "stream",
        "superseded",
    )

    def __init__(self, leg: Leg, stream: int, kind: Kind, port: int, media: MediaStream) -> None:
        self.session = leg.session
        self.leg = leg
        self.stream = stream
        self.kind = kind
        self.local_port = port
        self.media = media
        self.advertised = media.advertised(kind)
        self.latched: Address | None = None
        self.learn_until = 0.0
        self.superseded: Address | None = None
        self.peer: _Socket | None = None
        self.forward = Forward(port, self.advertised)
        self.blocked: Drop | None = None
        self.packets = 0
        self.octets = 0
        _refresh(self)


def _refresh(sock: _Socket) -> None:
    """Recompute where packets for ``sock``'s remote side go, after a latch or new SDP."""
    if sock.leg.pending or sock.media is _UNANSWERED:
        sock.blocked = _NO_DESTINATION  # the answer has not said where yet
    elif sock.media.disabled:
        sock.blocked = _DROP[DropReason.STREAM_DISABLED]
    elif sock.media.on_hold:
        sock.blocked = _DROP[DropReason.ON_HOLD]
    else:
        sock.blocked = None
        sock.forward.destination = sock.latched or sock.advertised


def _readvertise(sock: _Socket, media: MediaStream) -> None:
    """Apply a new SDP to ``sock``; a changed address re-opens learning (module docstring)."""
    sock.media = media
    advertised = media.advertised(sock.kind)
    if advertised != sock.advertised:
        sock.advertised = advertised
        sock.latched = None
        sock.learn_until = 0.0
    _refresh(sock)


def _take_over(leg: Leg, tag: str, latched: dict[_Socket, Address | None]) -> None:
    """Give the callee's leg, its new SDP applied, to the answerer ``tag``: the first, or
    another fork (module docstring), whose phone must latch afresh; ``latched`` is what
    the superseded fork's phone had latched, taken before its SDP was replaced."""
    session = leg.session
    fork = not leg.pending
    if fork:
        session.superseded.add(leg.tag)
        session.fork_resets += 1
    session.superseded.discard(tag)
    leg.tag = tag
    for sock in leg._sockets():
        if fork:
            sock.superseded = latched.get(sock)
            sock.latched = None
            sock.learn_until = 0.0
        _refresh(sock)  # the answer's SDP address, until the phone latches


def _learn(sock: _Socket, source: Address, now: float) -> bool:
    """Latch ``source`` if the rules allow it (module docstring); whether they did.

    Past the learning window a stranger costs the same two comparisons as ever: the
    superseded fork's source is only looked at where it could otherwise latch."""
    session = sock.session
    if sock.latched is None:
        if source == sock.superseded and source != sock.advertised:
            return False
        sock.learn_until = now + session.config.learning_window_s
        session.first_latches += 1
    elif source == sock.advertised or (now < sock.learn_until and source != sock.superseded):
        session.relatches += 1
    else:
        return False
    sock.latched = source
    _refresh(sock)
    return True


def _relay(sock: _Socket, source: Address, size: int, now: float) -> Forward | Drop:
    """The packet path: latch check, activity, destination, counters. Allocates nothing."""
    session = sock.session
    if source != sock.latched and not _learn(sock, source, now):
        return session._count_drop(_NOT_LATCHED_PEER)
    session.last_active_s = now
    peer = sock.peer
    if peer is None:
        return session._count_drop(_NO_DESTINATION)
    blocked = peer.blocked
    if blocked is not None:
        return session._count_drop(blocked)
    sock.packets += 1
    sock.octets += size
    return peer.forward


# --- legs and sessions -------------------------------------------------------------------


class Leg:
    """One side of a call: its SIP tag, its SDP streams and the relay's ports for them."""

    def __init__(self, session: Session, tag: str, role: Role) -> None:
        self.session = session
        self.tag = tag
        self.role = role
        self._streams: list[tuple[_Socket, _Socket]] = []

    @property
    def pending(self) -> bool:
        """Whether this is the answerer's leg before the answer: ports, no tag, no SDP."""
        return not self.tag

    @property
    def media(self) -> tuple[MediaStream, ...]:
        """The SDP streams, in m= line order."""
        return tuple(rtp.media for rtp, _ in self._streams)

    @property
    def ports(self) -> tuple[PortPair, ...]:
        """The relay's local ports per stream, to put in the SDP sent to the other side."""
        return tuple(PortPair(rtp.local_port, rtcp.local_port) for rtp, rtcp in self._streams)

    def latched(self, stream: int, kind: Kind) -> Address | None:
        """The source latched on a stream's RTP or RTCP port, if any."""
        return self._socket(stream, kind).latched

    def traffic(self, kind: Kind | None = None) -> Traffic:
        """What this leg sent that was forwarded, over all its streams (of ``kind`` only,
        RTP or RTCP, when given)."""
        sockets = [s for s in self._sockets() if kind is None or s.kind is kind]
        return Traffic(sum(s.packets for s in sockets), sum(s.octets for s in sockets))

    def _socket(self, stream: int, kind: Kind) -> _Socket:
        rtp, rtcp = self._streams[stream]
        return rtp if kind is Kind.RTP else rtcp

    def _sockets(self) -> Iterator[_Socket]:
        for pair in self._streams:
            yield from pair


class Session:
    """One call's relay state: a caller leg, a callee leg once answered, counters, activity."""

    def __init__(self, call_id: str, caller_tag: str, config: SessionConfig, now: float) -> None:
        self.call_id = call_id
        self.config = config
        self.created_s = now
        self.last_active_s = now
        self.caller = Leg(self, caller_tag, Role.CALLER)
        self.callee: Leg | None = None
        self.first_latches = 0
        self.relatches = 0
        self.fork_resets = 0
        #: Tags whose answer a later fork's superseded: they name no leg any more.
        self.superseded: set[str] = set()
        self._drops = list(_NO_DROPS)
        self._by_port: dict[int, _Socket] = {}
        self._timer = -1  # the sequence of its live entry in Sessions' timer heap

    def receive(self, local_port: int, source: Address, size: int, now: float) -> Forward | Drop:
        """Where a ``size``-octet datagram from ``source`` to ``local_port`` goes, if anywhere."""
        sock = self._by_port.get(local_port)
        if sock is None:
            return self._count_drop(_UNKNOWN_PORT)
        return _relay(sock, source, size, now)

    def _count_drop(self, drop: Drop) -> Drop:
        """Count ``drop`` against this session and return it."""
        self._drops[drop.reason] += 1
        return drop

    @property
    def legs(self) -> tuple[Leg, ...]:
        """The caller's leg, and the callee's once answered."""
        return (self.caller,) if self.callee is None else (self.caller, self.callee)

    def leg(self, tag: str) -> Leg | None:
        """The leg with SIP tag ``tag``, if any (never the pending one)."""
        return next((leg for leg in self.legs if tag and leg.tag == tag), None)

    def no_leg(self, tag: str) -> str:
        """Why ``tag`` names none of this call's legs, for an error reason."""
        if tag in self.superseded and self.callee is not None:
            return (
                f"tag {tag!r} answered, but a later fork's answer ({self.callee.tag!r}) "
                "took the callee leg over"
            )
        legs = ", ".join(repr(leg.tag) for leg in self.legs)
        return f"tag {tag!r} is neither of its legs ({legs})"

    def other_leg(self, leg: Leg) -> Leg:
        """The far side of ``leg``. A leg's own ports receive from its phone, so they go
        into the SDP sent *to* that phone: an offer from ``leg`` is forwarded with the
        other leg's ports, and the answer comes back with ``leg``'s."""
        other = self.callee if leg is self.caller else self.caller
        if other is None:
            raise NegotiationError(f"call {self.call_id!r} has no leg opposite {leg.tag!r}")
        return other

    @property
    def on_hold(self) -> bool:
        """Whether some leg holds some stream (RFC 3264 §8.4): the longer timeout applies."""
        return any(
            media.on_hold and media is not _UNANSWERED for leg in self.legs for media in leg.media
        )

    @property
    def deadline_s(self) -> float:
        """When the session expires unless something happens before."""
        timeout = self.config.hold_timeout_s if self.on_hold else self.config.idle_timeout_s
        return self.last_active_s + timeout

    def expired(self, now: float) -> bool:
        """Whether nothing happened for the idle (or hold) timeout."""
        return now >= self.deadline_s

    def counters(self) -> Counters:
        """Traffic per direction, drops by reason and latching events of this call."""
        callee = self.callee.traffic() if self.callee is not None else Traffic()
        return Counters(
            self.caller.traffic(),
            callee,
            tuple(self._drops),
            self.first_latches,
            self.relatches,
            self.fork_resets,
        )


def _set_media(leg: Leg, media: Sequence[MediaStream], new_ports: Sequence[int]) -> None:
    """Apply a leg's new SDP: existing streams keep their ports, new ones take ``new_ports``."""
    for stream, pair in zip(media, leg._streams, strict=False):
        for sock in pair:
            _readvertise(sock, stream)
    for index, port in enumerate(new_ports, start=len(leg._streams)):
        pair = (
            _Socket(leg, index, Kind.RTP, port, media[index]),
            _Socket(leg, index, Kind.RTCP, port + 1, media[index]),
        )
        leg._streams.append(pair)
        for sock in pair:
            leg.session._by_port[sock.local_port] = sock
    _link(leg.session)


def _link(session: Session) -> None:
    """Pair each port with the other leg's port of the same stream and kind."""
    if session.callee is None:
        return
    for ours, theirs in zip(session.caller._streams, session.callee._streams, strict=False):
        for a, b in zip(ours, theirs, strict=True):
            a.peer, b.peer = b, a


#: A stream the answerer has not described yet: no address, port 0 (disabled).
_UNANSWERED = MediaStream("0.0.0.0", 0)  # noqa: S104 - an SDP value, nothing binds it


def _missing(leg: Leg, streams: int) -> int:
    """How many of ``streams`` the leg has no ports for yet."""
    return max(0, streams - len(leg._streams))


class PortClaims(Protocol):
    """The adapter's side of allocation: bind a pair's sockets before an SDP names them."""

    def claim(self, rtp_port: int) -> bool:
        """Bind ``rtp_port`` and ``rtp_port + 1``; False (nothing kept) if either is taken."""
        ...

    def release(self, rtp_port: int) -> None:
        """Close what :meth:`claim` bound for the pair (no-op if nothing is open)."""
        ...


class PortOwner(NamedTuple):
    """Who a local port belongs to."""

    session: Session
    leg: Leg
    stream: int
    kind: Kind


class Sessions:
    """Every call on this relay, by call-id and by local port; ports come from ``pool``."""

    def __init__(
        self,
        pool: PortPool,
        config: SessionConfig | None = None,
        claims: PortClaims | None = None,
    ) -> None:
        self.pool = pool
        self.config = config or SessionConfig()
        self._claims = claims
        #: Pairs the adapter could not bind (another process holds a port): kept out of
        #: the pool, so that no SDP ever names a port nobody listens on.
        self.unusable: list[int] = []
        self._calls: dict[str, Session] = {}
        self._by_port: dict[int, _Socket] = {}
        self._timers: list[tuple[float, int, Session]] = []
        self._sequence = itertools.count()
        self._retired = Counters()
        self._unknown_port = 0
        self._started = self._deleted = self._expired = 0

    def __len__(self) -> int:
        return len(self._calls)

    def get(self, call_id: str) -> Session | None:
        """The live session of ``call_id``, if any."""
        return self._calls.get(call_id)

    def owner(self, local_port: int) -> PortOwner | None:
        """The session, leg, stream and kind a local port serves, if any."""
        sock = self._by_port.get(local_port)
        if sock is None:
            return None
        return PortOwner(sock.session, sock.leg, sock.stream, sock.kind)

    def receive(self, local_port: int, source: Address, size: int, now: float) -> Forward | Drop:
        """Where a ``size``-octet datagram from ``source`` to ``local_port`` goes, if anywhere.

        The per-packet entry point (see the module docstring for its cost).
        """
        sock = self._by_port.get(local_port)
        if sock is None:
            self._unknown_port += 1
            return _UNKNOWN_PORT
        return _relay(sock, source, size, now)

    def offer(
        self, call_id: str, from_tag: str, media: Sequence[MediaStream], now: float
    ) -> tuple[PortPair, ...]:
        """ng ``offer``: the offerer's (``from_tag``) SDP; returns its leg's relay ports.

        A new call-id creates the session with ``from_tag`` as the caller, and with the
        callee's leg *pending*: its ports are allocated now, because the offer that goes
        on to the callee must already name them (:meth:`other_leg`), while its tag and SDP
        come with the answer. A re-offer from either leg updates that leg and keeps its
        ports; streams it adds get ports on both legs. Raises
        :class:`~mediarelay.portpool.PoolExhausted` or :class:`NegotiationError` having
        changed nothing.
        """
        session = self._calls.get(call_id)
        if session is None:
            session = Session(call_id, from_tag, self.config, now)
            self._reserve(len(media) * 2)
            try:
                self._negotiate(session.caller, media)
                session.callee = Leg(session, "", Role.CALLEE)
                self._pad(session.callee, len(media))
            except Exception:
                self._discard(session)  # e.g. a pair set aside left too few: give all back
                raise
            self._calls[call_id] = session
            self._started += 1
            self._touch(session, now)
            return session.caller.ports
        leg = session.leg(from_tag)
        if leg is None:
            raise NegotiationError(f"offer for call {call_id!r}: {session.no_leg(from_tag)}")
        other = session.other_leg(leg)
        self._reserve(_missing(leg, len(media)) + _missing(other, len(media)))
        self._negotiate(leg, media)
        self._pad(other, len(media))
        self._touch(session, now)
        return leg.ports

    def answer(
        self, call_id: str, from_tag: str, to_tag: str, media: Sequence[MediaStream], now: float
    ) -> tuple[PortPair, ...]:
        """ng ``answer``: the answerer's (``to_tag``) SDP; returns its leg's relay ports.

        The first answer gives the pending callee leg its tag and SDP; a later one (to a
        re-offer) updates a leg. An answer to the caller's offer from another to-tag is
        another fork's: it takes the callee leg over, ports kept, latches reset (module
        docstring). Raises :class:`NegotiationError` or
        :class:`~mediarelay.portpool.PoolExhausted` having changed nothing.
        """
        session = self._calls.get(call_id)
        if session is None:
            raise UnknownCall(f"answer for unknown call-id {call_id!r}")
        offerer, leg = session.leg(from_tag), session.leg(to_tag)
        if offerer is None or offerer is leg:
            why = "" if offerer is not None else f" ({session.no_leg(from_tag)})"
            raise NegotiationError(
                f"answer for call {call_id!r} names from-tag {from_tag!r} and to-tag "
                f"{to_tag!r}: the from-tag must be the offering leg, the to-tag the other{why}"
            )
        if leg is None:
            if offerer is not session.caller or session.callee is None:
                raise NegotiationError(
                    f"answer for call {call_id!r} to the offer of {from_tag!r} names to-tag "
                    f"{to_tag!r}: only the caller's offer is forked; {session.no_leg(to_tag)}"
                )
            leg = session.callee  # pending, or answered by another fork: it takes over
        # Read before the new SDP may reset them: the sources a superseded fork latched.
        latched = {sock: sock.latched for sock in leg._sockets()}
        self._reserve(_missing(leg, len(media)) + _missing(offerer, len(media)))
        self._negotiate(leg, media)
        if leg.tag != to_tag:
            _take_over(leg, to_tag, latched)
        self._pad(offerer, len(media))
        self._touch(session, now)
        return leg.ports

    def delete(self, call_id: str) -> Session | None:
        """ng ``delete``: end the call and release its ports; the ended session, if any."""
        session = self._calls.get(call_id)
        if session is not None:
            self._end(session)
            self._deleted += 1
        return session

    def reap(self, now: float) -> list[Session]:
        """End and return the sessions idle past their timeout (the edge is to be told)."""
        reaped: list[Session] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, sequence, session = heapq.heappop(timers)
            if session._timer != sequence:
                continue  # superseded by a later timer, or the session has ended
            if session.expired(now):
                self._end(session)
                self._expired += 1
                reaped.append(session)
            else:
                self._schedule(session)
        return reaped

    def next_deadline(self) -> float | None:
        """When :meth:`reap` may next have work (early is harmless); None without sessions."""
        return self._timers[0][0] if self._timers else None

    def counters(self) -> RelayCounters:
        """Every counter, summed now over live and ended sessions."""
        media = sum((s.counters() for s in self._calls.values()), self._retired)
        unknown = [0] * len(DropReason)
        unknown[DropReason.UNKNOWN_PORT] = self._unknown_port
        return RelayCounters(
            sessions_active=len(self._calls),
            sessions_started=self._started,
            sessions_deleted=self._deleted,
            sessions_expired=self._expired,
            port_pairs_in_use=self.pool.in_use - len(self.unusable),
            port_pairs_capacity=self.pool.capacity,
            port_pairs_unusable=len(self.unusable),
            media=media + Counters(drops=tuple(unknown)),
        )

    def _negotiate(self, leg: Leg, media: Sequence[MediaStream]) -> None:
        """Allocate ports for new streams, then apply ``media``; on any error change nothing."""
        have = len(leg._streams)
        if len(media) < have:
            raise NegotiationError(
                f"the SDP of tag {leg.tag!r} has {len(media)} m= lines where it had {have}: "
                "streams are never removed, only disabled with port 0 (RFC 3264 §8)"
            )
        ports = self._allocate(len(media) - have)
        _set_media(leg, media, ports)
        for port in ports:
            self._by_port[port] = leg.session._by_port[port]
            self._by_port[port + 1] = leg.session._by_port[port + 1]

    def _reserve(self, pairs: int) -> None:
        """Refuse up front what the pool cannot give: a negotiation changes all or nothing."""
        if pairs > self.pool.available:
            raise PoolExhausted(self.pool.low, self.pool.high, self.pool.capacity)

    def _pad(self, leg: Leg, streams: int) -> None:
        """Give ``leg`` ports for the streams the other side added (disabled until its own
        SDP says more: RFC 3264 §6, port 0)."""
        missing = _missing(leg, streams)
        if missing:
            self._negotiate(leg, [*leg.media, *(_UNANSWERED for _ in range(missing))])

    def _touch(self, session: Session, now: float) -> None:
        """Signalling is activity: push the session's deadline out and re-arm its timer."""
        session.last_active_s = max(session.last_active_s, now)
        self._schedule(session)

    def _allocate(self, count: int) -> list[int]:
        """``count`` pairs' RTP ports, each claimed by the adapter, or none: a failure
        gives back what it took. A pair the adapter cannot claim is set aside."""
        ports: list[int] = []
        try:
            for _ in range(count):
                ports.append(self._claimed_pair())
        except Exception:
            for port in ports:
                self._release(port)
            raise
        return ports

    def _claimed_pair(self) -> int:
        while True:
            port = self.pool.allocate()  # PoolExhausted once every pair is used or unusable
            if self._claims is None or self._claims.claim(port):
                return port
            self.unusable.append(port)

    def _discard(self, session: Session) -> None:
        """Give back every port ``session`` holds (registered or not)."""
        for leg in session.legs:
            for rtp, rtcp in leg._streams:
                del self._by_port[rtp.local_port], self._by_port[rtcp.local_port]
                self._release(rtp.local_port)
        session._by_port.clear()

    def _release(self, port: int) -> None:
        if self._claims is not None:
            self._claims.release(port)
        self.pool.release(port)

    def _schedule(self, session: Session) -> None:
        sequence = next(self._sequence)
        session._timer = sequence
        heapq.heappush(self._timers, (session.deadline_s, sequence, session))

    def _end(self, session: Session) -> None:
        del self._calls[session.call_id]
        session._timer = -1
        self._discard(session)
        self._retired += session.counters()
