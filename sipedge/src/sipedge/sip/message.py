"""The SIP message model: requests, responses and their ordered, case-insensitive headers.

RFC 3261 §7: a start line, header fields in the order received (the relative order of
same-named fields matters, §7.3.1), and an opaque body kept as bytes. Header names are
matched case-insensitively and by compact form; values are stored raw (unfolded,
trimmed) and parsed on first use into the typed objects of :mod:`sipedge.sip.headers`
(a cache dropped whenever that header changes). Serialization is canonical: long
header names, ``Name: value`` lines, CRLF, and a Content-Length that always comes last
and always states the true length of the body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar, cast

from sipedge.sip.address import Address, parse_address
from sipedge.sip.errors import ParseError, ProtocolMisuse
from sipedge.sip.grammar import is_token
from sipedge.sip.headers import (
    LIST_HEADERS,
    ContactWildcard,
    ContentType,
    CSeq,
    Via,
    canonical_name,
    header_key,
    parse_call_id,
    parse_contacts,
    parse_content_type,
    parse_cseq,
    parse_max_forwards,
    parse_route_set,
    parse_tokens,
    parse_uint,
    parse_vias,
    split_list,
)
from sipedge.sip.uri import Uri, parse_uri

T = TypeVar("T")
_NONE: list[str] = []
SIP_VERSION = "SIP/2.0"


class Headers:
    """Ordered header fields; lookups by any spelling of a name (``i``, ``CALL-ID``...)."""

    __slots__ = ("_cache", "_fields", "_index")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []
        self._cache: dict[str, object] = {}
        self._index: dict[str, list[str]] | None = None
        for name, value in fields:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, fields: list[tuple[str, str, str]]) -> Headers:
        """Adopt ``(key, canonical name, value)`` triples built by the parser."""
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._cache = {}
        headers._index = None
        return headers

    def _by_key(self, key: str) -> list[str]:
        """The values stored under a lower-case canonical ``key`` (do not mutate)."""
        index = self._index
        if index is None:
            index = self._index = {}
            for field_key, _, value in self._fields:
                if field_key in index:
                    index[field_key].append(value)
                else:
                    index[field_key] = [value]
        return index.get(key, _NONE)

    def get(self, name: str) -> str | None:
        """The first raw value of ``name``, or ``None``."""
        values = self._by_key(header_key(name)[0])
        return values[0] if values else None

    def lines(self, name: str) -> list[str]:
        """Every raw header line value of ``name``, in order, unsplit."""
        return list(self._by_key(header_key(name)[0]))

    def values(self, name: str) -> list[str]:
        """Every value of ``name``; comma-separated list headers are split (§7.3.1)."""
        lines = self.lines(name)
        if lines and header_key(name)[0] in LIST_HEADERS:
            return split_list(lines, canonical_name(name))
        return lines

    def single(self, name: str) -> str:
        """The one value of a header that must appear exactly once, else a 400."""
        lines = self._by_key(header_key(name)[0])
        if len(lines) != 1:
            problem = "missing" if not lines else "more than one"
            raise ParseError(f"Bad Request: {problem} {canonical_name(name)} header")
        return lines[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str) -> None:
        """Append a header line after all others."""
        key, canonical = _checked_name(name, value)
        self._fields.append((key, canonical, value))
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before all others (a proxy's new top Via)."""
        key, canonical = _checked_name(name, value)
        self._fields.insert(0, (key, canonical, value))
        self._changed(key)

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one, where the first one stood."""
        key, canonical = _checked_name(name, value)
        out: list[tuple[str, str, str]] = []
        placed = False
        for field_ in self._fields:
            if field_[0] != key:
                out.append(field_)
            elif not placed:
                out.append((key, canonical, value))
                placed = True
        if not placed:
            out.append((key, canonical, value))
        self._fields = out
        self._changed(key)

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first line of ``name`` in place (append when there is none)."""
        key, canonical = _checked_name(name, value)
        for index, field_ in enumerate(self._fields):
            if field_[0] == key:
                self._fields[index] = (key, canonical, value)
                self._changed(key)
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = header_key(name)[0]
        self._fields = [f for f in self._fields if f[0] != key]
        self._changed(key)

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first line of ``name`` (a proxy's own top Via)."""
        key = header_key(name)[0]
        for index, (field_key, _, value) in enumerate(self._fields):
            if field_key == key:
                del self._fields[index]
                self._changed(key)
                return value
        return None

    def _changed(self, key: str) -> None:
        self._cache.pop(key, None)
        self._index = None

    def copy(self) -> Headers:
        return Headers._from_parsed(list(self._fields))

    def typed(self, name: str, parse: Callable[[Headers], T]) -> T:
        """``parse(self)``, computed once until a header called ``name`` changes."""
        key = header_key(name)[0]
        try:
            return cast(T, self._cache[key])
        except KeyError:
            value = parse(self)
            self._cache[key] = value
            return value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


def _checked_name(name: str, value: str) -> tuple[str, str]:
    """Key and canonical name, after refusing what would corrupt the wire form."""
    if "\r" in value or "\n" in value:
        raise ProtocolMisuse(f"CR or LF in the value of {name}: header injection")
    if not is_token(name):
        raise ProtocolMisuse(f"{name!r} is not a header name")
    return header_key(name)


def _vias(headers: Headers) -> list[Via]:
    lines = headers.lines("Via")
    if not lines:
        raise ParseError("Bad Request: missing Via header")
    return parse_vias(lines)


def _top_via(headers: Headers) -> Via:
    return headers.typed("Via", _vias)[0]


class Message:
    """What requests and responses share: headers, body and their typed views."""

    __slots__ = ("body", "headers")

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body

    # -- typed views (parsed on first use, 400 on malformed or missing) ---------------
    @property
    def vias(self) -> list[Via]:
        return self.headers.typed("Via", _vias)

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def branch(self) -> str | None:
        """The top Via's branch: the transaction key (RFC 3261 §17.2.3)."""
        return self.top_via.branch

    @property
    def call_id(self) -> str:
        return self.headers.typed("Call-ID", lambda h: parse_call_id(h.single("Call-ID")))

    @property
    def cseq(self) -> CSeq:
        return self.headers.typed("CSeq", lambda h: parse_cseq(h.single("CSeq")))

    @property
    def from_(self) -> Address:
        return self.headers.typed("From", lambda h: parse_address(h.single("From"), "From"))

    @property
    def to(self) -> Address:
        return self.headers.typed("To", lambda h: parse_address(h.single("To"), "To"))

    @property
    def max_forwards(self) -> int | None:
        return self.headers.typed("Max-Forwards", _optional("Max-Forwards", parse_max_forwards))

    @property
    def expires(self) -> int | None:
        return self.headers.typed("Expires", _optional("Expires", _parse_expires))

    @property
    def contacts(self) -> tuple[Address, ...] | ContactWildcard:
        return self.headers.typed("Contact", lambda h: parse_contacts(h.lines("Contact")))

    @property
    def routes(self) -> tuple[Address, ...]:
        return self.headers.typed("Route", lambda h: parse_route_set(h.lines("Route"), "Route"))

    @property
    def record_routes(self) -> tuple[Address, ...]:
        return self.headers.typed(
            "Record-Route", lambda h: parse_route_set(h.lines("Record-Route"), "Record-Route")
        )

    @property
    def content_type(self) -> ContentType | None:
        return self.headers.typed("Content-Type", _optional("Content-Type", parse_content_type))

    def option_tags(self, name: str) -> tuple[str, ...]:
        """Tokens of Allow, Supported, Require, Proxy-Require, Unsupported, Allow-Events."""
        return self.headers.typed(name, lambda h: parse_tokens(h.lines(name), name))

    # -- serialization -------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Canonical wire form: Content-Length last, stating the body's true length."""
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for k, n, v in self.headers._fields if k != "content-length"]
        lines += [f"Content-Length: {len(self.body)}", "", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    __bytes__ = to_bytes


def _parse_expires(value: str) -> int:
    return parse_uint(value, "Expires")


def _optional(name: str, parse: Callable[[str], T]) -> Callable[[Headers], T | None]:
    def parse_optional(headers: Headers) -> T | None:
        lines = headers.lines(name)
        if not lines:
            return None
        return parse(headers.single(name))

    return parse_optional


class Request(Message):
    """A SIP request. ``uri`` is the parsed Request-URI."""

    __slots__ = ("_uri", "_uri_text", "method")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @property
    def uri(self) -> Uri:
        return self._uri

    @uri.setter
    def uri(self, value: Uri | str) -> None:
        if isinstance(value, str):
            self._uri = parse_uri(value, "Request-URI")
            self._uri_text = value
        else:
            self._uri = value
            self._uri_text = str(value)

    @property
    def uri_text(self) -> str:
        """The Request-URI as it stands on the wire (as received, or ``str(uri)``)."""
        return self._uri_text

    def start_line(self) -> str:
        return f"{self.method} {self._uri_text} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


class Response(Message):
    """A SIP response: status code 100..699 and a reason phrase (may be empty)."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


#: Header fields a response copies from its request (RFC 3261 §8.2.6.2), in this order.
_COPIED_TO_RESPONSE = ("Via", "From", "To", "Call-ID", "CSeq")


def make_response(
    request: Request, status: int, reason: str, *, to_tag: str | None = None
) -> Response:
    """A response to ``request`` as RFC 3261 §8.2.6 builds one.

    Every Via (in order), From, To, Call-ID and CSeq are copied; ``to_tag`` is added to
    To when To has none yet (§8.2.6.2; not for 100 Trying); a 100 copies Timestamp
    (§8.2.6.1). The caller adds Contact, Record-Route and the rest.
    """
    response = Response(status, reason)
    fields = response.headers._fields
    for name in _COPIED_TO_RESPONSE:
        key, canonical = header_key(name)
        fields.extend((key, canonical, value) for value in request.headers._by_key(key))
    if status == 100:
        fields.extend(("timestamp", "Timestamp", v) for v in request.headers._by_key("timestamp"))
    if to_tag is not None and status != 100 and request.to.tag is None:
        response.headers.set("To", str(request.to.with_tag(to_tag)))
    return response
