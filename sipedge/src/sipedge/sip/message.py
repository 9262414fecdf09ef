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
from sipedge.sip.grammar import is_token, remembered
from sipedge.sip.headers import (
    LIST_HEADERS,
    SPELLINGS,
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
_MISSING = object()
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
        headers = cls()  # not cls.__new__(cls): mypyc cannot compile that call
        headers._fields = fields
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
                self._cache.pop(key, None)
                if self._index is not None:  # only this key's first value moved
                    self._index[key] = [value, *self._index[key][1:]]
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
        return self._view(header_key(name)[0], parse)

    def _view(self, key: str, parse: Callable[[Headers], T]) -> T:
        """:meth:`typed` by lower-case canonical key (the message's own views)."""
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._cache[key] = parse(self)
        return cast(T, value)

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
    known = SPELLINGS.get(name)  # every spelling in the table is a token
    if known is not None:
        return known
    if not is_token(name):
        raise ProtocolMisuse(f"{name!r} is not a header name")
    return header_key(name)


def _one(headers: Headers, key: str, name: str) -> str:
    """The one value of a header that must appear exactly once (by key), else a 400."""
    lines = headers._by_key(key)
    if len(lines) != 1:
        problem = "missing" if not lines else "more than one"
        raise ParseError(f"Bad Request: {problem} {name} header")
    return lines[0]


def _vias(headers: Headers) -> list[Via]:
    lines = headers._by_key("via")
    if not lines:
        raise ParseError("Bad Request: missing Via header")
    return parse_vias(lines)


def _top_via(headers: Headers) -> Via:
    return headers.typed("Via", _vias)[0]


def _call_id(headers: Headers) -> str:
    return parse_call_id(_one(headers, "call-id", "Call-ID"))


def _cseq(headers: Headers) -> CSeq:
    return parse_cseq(_one(headers, "cseq", "CSeq"))


def _from(headers: Headers) -> Address:
    return parse_address(_one(headers, "from", "From"), "From")


def _to(headers: Headers) -> Address:
    return parse_address(_one(headers, "to", "To"), "To")


def _contacts(headers: Headers) -> tuple[Address, ...] | ContactWildcard:
    lines = headers._by_key("contact")
    return parse_contacts(lines) if lines else ()


def _routes(headers: Headers) -> tuple[Address, ...]:
    lines = headers._by_key("route")
    return parse_route_set(lines, "Route") if lines else ()


def _record_routes(headers: Headers) -> tuple[Address, ...]:
    lines = headers._by_key("record-route")
    return parse_route_set(lines, "Record-Route") if lines else ()


def _optional(name: str, parse: Callable[[str], T]) -> Callable[[Headers], T | None]:
    """The typed view of a header that may be absent but must not be repeated."""
    key = header_key(name)[0]

    def parse_optional(headers: Headers) -> T | None:
        if not headers._by_key(key):
            return None
        return parse(_one(headers, key, name))

    return parse_optional


def _parse_expires(value: str) -> int:
    return parse_uint(value, "Expires")


_max_forwards = _optional("Max-Forwards", parse_max_forwards)
_expires = _optional("Expires", _parse_expires)
_content_type = _optional("Content-Type", parse_content_type)


class Message:
    """What requests and responses share: headers, body and their typed views."""

    __slots__ = ("body", "headers")

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body

    # -- typed views (parsed on first use, 400 on malformed or missing) ---------------
    # The views asked for most read the cache first (a parsed view is never empty).
    @property
    def vias(self) -> list[Via]:
        found = cast(list[Via] | None, self.headers._cache.get("via"))
        return found or self.headers._view("via", _vias)

    @property
    def top_via(self) -> Via:
        return self.vias[0]

    @property
    def branch(self) -> str | None:
        """The top Via's branch: the transaction key (RFC 3261 §17.2.3)."""
        return self.vias[0].branch

    @property
    def call_id(self) -> str:
        found = cast(str | None, self.headers._cache.get("call-id"))
        return found or self.headers._view("call-id", _call_id)

    @property
    def cseq(self) -> CSeq:
        found = cast(CSeq | None, self.headers._cache.get("cseq"))
        return found or self.headers._view("cseq", _cseq)

    @property
    def from_(self) -> Address:
        found = cast(Address | None, self.headers._cache.get("from"))
        return found or self.headers._view("from", _from)

    @property
    def to(self) -> Address:
        found = cast(Address | None, self.headers._cache.get("to"))
        return found or self.headers._view("to", _to)

    @property
    def max_forwards(self) -> int | None:
        return self.headers._view("max-forwards", _max_forwards)

    @property
    def expires(self) -> int | None:
        return self.headers._view("expires", _expires)

    @property
    def contacts(self) -> tuple[Address, ...] | ContactWildcard:
        return self.headers._view("contact", _contacts)

    @property
    def routes(self) -> tuple[Address, ...]:
        return self.headers._view("route", _routes)

    @property
    def record_routes(self) -> tuple[Address, ...]:
        return self.headers._view("record-route", _record_routes)

    @property
    def content_type(self) -> ContentType | None:
        return self.headers._view("content-type", _content_type)

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the first via-parm as ``via``; the others keep their bytes (RFC 3581 §4).

        The typed view is updated rather than dropped: ``via`` came from parsing this
        Via and only its parameters changed, so parsing its text would give it back.
        """
        vias = self.vias
        headers = self.headers
        line = headers._by_key("via")[0]
        values = split_list([line], "Via") if "," in line else [line]
        values[0] = str(via)
        headers.replace_first("Via", ", ".join(values))
        headers._cache["via"] = [via, *vias[1:]]

    def option_tags(self, name: str) -> tuple[str, ...]:
        """Tokens of Allow, Supported, Require, Proxy-Require, Unsupported, Allow-Events."""
        key = header_key(name)[0]
        if not self.headers._by_key(key):
            return ()
        return self.headers._view(key, lambda h: parse_tokens(h._by_key(key), name))

    # -- serialization -------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Canonical wire form: Content-Length last, stating the body's true length."""
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for k, n, v in self.headers._fields if k != "content-length"]
        lines += [f"Content-Length: {len(self.body)}", "", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:  # not ``__bytes__ = to_bytes``: mypyc breaks on that alias
        return self.to_bytes()


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
        self._set_uri(uri)

    @property
    def uri(self) -> Uri:
        return self._uri

    @uri.setter
    def uri(self, value: Uri | str) -> None:
        self._set_uri(value)

    # Not inlined in the setter: compiled by mypyc, ``self.uri = text`` in __init__ refused
    # a str (it checked the value against the getter's type).
    def _set_uri(self, value: Uri | str) -> None:
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
_COPIED_TO_RESPONSE = tuple(header_key(name) for name in ("Via", "From", "To", "Call-ID", "CSeq"))
#: Copied fields whose typed views the response can share: same lines, same values
#: (To is left out: the response's To gets a tag).
_SHARED_VIEWS = ("via", "from", "call-id", "cseq")


def make_response(
    request: Request, status: int, reason: str, *, to_tag: str | None = None
) -> Response:
    """A response to ``request`` as RFC 3261 §8.2.6 builds one.

    Every Via (in order), From, To, Call-ID and CSeq are copied; ``to_tag`` is added to
    To when To has none yet (§8.2.6.2; not for 100 Trying); a 100 copies Timestamp
    (§8.2.6.1). The caller adds Contact, Record-Route and the rest.
    """
    tagged_to = None
    if to_tag is not None and status != 100 and request.to.tag is None:
        tagged_to = _tagged_to(request, to_tag)
    response = Response(status, reason)
    fields = response.headers._fields
    by_key = request.headers._by_key
    for key, canonical in _COPIED_TO_RESPONSE:
        if key == "to" and tagged_to is not None:
            fields.append((key, canonical, tagged_to))  # request.to said: exactly one To
        else:
            fields.extend([(key, canonical, value) for value in by_key(key)])
    parsed, shared = request.headers._cache, response.headers._cache
    for key in _SHARED_VIEWS:
        if key in parsed:
            view = parsed[key]
            shared[key] = list(view) if isinstance(view, list) else view
    if status == 100:
        fields.extend(("timestamp", "Timestamp", v) for v in request.headers._by_key("timestamp"))
    return response


def _tagged_to(request: Request, tag: str) -> str:
    """``str(request.to.with_tag(tag))``: the To a response carries (§8.2.6.2)."""
    to = request.to
    if "\r" in tag or "\n" in tag:
        raise ProtocolMisuse("CR or LF in the value of To: header injection")
    if "tag" in to.params:  # a bare ";tag" gets its value where it stands
        return str(to.with_tag(tag))
    # Otherwise the tag goes last: the address as it would be written, then ";tag=".
    return _written_address(request.headers._by_key("to")[0]) + ";tag=" + tag


#: ``str(parse_address(text))`` by ``text``: the To of the answers to one request.
_written_address = remembered(lambda text, what: str(parse_address(text, what)), "To")
