"""The relay's *ng* control: a request datagram in, a reply datagram out, SDP rewritten.

Owns, sans-IO, what rtpengine's control port does for the commands of
:mod:`contracts.ng.control`:

* ``offer`` / ``answer``: parse the SDP (:mod:`contracts.sdp`), give every m= line of that
  leg an RTP/RTCP port pair (:class:`~mediarelay.session.Sessions`), and return the SDP
  rewritten to point at this relay — c= the *advertised* address, the m= port, ``a=rtcp``
  (:func:`contracts.sdp.anchor_media`) — as rtpengine does; the o= line is kept, as
  rtpengine keeps it unless told ``replace: origin``.
* ``delete``: end the call, free its ports. An unknown call is a warning (``ok``), or an
  error with the ``fatal`` flag, as in rtpengine.
* ``query``: the call's creation and last-signal times and its RTP and RTCP totals.
* ``ping``: ``pong``.

A retransmitted request (same sender, same cookie) gets the very reply sent before, from
a :class:`~contracts.ng.replycache.ReplyCache`, and is not run twice: a second ``offer``
must not allocate ports again. Bad input — a malformed datagram, a missing key, SDP that
does not parse, a pool that ran out — gets an error reply with a reason and changes
nothing. :meth:`Controller.handle` never raises on anything a peer can send.

What opened or closed is returned beside the reply (:class:`Handled`) so that the adapter
opens and closes the media sockets; this module does no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contracts.ng.control import (
    Answer,
    CallTotals,
    Delete,
    MalformedDatagram,
    Offer,
    Ping,
    Query,
    Reply,
    RequestError,
    StreamTotals,
    error_datagram,
    parse_request,
    reply_datagram,
)
from contracts.ng.notice import TIMEOUT, Notice, notice_datagram
from contracts.ng.replycache import CacheKey, ReplyCache
from contracts.sdp import (
    MediaAnchor,
    SdpError,
    SessionDescription,
    anchor_media,
    parse_sdp,
    serialize_sdp,
)
from mediarelay.portpool import PoolExhausted
from mediarelay.session import (
    Address,
    Kind,
    MediaStream,
    NegotiationError,
    PortPair,
    Session,
    Sessions,
    Traffic,
)

log = logging.getLogger("mediarelay.control")


@dataclass(frozen=True, slots=True)
class Handled:
    """The reply to send (None: nothing, the datagram had no cookie to answer), and the
    local ports the adapter must now open or close."""

    reply: bytes | None
    opened: tuple[int, ...] = ()
    closed: tuple[int, ...] = ()


class Controller:
    """Answers *ng* requests for one relay; ``advertise`` goes into every rewritten c=."""

    def __init__(self, sessions: Sessions, advertise: str, cache: ReplyCache | None = None) -> None:
        self.sessions = sessions
        self.advertise = advertise
        self.cache = cache or ReplyCache()
        #: Per call: (created, last signal) as wall-clock seconds, for ``query``.
        self._times: dict[str, tuple[float, float]] = {}
        #: Per call: the ng client that last negotiated it, told when the relay ends it.
        self._peers: dict[str, Address] = {}
        self._notices = 0

    def handle(self, datagram: bytes, source: Address, now: float, wall: float) -> Handled:
        """The reply to one request datagram from ``source`` (``now`` monotonic)."""
        try:
            request = parse_request(datagram)
        except MalformedDatagram:
            return Handled(None)  # no cookie: no reply could be matched to its request
        except RequestError as exc:
            return Handled(error_datagram(exc) if exc.cookie else None)
        key = CacheKey(f"{source[0]}:{source[1]}", request.cookie)
        cached = self.cache.get(key, now)
        if cached is not None:
            return Handled(cached)
        reply, opened, closed = self._run(request.command, now, wall)
        command = request.command
        if isinstance(command, Offer | Answer) and self.sessions.get(command.call_id):
            self._peers[command.call_id] = source
        data = reply_datagram(request.cookie, reply)
        self.cache.put(key, data, now)
        return Handled(data, opened, closed)

    def reap(self, now: float) -> tuple[list[tuple[Address, bytes]], tuple[int, ...]]:
        """End the calls idle past their timeout: a timeout notice for the client that
        negotiated each one (:mod:`contracts.ng.notice`), and the ports to close."""
        ended = self.sessions.reap(now)
        notices = []
        for session in ended:
            self._times.pop(session.call_id, None)
            peer = self._peers.pop(session.call_id, None)
            if peer is not None:
                self._notices += 1
                notice = Notice(TIMEOUT, session.call_id)
                notices.append((peer, notice_datagram(b"n%d" % self._notices, notice)))
        return notices, tuple(port for session in ended for port in _ports(session))

    def _run(
        self, command: Ping | Offer | Answer | Delete | Query, now: float, wall: float
    ) -> tuple[Reply, tuple[int, ...], tuple[int, ...]]:
        if isinstance(command, Ping):
            return Reply.pong(), (), ()
        if isinstance(command, Offer | Answer):
            return self._negotiate(command, now, wall)
        if isinstance(command, Delete):
            return self._delete(command)
        return self._query(command), (), ()

    def _negotiate(
        self, command: Offer | Answer, now: float, wall: float
    ) -> tuple[Reply, tuple[int, ...], tuple[int, ...]]:
        try:
            sdp = parse_sdp(command.sdp)
            media = _streams(sdp)
            before = set(self._live_ports(command.call_id))
            # The rewritten SDP goes on to the *other* phone, so it names the ports that
            # receive from that phone: for an offer the far leg's (pending until the
            # answer), for an answer the offerer's.
            if isinstance(command, Offer):
                self.sessions.offer(command.call_id, command.from_tag, media, now)
                pairs = self._leg_ports(command.call_id, command.from_tag, far=True)
            else:
                self.sessions.answer(command.call_id, command.from_tag, command.to_tag, media, now)
                pairs = self._leg_ports(command.call_id, command.from_tag)
        except SdpError as exc:
            return Reply.error(f"Failed to parse SDP: {exc.reason}"), (), ()
        except (NegotiationError, PoolExhausted, ValueError) as exc:
            return Reply.error(str(exc)), (), ()
        created = self._times.get(command.call_id, (wall, wall))[0]
        self._times[command.call_id] = (created, wall)
        opened = tuple(p for p in self._live_ports(command.call_id) if p not in before)
        return Reply.ok(sdp=self._rewrite(sdp, pairs)), opened, ()

    def _rewrite(self, sdp: SessionDescription, pairs: tuple[PortPair, ...]) -> bytes:
        anchors = [MediaAnchor(self.advertise, pair.rtp, pair.rtcp) for pair in pairs]
        return serialize_sdp(anchor_media(sdp, anchors))

    def _delete(self, command: Delete) -> tuple[Reply, tuple[int, ...], tuple[int, ...]]:
        session = self.sessions.delete(command.call_id)
        self._times.pop(command.call_id, None)
        self._peers.pop(command.call_id, None)
        if session is None:
            reason = f"Unknown call-id {command.call_id!r}"
            return (Reply.error(reason) if command.fatal else Reply.ok(warning=reason)), (), ()
        return Reply.ok(), (), tuple(_ports(session))

    def _query(self, command: Query) -> Reply:
        session = self.sessions.get(command.call_id)
        times = self._times.get(command.call_id)
        if session is None or times is None:
            return Reply.error(f"Unknown call-id {command.call_id!r}")
        rtp, rtcp = (_traffic(session, kind) for kind in (Kind.RTP, Kind.RTCP))
        totals = CallTotals(
            rtp=StreamTotals(packets=rtp.packets, octets=rtp.octets),
            rtcp=StreamTotals(packets=rtcp.packets, octets=rtcp.octets),
        )
        return Reply.query(created_s=int(times[0]), last_signal_s=int(times[1]), totals=totals)

    def _leg_ports(self, call_id: str, tag: str, *, far: bool = False) -> tuple[PortPair, ...]:
        """The ports of the leg ``tag`` names, or (``far``) of the leg opposite it."""
        session = self.sessions.get(call_id)
        leg = None if session is None else session.leg(tag)
        if session is None or leg is None:
            raise NegotiationError(f"call {call_id!r} has no leg {tag!r}")
        return (session.other_leg(leg) if far else leg).ports

    def _live_ports(self, call_id: str) -> list[int]:
        session = self.sessions.get(call_id)
        return [] if session is None else list(_ports(session))


def _traffic(session: Session, kind: Kind) -> Traffic:
    """What the call relayed of ``kind``, both directions summed."""
    return sum((leg.traffic(kind) for leg in session.legs), Traffic())


def _ports(session: Session) -> list[int]:
    """Every local port a session holds: RTP and RTCP of each stream of each leg."""
    return [port for leg in session.legs for pair in leg.ports for port in pair]


def _streams(sdp: SessionDescription) -> list[MediaStream]:
    """What the relay needs of each m= line: the c= address, the RTP and RTCP ports."""
    streams = []
    for media in sdp.media:
        connection = media.connections[0] if media.connections else sdp.connection
        if connection is None:
            raise SdpError("Bad Request: a media description has no c= line (RFC 4566 §5.7)")
        rtcp = media.rtcp
        streams.append(
            MediaStream(connection.address, media.port, rtcp.port if rtcp is not None else None)
        )
    return streams
