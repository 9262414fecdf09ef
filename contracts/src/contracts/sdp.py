"""SDP codec: parse, read, rewrite and write session descriptions for offer/answer.

Owns the session description model a B2BUA and an RTP-anchoring relay need: where each
media stream is received (c=, m= port, a=rtcp), which codecs it offers (a=rtpmap,
a=fmtp, a=ptime), which way it flows (a=sendrecv ...), and the o= revision.

- RFC 4566 §5: line grammar and the field order ``v o s i u e p c b t r z k a``, then each
  ``m`` with ``i c b k a``; CRLF written, bare LF tolerated. §6: rtpmap, fmtp, ptime and
  the direction attributes. Lines of unknown type are kept, in order, at the end of their
  section, and attributes keep their order and text, so what a relay does not change is
  written back as it came.
- RFC 3264 §5-§6: direction per media overriding the session's; §8: a changed SDP must
  carry an incremented sess-version (:meth:`SessionDescription.with_bumped_version`).
- RFC 3605: the a=rtcp attribute. RFC 3551 §6: the static payload types.
- RFC 5118 §4.6: IPv6 (and IPv4-mapped) addresses in c= and o= are written without
  brackets, with addrtype IP6; brackets sent by a peer are removed.

Hand-written on purpose: the Python SDP packages either drop unknown lines and attribute
order (a relay must not) or come inside a WebRTC stack with native dependencies. Parsing
is one pass, linear in the input; numbers are bounded in digits before conversion. A
peer's malformed SDP raises :class:`SdpError` (400, the reason naming the line); our own
bad arguments to a rewrite raise :class:`SdpMisuse`. Both sides read SDP (the SIP edge in
its offer/answer, the relay in its ng ``offer``/``answer``), so each translates these
errors once, at its own boundary: the edge into its SIP 400, the relay into an ng
``error-reason``. Standard library only, no I/O. The module is past the usual ~400 lines
on purpose: the model, its line grammar and its rewrites change together.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "Fmtp",
    "Media",
    "MediaAnchor",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpError",
    "SdpMisuse",
    "SessionDescription",
    "Timing",
    "anchor_media",
    "parse_sdp",
    "serialize_sdp",
]


class SdpError(ValueError):
    """A peer's SDP we cannot accept: answer ``status`` (400) with ``reason``.

    ``reason`` is fit for a SIP Reason-Phrase (ASCII, no CR or LF) and names the faulty
    line, for example ``"Bad Request: malformed SDP m= line"``.
    """

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason.replace("\r", " ").replace("\n", " ")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class SdpMisuse(ValueError):
    """Our own code asked for an SDP that cannot be written; never answered on the wire."""


# token-char = %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 / %x41-5A / %x5E-7E
_TOKEN = re.compile(r"[!#-'*+\-.0-9A-Z^-~]+")
_PROTO = re.compile(r"[!#-'*+\-.0-9A-Z^-~]+(?:/[!#-'*+\-.0-9A-Z^-~]+)*")
# An address is a token that may hold colons (IPv6, RFC 5118 §4.6), never brackets.
_ADDRESS = re.compile(r"[!#-'*+\-.0-:A-Z^-~]+")
_MULTICAST_SUFFIX = re.compile(r"(?:/[0-9]{1,10}){1,2}")
_TYPED_TIME = re.compile(r"-?[0-9]{1,20}[dhms]?")
_PTIME = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,10})?")
#: Integers longer than this are refused before conversion (NTP times fit in 20 digits).
_MAX_DIGITS = 20
_MAX_PORT = 65535
_MAX_PAYLOAD_TYPE = 127
_SESSION_LETTERS = "osiuepcbtrzka"
_MEDIA_LETTERS = "icbka"
_KNOWN_LETTERS = "vosiuepcbtrzkam"

_Line = tuple[str, str]


def _malformed(line: str) -> SdpError:
    return SdpError(f"Bad Request: malformed SDP {line} line")


def _number(text: str, line: str, max_value: int | None = None) -> int:
    """The decimal ``text`` as an int, or 400 naming ``line`` (``"m="``, ``"a=rtcp"``)."""
    if not (0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()):
        raise _malformed(line)
    value = int(text)
    if max_value is not None and value > max_value:
        raise _malformed(line)
    return value


def _address(text: str, line: str) -> str:
    """RFC 5118 §4.6: an IPv6 address in SDP has no brackets; tolerate a peer's."""
    if text[:1] == "[" and text[-1:] == "]":
        text = text[1:-1]
    if _ADDRESS.fullmatch(text) is None:
        raise _malformed(line)
    return text


def _token(text: str, line: str) -> str:
    if _TOKEN.fullmatch(text) is None:
        raise _malformed(line)
    return text


class Direction(enum.StrEnum):
    """The direction attributes of RFC 4566 §6 / RFC 3264 §5.1; sendrecv by default."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def reversed(self) -> Direction:
        """The same stream seen from the other end (RFC 3264 §6.1): sendonly ↔ recvonly."""
        return _REVERSED[self]


_REVERSED = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line (RFC 4566 §5.2); ``session_version`` is bumped on every change."""

    username: str
    session_id: str
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def to_text(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version}"
            f" {self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line (RFC 4566 §5.7); ``multicast_suffix`` is ``""`` or ``"/ttl[/count]"``."""

    nettype: str
    addrtype: str
    address: str
    multicast_suffix: str = ""

    def to_text(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}{self.multicast_suffix}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A b= line (RFC 4566 §5.8). ``value`` is in kbit/s for CT and AS, bit/s for TIAS/RS/RR."""

    bwtype: str
    value: int

    def to_text(self) -> str:
        return f"{self.bwtype}:{self.value}"


@dataclass(frozen=True, slots=True)
class Timing:
    """A t= line with its r= lines kept as written (RFC 4566 §5.9-§5.10); NTP seconds."""

    start_ntp_s: int
    stop_ntp_s: int
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribute:
    """An a= line: ``a=name`` (``value`` None) or ``a=name:value``, value kept verbatim."""

    name: str
    value: str | None = None

    def to_text(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <name>/<clock rate>[/<channels>]`` (RFC 4566 §6).

    The clock rate is optional here because RFC 4475's wsinv message writes
    ``a=rtpmap:31 LPC``; ``channels`` None means one channel for audio.
    """

    payload_type: int
    encoding_name: str
    clock_rate_hz: int | None = None
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        parts = value.split(maxsplit=1)
        if len(parts) != 2:
            raise _malformed("a=rtpmap")
        encoding = parts[1].rstrip().split("/")
        if len(encoding) > 3:
            raise _malformed("a=rtpmap")
        numbers = [_number(text, "a=rtpmap") for text in encoding[1:]]
        return cls(
            payload_type=_number(parts[0], "a=rtpmap", _MAX_PAYLOAD_TYPE),
            encoding_name=_token(encoding[0], "a=rtpmap"),
            clock_rate_hz=numbers[0] if numbers else None,
            channels=numbers[1] if len(numbers) > 1 else None,
        )

    def to_attribute(self) -> Attribute:
        text = f"{self.payload_type} {self.encoding_name}"
        for number in (self.clock_rate_hz, self.channels):
            text += "" if number is None else f"/{number}"
        return Attribute("rtpmap", text)


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<pt> <format specific parameters>`` (RFC 4566 §6); params kept as text."""

    payload_type: int
    params: str

    @classmethod
    def parse(cls, value: str) -> Fmtp:
        parts = value.split(maxsplit=1)
        if not parts:
            raise _malformed("a=fmtp")
        params = parts[1].rstrip() if len(parts) > 1 else ""
        return cls(_number(parts[0], "a=fmtp", _MAX_PAYLOAD_TYPE), params)

    def to_attribute(self) -> Attribute:
        params = f" {self.params}" if self.params else ""
        return Attribute("fmtp", f"{self.payload_type}{params}")


@dataclass(frozen=True, slots=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> Rtcp:
        parts = value.split(maxsplit=1)
        if not parts:
            raise _malformed("a=rtcp")
        port = _number(parts[0], "a=rtcp", _MAX_PORT)
        if len(parts) == 1:
            return cls(port)
        return cls(port, _parse_connection(parts[1], "a=rtcp"))

    def to_attribute(self) -> Attribute:
        if self.connection is None:
            return Attribute("rtcp", str(self.port))
        return Attribute("rtcp", f"{self.port} {self.connection.to_text()}")


def _parse_ptime_ms(value: str) -> float:
    if _PTIME.fullmatch(value.strip()) is None:
        raise _malformed("a=ptime")
    return float(value)


#: Attributes whose syntax is checked when the SDP is parsed, so the readers never fail.
_ATTRIBUTE_SYNTAX: Mapping[str, Callable[[str], object]] = {
    "rtpmap": RtpMap.parse,
    "fmtp": Fmtp.parse,
    "rtcp": Rtcp.parse,
    "ptime": _parse_ptime_ms,
}

#: RFC 3551 §6 tables 4 and 5: payload types that need no a=rtpmap.
STATIC_PAYLOAD_TYPES: Mapping[int, RtpMap] = {
    pt: RtpMap(pt, name, rate_hz, channels)
    for pt, name, rate_hz, channels in (
        (0, "PCMU", 8000, None), (3, "GSM", 8000, None), (4, "G723", 8000, None),
        (5, "DVI4", 8000, None), (6, "DVI4", 16000, None), (7, "LPC", 8000, None),
        (8, "PCMA", 8000, None), (9, "G722", 8000, None), (10, "L16", 44100, 2),
        (11, "L16", 44100, None), (12, "QCELP", 8000, None), (13, "CN", 8000, None),
        (14, "MPA", 90000, None), (15, "G728", 8000, None), (16, "DVI4", 11025, None),
        (17, "DVI4", 22050, None), (18, "G729", 8000, None), (25, "CelB", 90000, None),
        (26, "JPEG", 90000, None), (28, "nv", 90000, None), (31, "H261", 90000, None),
        (32, "MPV", 90000, None), (33, "MP2T", 90000, None), (34, "H263", 90000, None),
    )
}  # fmt: skip


def _values(attributes: Sequence[Attribute], name: str) -> Iterator[str]:
    """The values of the attributes called ``name`` (case-insensitive), ``""`` for flags."""
    lname = name.lower()
    return (a.value or "" for a in attributes if a.name.lower() == lname)


def _direction(attributes: Sequence[Attribute]) -> Direction | None:
    for attribute in attributes:
        if attribute.name.lower() in _DIRECTIONS:
            return Direction(attribute.name.lower())
    return None


_DIRECTIONS = frozenset(Direction)


def _set_attribute(
    attributes: Sequence[Attribute], names: frozenset[str], new: Attribute | None
) -> tuple[Attribute, ...]:
    """Put ``new`` where the first attribute named in ``names`` was (else append), drop the rest."""
    out: list[Attribute] = []
    for attribute in attributes:
        if attribute.name.lower() not in names:
            out.append(attribute)
        elif new is not None:
            out.append(new)
            new = None
    if new is not None:
        out.append(new)
    return tuple(out)


def _connection_for(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> Connection:
    """``IN IP4 a.b.c.d`` or ``IN IP6 x::y`` (RFC 5118 §4.6: no brackets, mapped as IP6)."""
    text = address
    if isinstance(address, str) and address[:1] == "[" and address[-1:] == "]":
        text = address[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as exc:
        raise SdpMisuse(f"not an IP address for SDP: {address!r}") from exc
    if isinstance(ip, ipaddress.IPv4Address):
        return Connection("IN", "IP4", str(ip))
    if ip.scope_id is not None:
        raise SdpMisuse(f"an IPv6 zone cannot be written in SDP: {address!r}")
    mapped = ip.ipv4_mapped
    return Connection("IN", "IP6", str(ip) if mapped is None else f"::ffff:{mapped}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One media description: the m= line and its i c b k a lines (RFC 4566 §5.14)."""

    media_type: str
    port: int
    port_count: int | None = None
    proto: str
    formats: tuple[str, ...]
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    unknown_lines: tuple[str, ...] = ()

    @property
    def is_rtp(self) -> bool:
        """True for RTP/AVP, RTP/SAVP(F), UDP/TLS/RTP/SAVPF ...: formats are payload types."""
        return "RTP/" in self.proto.upper()

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(int(fmt) for fmt in self.formats) if self.is_rtp else ()

    def values(self, name: str) -> tuple[str, ...]:
        """The values of this media's ``a=name`` attributes, in order (``""`` for a flag)."""
        return tuple(_values(self.attributes, name))

    def rtpmaps(self) -> tuple[RtpMap, ...]:
        return tuple(RtpMap.parse(value) for value in _values(self.attributes, "rtpmap"))

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The a=rtpmap of ``payload_type``, else its RFC 3551 static assignment."""
        for rtpmap in self.rtpmaps():
            if rtpmap.payload_type == payload_type:
                return rtpmap
        return STATIC_PAYLOAD_TYPES.get(payload_type) if self.is_rtp else None

    def fmtp(self, payload_type: int) -> Fmtp | None:
        for value in _values(self.attributes, "fmtp"):
            fmtp = Fmtp.parse(value)
            if fmtp.payload_type == payload_type:
                return fmtp
        return None

    @property
    def rtcp(self) -> Rtcp | None:
        return next((Rtcp.parse(v) for v in _values(self.attributes, "rtcp")), None)

    @property
    def ptime_ms(self) -> float | None:
        return next((_parse_ptime_ms(v) for v in _values(self.attributes, "ptime")), None)

    @property
    def direction(self) -> Direction | None:
        """This media's own direction attribute; see :meth:`SessionDescription.direction_of`."""
        return _direction(self.attributes)

    def with_port(self, port: int) -> Media:
        if not 0 <= port <= _MAX_PORT:
            raise SdpMisuse(f"port out of range: {port}")
        return replace(self, port=port)

    def with_connection(
        self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> Media:
        """This media with one c= line of its own, IP4 or IP6 chosen from ``address``."""
        return replace(self, connections=(_connection_for(address),))

    def with_rtcp(self, rtcp: Rtcp | None) -> Media:
        """Set (or, with None, remove) the a=rtcp attribute, keeping its place."""
        if rtcp is not None and not 0 <= rtcp.port <= _MAX_PORT:
            raise SdpMisuse(f"RTCP port out of range: {rtcp.port}")
        new = None if rtcp is None else rtcp.to_attribute()
        return self.with_attribute("rtcp", new)

    def with_direction(self, direction: Direction) -> Media:
        new = Attribute(direction.value)
        return replace(self, attributes=_set_attribute(self.attributes, _DIRECTIONS, new))

    def with_attribute(self, name: str, new: Attribute | None) -> Media:
        """Replace the ``name`` attributes by ``new`` at the first one's place (None: drop)."""
        names = frozenset({name.lower()})
        return replace(self, attributes=_set_attribute(self.attributes, names, new))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5): session-level lines and the media descriptions."""

    version: int = 0
    origin: Origin
    session_name: str
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    timings: tuple[Timing, ...] = ()
    zone_adjustments: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()
    unknown_lines: tuple[str, ...] = ()

    def values(self, name: str) -> tuple[str, ...]:
        """The values of the session-level ``a=name`` attributes (``""`` for a flag)."""
        return tuple(_values(self.attributes, name))

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, None when absent."""
        return _direction(self.attributes)

    def direction_of(self, media: Media) -> Direction:
        """The media's direction, else the session's, else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def connection_of(self, media: Media) -> Connection | None:
        """Where ``media`` is received: its first own c=, else the session c= (§5.7)."""
        return media.connections[0] if media.connections else self.connection

    def with_connection(
        self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> SessionDescription:
        return replace(self, connection=_connection_for(address))

    def with_origin_address(
        self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> SessionDescription:
        conn = _connection_for(address)
        origin = replace(self.origin, addrtype=conn.addrtype, address=conn.address)
        return replace(self, origin=origin)

    def with_bumped_version(self) -> SessionDescription:
        """The same SDP with sess-version + 1, as RFC 3264 §8 asks of a changed SDP."""
        version = self.origin.session_version + 1
        return replace(self, origin=replace(self.origin, session_version=version))

    def with_direction(self, direction: Direction) -> SessionDescription:
        new = Attribute(direction.value)
        return replace(self, attributes=_set_attribute(self.attributes, _DIRECTIONS, new))

    def with_media(self, index: int, media: Media) -> SessionDescription:
        items = list(self.media)
        items[index] = media
        return replace(self, media=tuple(items))


@dataclass(frozen=True, slots=True)
class MediaAnchor:
    """Where the relay receives one stream; ``rtcp_port`` None means RTP port + 1."""

    address: str
    rtp_port: int
    rtcp_port: int | None = None


def anchor_media(
    sdp: SessionDescription, anchors: Sequence[MediaAnchor | None]
) -> SessionDescription:
    """Point the media at a relay: ``anchors[i]`` rewrites ``sdp.media[i]``, None leaves it.

    The session c= takes the first anchor's address. An anchored media keeps a c= of its
    own when it had one or when its address differs from the session's; a media left
    alone that relied on the old session c= gets that c= of its own. The a=rtcp is set
    to the anchor's RTCP port, or removed when there is none (RFC 3605 §2.1). The origin
    version is not bumped here: call :meth:`SessionDescription.with_bumped_version`.
    """
    if len(anchors) != len(sdp.media):
        raise SdpMisuse("one anchor (or None) is needed per media description")
    first = next((anchor for anchor in anchors if anchor is not None), None)
    if first is None:
        return sdp
    needs_session_c = sdp.connection is not None or any(not m.connections for m in sdp.media)
    session_c = _connection_for(first.address) if needs_session_c else None
    media = tuple(
        _anchor_one(item, anchor, sdp.connection, session_c)
        for item, anchor in zip(sdp.media, anchors, strict=True)
    )
    return replace(sdp, connection=session_c, media=media)


def _anchor_one(
    media: Media, anchor: MediaAnchor | None, old_c: Connection | None, new_c: Connection | None
) -> Media:
    if anchor is None:
        if not media.connections and old_c is not None and old_c != new_c:
            return replace(media, connections=(old_c,))
        return media
    own_c = _connection_for(anchor.address)
    rtcp = None if anchor.rtcp_port is None else Rtcp(anchor.rtcp_port)
    moved = media.with_port(anchor.rtp_port).with_rtcp(rtcp)
    if media.connections or own_c != new_c:
        moved = replace(moved, connections=(own_c,))
    return moved


# --- parsing -------------------------------------------------------------------------


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; a malformed one raises :class:`SdpError` (400)."""
    lines = _split_lines(_decode(data))
    if not lines or lines[0][0] != "v":
        raise SdpError("Bad Request: SDP does not begin with a v= line")
    if lines[0][1] != "0":
        raise _malformed("v=")
    session: list[_Line] = []
    sections: list[tuple[str, list[_Line]]] = []
    current = session
    for letter, value in lines[1:]:
        if letter == "m":
            current = []
            sections.append((value, current))
        else:
            current.append((letter, value))
    media = tuple(_parse_media(value, media_lines) for value, media_lines in sections)
    return _parse_session(session, media)


def _decode(data: bytes | str) -> str:
    """Text whose every byte survives a round trip (undecodable bytes as surrogates)."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise SdpError("Bad Request: SDP text is not encodable") from exc
    return data.decode("utf-8", "surrogateescape")


def _split_lines(text: str) -> list[_Line]:
    """``(type, value)`` per non-empty line; CRLF or bare LF ends a line (RFC 4566 §5)."""
    lines: list[_Line] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw[-1:] == "\r" else raw
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
            raise SdpError(f"Bad Request: malformed SDP line {number}")
        if "\r" in line or "\0" in line:
            raise _malformed(f"{line[0]}=")
        lines.append((line[0], line[2:]))
    return lines


def _gather(
    lines: Sequence[_Line], letters: str, where: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Values per allowed type letter, and the lines of unknown type, both in order."""
    fields: dict[str, list[str]] = {letter: [] for letter in letters}
    unknown: list[str] = []
    for letter, value in lines:
        if letter in fields:
            fields[letter].append(value)
        elif letter in _KNOWN_LETTERS:
            raise SdpError(f"Bad Request: misplaced SDP {letter}= line in {where}")
        else:
            unknown.append(f"{letter}={value}")
    return fields, unknown


def _single(fields: Mapping[str, list[str]], letter: str) -> str | None:
    values = fields[letter]
    if len(values) > 1:
        raise SdpError(f"Bad Request: repeated SDP {letter}= line")
    return values[0] if values else None


def _required(fields: Mapping[str, list[str]], letter: str) -> str:
    value = _single(fields, letter)
    if value is None:
        raise SdpError(f"Bad Request: missing SDP {letter}= line")
    return value


def _parse_session(lines: Sequence[_Line], media: tuple[Media, ...]) -> SessionDescription:
    fields, unknown = _gather(lines, _SESSION_LETTERS, "session")
    connection = _single(fields, "c")
    zone_adjustments = _single(fields, "z")
    if zone_adjustments is not None:
        _check_typed_times(zone_adjustments, "z=", pairs=True)
    return SessionDescription(
        origin=_parse_origin(_required(fields, "o")),
        session_name=_required(fields, "s"),
        information=_single(fields, "i"),
        uri=_single(fields, "u"),
        emails=tuple(fields["e"]),
        phones=tuple(fields["p"]),
        connection=None if connection is None else _parse_connection(connection, "c="),
        bandwidths=tuple(_parse_bandwidth(value) for value in fields["b"]),
        timings=_parse_timings(lines),
        zone_adjustments=zone_adjustments,
        key=_single(fields, "k"),
        attributes=tuple(_parse_attribute(value) for value in fields["a"]),
        media=media,
        unknown_lines=tuple(unknown),
    )


def _parse_media(m_value: str, lines: Sequence[_Line]) -> Media:
    fields, unknown = _gather(lines, _MEDIA_LETTERS, "media")
    return replace(
        _parse_m_line(m_value),
        information=_single(fields, "i"),
        connections=tuple(_parse_connection(value, "c=") for value in fields["c"]),
        bandwidths=tuple(_parse_bandwidth(value) for value in fields["b"]),
        key=_single(fields, "k"),
        attributes=tuple(_parse_attribute(value) for value in fields["a"]),
        unknown_lines=tuple(unknown),
    )


def _parse_m_line(value: str) -> Media:
    """``<media> <port>[/<count>] <proto> <fmt> ...``; RTP formats are payload types 0..127."""
    parts = value.split()
    if len(parts) < 4 or _PROTO.fullmatch(parts[2]) is None:
        raise _malformed("m=")
    port_text, slash, count_text = parts[1].partition("/")
    port_count = _number(count_text, "m=") if slash else None
    if port_count == 0:
        raise _malformed("m=")
    media = Media(
        media_type=_token(parts[0], "m="),
        port=_number(port_text, "m=", _MAX_PORT),
        port_count=port_count,
        proto=parts[2],
        formats=tuple(parts[3:]),
    )
    for fmt in media.formats:
        if media.is_rtp:
            _number(fmt, "m=", _MAX_PAYLOAD_TYPE)
        else:
            _token(fmt, "m=")
    return media


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise _malformed("o=")
    username, session_id, version, nettype, addrtype, address = parts
    return Origin(
        username=username,
        session_id=session_id,
        session_version=_number(version, "o="),
        nettype=_token(nettype, "o="),
        addrtype=_token(addrtype, "o="),
        address=_address(address, "o="),
    )


def _parse_connection(value: str, line: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise _malformed(line)
    nettype, addrtype, address = parts
    address, slash, suffix = address.partition("/")
    if slash and _MULTICAST_SUFFIX.fullmatch(slash + suffix) is None:
        raise _malformed(line)
    return Connection(
        nettype=_token(nettype, line),
        addrtype=_token(addrtype, line),
        address=_address(address, line),
        multicast_suffix=slash + suffix,
    )


def _parse_bandwidth(value: str) -> Bandwidth:
    bwtype, colon, amount = value.partition(":")
    if not colon:
        raise _malformed("b=")
    return Bandwidth(_token(bwtype, "b="), _number(amount, "b="))


def _parse_timings(lines: Sequence[_Line]) -> tuple[Timing, ...]:
    """Each t= with the r= lines that follow it (RFC 4566 §5.10)."""
    timings: list[tuple[str, list[str]]] = []
    for letter, value in lines:
        if letter == "t":
            timings.append((value, []))
        elif letter == "r":
            if not timings:
                raise SdpError("Bad Request: SDP r= line before any t= line")
            _check_typed_times(value, "r=", pairs=False)
            timings[-1][1].append(value)
    return tuple(_parse_timing(value, repeats) for value, repeats in timings)


def _parse_timing(value: str, repeats: Sequence[str]) -> Timing:
    parts = value.split()
    if len(parts) != 2:
        raise _malformed("t=")
    return Timing(_number(parts[0], "t="), _number(parts[1], "t="), tuple(repeats))


def _check_typed_times(value: str, line: str, *, pairs: bool) -> None:
    """r= has three or more typed times; z= has pairs of (time, offset)."""
    parts = value.split()
    count_ok = len(parts) >= 2 and len(parts) % 2 == 0 if pairs else len(parts) >= 3
    if not count_ok or any(_TYPED_TIME.fullmatch(part) is None for part in parts):
        raise _malformed(line)


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    name = _token(name.strip(" \t"), "a=")
    check = _ATTRIBUTE_SYNTAX.get(name.lower())
    if check is not None:
        check(rest)
    return Attribute(name, rest if colon else None)


# --- serializing ---------------------------------------------------------------------


def serialize_sdp(sdp: SessionDescription) -> bytes:
    """Canonical bytes: RFC 4566 §5 line order, CRLF after every line."""
    lines = _session_lines(sdp)
    for media in sdp.media:
        lines.extend(_media_lines(media))
    for line in lines:
        if "\r" in line or "\n" in line or "\0" in line:
            raise SdpMisuse(f"SDP value would break its line: {line[:40]!r}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def _session_lines(sdp: SessionDescription) -> list[str]:
    lines = [f"v={sdp.version}", f"o={sdp.origin.to_text()}", f"s={sdp.session_name}"]
    lines += _optional("i", sdp.information) + _optional("u", sdp.uri)
    lines += [f"e={email}" for email in sdp.emails]
    lines += [f"p={phone}" for phone in sdp.phones]
    lines += [f"c={sdp.connection.to_text()}"] if sdp.connection is not None else []
    lines += [f"b={bandwidth.to_text()}" for bandwidth in sdp.bandwidths]
    for timing in sdp.timings:
        lines.append(f"t={timing.start_ntp_s} {timing.stop_ntp_s}")
        lines += [f"r={repeat}" for repeat in timing.repeats]
    lines += _optional("z", sdp.zone_adjustments) + _optional("k", sdp.key)
    lines += [f"a={attribute.to_text()}" for attribute in sdp.attributes]
    return lines + list(sdp.unknown_lines)


def _media_lines(media: Media) -> list[str]:
    port = str(media.port) if media.port_count is None else f"{media.port}/{media.port_count}"
    lines = [f"m={media.media_type} {port} {media.proto} {' '.join(media.formats)}"]
    lines += _optional("i", media.information)
    lines += [f"c={connection.to_text()}" for connection in media.connections]
    lines += [f"b={bandwidth.to_text()}" for bandwidth in media.bandwidths]
    lines += _optional("k", media.key)
    lines += [f"a={attribute.to_text()}" for attribute in media.attributes]
    return lines + list(media.unknown_lines)


def _optional(letter: str, value: str | None) -> list[str]:
    return [] if value is None else [f"{letter}={value}"]
