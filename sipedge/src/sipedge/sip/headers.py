"""Header names and the typed header fields of RFC 3261 §20, §25.1 and their extensions.

The table below is the single place that knows each header's canonical spelling, its
compact form (§7.3.3) and whether it is a comma-separated list (§7.3.1). The parsers
turn one raw value (already unfolded) into a frozen value object and raise
:class:`~sipedge.sip.errors.ParseError` carrying a 400 whose reason names the header.
Numeric fields accept leading zeros (RFC 4475 wsinv) and refuse values beyond their
range instead of wrapping (scalar02): CSeq and delta-seconds fit in 32 bits, and
Max-Forwards in 0..255.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sipedge.sip.address import Address, parse_address
from sipedge.sip.errors import ParseError
from sipedge.sip.grammar import (
    EMPTY_PARAMS,
    WSP,
    Params,
    is_token,
    parse_header_params,
    split_outside,
)

# canonical name, compact form ("" if none), is a comma-separated list
_TABLE: Final = (
    ("Accept", "", True),
    ("Accept-Contact", "a", True),
    ("Accept-Encoding", "", True),
    ("Accept-Language", "", True),
    ("Alert-Info", "", True),
    ("Allow", "", True),
    ("Allow-Events", "u", True),
    ("Authentication-Info", "", False),
    ("Authorization", "", False),
    ("Call-ID", "i", False),
    ("Call-Info", "", True),
    ("Contact", "m", True),
    ("Content-Disposition", "", False),
    ("Content-Encoding", "e", True),
    ("Content-Language", "", True),
    ("Content-Length", "l", False),
    ("Content-Type", "c", False),
    ("CSeq", "", False),
    ("Date", "", False),
    ("Error-Info", "", True),
    ("Event", "o", False),
    ("Expires", "", False),
    ("From", "f", False),
    ("History-Info", "", True),
    ("Identity", "y", False),
    ("In-Reply-To", "", True),
    ("Max-Forwards", "", False),
    ("MIME-Version", "", False),
    ("Min-Expires", "", False),
    ("Min-SE", "", False),
    ("Organization", "", False),
    ("P-Asserted-Identity", "", True),
    ("P-Preferred-Identity", "", True),
    ("Path", "", True),
    ("Priority", "", False),
    ("Privacy", "", False),
    ("Proxy-Authenticate", "", False),
    ("Proxy-Authorization", "", False),
    ("Proxy-Require", "", True),
    ("RAck", "", False),
    ("Reason", "", True),
    ("Record-Route", "", True),
    ("Refer-To", "r", False),
    ("Referred-By", "b", False),
    ("Reject-Contact", "j", True),
    ("Reply-To", "", False),
    ("Request-Disposition", "d", True),
    ("Require", "", True),
    ("Retry-After", "", False),
    ("Route", "", True),
    ("RSeq", "", False),
    ("Server", "", False),
    ("Service-Route", "", True),
    ("Session-Expires", "x", False),
    ("Subject", "s", False),
    ("Subscription-State", "", False),
    ("Supported", "k", True),
    ("Timestamp", "", False),
    ("To", "t", False),
    ("Unsupported", "", True),
    ("User-Agent", "", False),
    ("Via", "v", True),
    ("Warning", "", True),
    ("WWW-Authenticate", "", False),
)

#: lower-case spelling (long or compact) → canonical spelling.
CANONICAL: Final[dict[str, str]] = {}
for _name, _compact, _ in _TABLE:
    CANONICAL[_name.lower()] = _name
    if _compact:
        CANONICAL[_compact] = _name
#: lower-case canonical names of headers whose values are comma-separated lists.
LIST_HEADERS: Final = frozenset(name.lower() for name, _, is_list in _TABLE if is_list)

_TOKEN_SLASH = re.compile(r"([^\s/]+)[ \t]*/[ \t]*([^\s/]+)[ \t]*/[ \t]*([^\s/]+)[ \t]+(.+)")
_HOSTPORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?")
# The usual spelling, without optional whitespace: one pass, no backtracking.
_VIA_COMPACT = re.compile(
    r"SIP/2\.0/([A-Za-z0-9\-.!%*_+`'~]+) (\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?"
    r"(?:;(.*))?",
    re.DOTALL,
)
_LWS = re.compile(r"[ \t]+")
_CALL_ID = re.compile(r"[^\s@]+(?:@[^\s@]+)?")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
UINT32_MAX: Final = 2**32 - 1
#: Method names known to be tokens, so the usual CSeq skips the token check.
_METHOD_TOKENS: Final = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE"}
    | {"NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)


#: Every spelling met verbatim (canonical, lower-case, compact in both cases) → key, name.
SPELLINGS: Final[dict[str, tuple[str, str]]] = {}
for _lower, _canonical in CANONICAL.items():
    for _spelling in (_lower, _canonical, _lower.upper()):
        SPELLINGS[_spelling] = (_canonical.lower(), _canonical)


def header_key(name: str) -> tuple[str, str]:
    """The lookup key (lower-case canonical name) and the canonical spelling of ``name``."""
    known = SPELLINGS.get(name)
    if known is not None:
        return known
    canonical = CANONICAL.get(name.lower(), name)
    return canonical.lower(), canonical


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; unknown names are kept as written."""
    return header_key(name)[1]


def parse_uint(text: str, what: str, maximum: int = UINT32_MAX) -> int:
    """A decimal number in ``0..maximum``; leading zeros allowed, no sign, no wrapping."""
    if len(text) <= 10 and text.isdigit() and text.isascii():  # the usual "3600"
        number = int(text)
        if number <= maximum:
            return number
    digits = text.strip(WSP).lstrip("0") or "0"
    if not (digits.isascii() and digits.isdigit()):
        raise ParseError(f"Bad Request: {what} is not a number")
    if len(digits) > 10 or int(digits) > maximum:
        raise ParseError(f"Bad Request: {what} is out of range")
    return int(digits)


def split_list(values: list[str], what: str, max_values: int = 64) -> list[str]:
    """Split raw values of a list header on commas outside quotes and ``<>``."""
    parts: list[str] = []
    for value in values:
        parts.extend(split_outside(value, ",") if "," in value else (value,))
    if len(parts) > max_values:
        raise ParseError(f"Bad Request: too many {what} values")
    stripped = [part.strip(WSP) for part in parts]
    if not all(stripped):
        raise ParseError(f"Bad Request: empty value in {what}")
    return stripped


class Via(NamedTuple):
    """One via-parm (RFC 3261 §20.42, RFC 3581 rport, RFC 5118 §4.5 IPv6 received).

    Via and CSeq are named tuples: they are built for every message (see uri.py).
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = EMPTY_PARAMS
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The filled-in rport value, if a number is there."""
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def wants_rport(self) -> bool:
        """The client asked for symmetric response routing (a bare ``;rport``)."""
        return "rport" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{self.params.to_header_text()}"


def parse_via(value: str) -> Via:
    """Parse one via-parm; LWS around ``/`` and ``:`` is allowed (wsinv)."""
    fast = _VIA_COMPACT.fullmatch(value)
    if fast is not None:
        transport, host, port, params = fast.groups()
        via = Via(
            transport.upper(),
            host.lower(),
            None if port is None else _port(port, "Via"),
            EMPTY_PARAMS if params is None else parse_header_params(params, "Via"),
        )
        _check_via_params(via)
        return via
    head, semi, params = value.partition(";")
    match = _TOKEN_SLASH.fullmatch(head.strip(WSP))
    if match is None:
        raise ParseError("Bad Request: malformed Via")
    name, version, transport, sent_by = match.groups()
    hostport = _HOSTPORT.fullmatch(sent_by.strip(WSP))
    if hostport is None:
        raise ParseError("Bad Request: malformed Via sent-by")
    host, port = hostport.groups()
    via = Via(
        transport=transport.upper(),
        host=host.lower(),
        port=None if port is None else _port(port, "Via"),
        params=parse_header_params(params, "Via") if semi else Params(),
        protocol=f"{name.upper()}/{version}",
    )
    _check_via_params(via)
    return via


def _port(text: str, what: str) -> int:
    number = int(text)
    if number > 65535:
        raise ParseError(f"Bad Request: port out of range in {what}")
    return number


def _check_via_params(via: Via) -> None:
    for name, value in via.params:
        lname = name.lower()
        if lname == "branch" and not value:
            raise ParseError("Bad Request: empty Via branch")
        if lname == "rport" and value:
            parse_uint(value, "Via rport", 65535)
        elif lname == "ttl":
            parse_uint(value or "", "Via ttl", 255)


def parse_vias(values: list[str]) -> list[Via]:
    """Every via-parm of every Via header line, top first."""
    return [parse_via(part) for part in split_list(values, "Via")]


class CSeq(NamedTuple):
    """RFC 3261 §20.16: a 32-bit sequence number and the request's method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    number, space, method = value.partition(" ")
    if space and method in _METHOD_TOKENS and number.isdigit() and number.isascii():
        return CSeq(parse_uint(number, "CSeq"), method)  # the usual "2 REGISTER"
    parts = _LWS.split(value.strip(WSP))
    if len(parts) != 2 or not is_token(parts[1]):
        raise ParseError("Bad Request: malformed CSeq")
    return CSeq(parse_uint(parts[0], "CSeq"), parts[1])


def parse_max_forwards(value: str) -> int:
    return parse_uint(value, "Max-Forwards", 255)


def parse_call_id(value: str) -> str:
    call_id = value.strip(WSP)
    if _CALL_ID.fullmatch(call_id) is None:
        raise ParseError("Bad Request: malformed Call-ID")
    return call_id


@dataclass(frozen=True, slots=True)
class ContentType:
    """RFC 3261 §20.15 media type; ``mime`` is ``type/subtype`` in lower case."""

    mime: str
    params: Params = field(default_factory=Params)

    def __str__(self) -> str:
        return self.mime + self.params.to_header_text()


def parse_content_type(value: str) -> ContentType:
    media, semi, params = value.partition(";")
    kind, slash, subtype = media.strip(WSP).partition("/")
    if not slash or not is_token(kind.strip(WSP)) or not is_token(subtype.strip(WSP)):
        raise ParseError("Bad Request: malformed Content-Type")
    mime = f"{kind.strip(WSP)}/{subtype.strip(WSP)}".lower()
    return ContentType(mime, parse_header_params(params, "Content-Type") if semi else Params())


def parse_tokens(values: list[str], what: str) -> tuple[str, ...]:
    """A comma-separated list of tokens (Allow, Supported, Require, Unsupported...)."""
    joined = [value for value in values if value.strip(WSP)]
    tokens = tuple(split_list(joined, what)) if joined else ()
    for token in tokens:
        if not is_token(token):
            raise ParseError(f"Bad Request: malformed {what}")
    return tokens


@dataclass(frozen=True, slots=True)
class ContactWildcard:
    """``Contact: *``: remove every binding (RFC 3261 §10.2.2, only with Expires: 0)."""

    def __str__(self) -> str:
        return "*"


def parse_contacts(values: list[str]) -> tuple[Address, ...] | ContactWildcard:
    """Contact values, or the wildcard; q and expires params are range-checked."""
    parts = split_list(values, "Contact")
    if parts == ["*"]:
        return ContactWildcard()
    if "*" in parts:
        raise ParseError("Bad Request: Contact '*' mixed with other contacts")
    contacts = tuple(parse_address(part, "Contact") for part in parts)
    for contact in contacts:
        q = contact.params.get("q")
        if q is not None and _QVALUE.fullmatch(q) is None:
            raise ParseError("Bad Request: malformed Contact q-value")
        expires = contact.params.get("expires")
        if expires is not None:
            parse_uint(expires, "Contact expires")
    return contacts


def parse_route_set(values: list[str], what: str) -> tuple[Address, ...]:
    """Route, Record-Route, Path, Service-Route: name-addrs only (RFC 3261 §20.34)."""
    parts = split_list(values, what)
    for part in parts:
        if "<" not in part:
            raise ParseError(f"Bad Request: {what} value must be a name-addr")
    return tuple(parse_address(part, what) for part in parts)


@dataclass(frozen=True, slots=True)
class Event:
    """RFC 6665 §8.2.1 Event: the package (with template) and params such as ``id``."""

    package: str
    params: Params = field(default_factory=Params)

    def __str__(self) -> str:
        return self.package + self.params.to_header_text()


def parse_event(value: str) -> Event:
    package, semi, params = value.partition(";")
    package = package.strip(WSP)
    if not is_token(package):
        raise ParseError("Bad Request: malformed Event")
    return Event(package.lower(), parse_header_params(params, "Event") if semi else Params())


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """RFC 6665 §8.2.3: active / pending / terminated, with expires, reason, retry-after."""

    state: str
    params: Params = field(default_factory=Params)

    @property
    def expires_s(self) -> int | None:
        value = self.params.get("expires")
        return None if value is None else parse_uint(value, "Subscription-State expires")

    def __str__(self) -> str:
        return self.state + self.params.to_header_text()


def parse_subscription_state(value: str) -> SubscriptionState:
    state, semi, params = value.partition(";")
    state = state.strip(WSP)
    if not is_token(state):
        raise ParseError("Bad Request: malformed Subscription-State")
    parsed = SubscriptionState(
        state.lower(), parse_header_params(params, "Subscription-State") if semi else Params()
    )
    for numeric in ("expires", "retry-after"):
        if parsed.params.get(numeric) is not None:
            parse_uint(str(parsed.params.get(numeric)), f"Subscription-State {numeric}")
    return parsed
