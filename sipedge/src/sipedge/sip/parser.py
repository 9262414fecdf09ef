"""From the bytes of a header block to a :class:`Request` or :class:`Response`.

RFC 3261 §7.1–7.3 and §25.1: start line with single spaces (RFC 4475 lwsstart, trws
are refused), header lines ``name HCOLON value`` with line folding (§7.3.1), CRLF
line ends only. Body framing lives in :mod:`sipedge.sip.framing`. :func:`check_request`
is the stateless sanity stage every element runs before anything else (Kamailio's
``sanity_check``): mandatory headers once each, their grammar, CSeq against the
method, the Request-URI scheme (416) and Require (420).

Limits make hostile input cheap: the whole message, one header line, the number of
header lines and of list values are bounded, and every step is linear in its input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipedge.sip.errors import MessageTooLarge, ParseError
from sipedge.sip.headers import CANONICAL, SPELLINGS, UINT32_MAX
from sipedge.sip.message import SIP_VERSION, Headers, Request, Response
from sipedge.sip.uri import SipUri, TelUri

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+")
_STATUS = re.compile(r"[1-6][0-9][0-9]")

#: Methods this core knows (RFC 3261 and the extensions a PBX meets).
KNOWN_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE"}
    | {"NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)
_MANDATORY = ("Call-ID", "CSeq", "From", "To")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one message may cost us; over them, 513 (or a stream close)."""

    max_message_bytes: int = 65536
    max_line_bytes: int = 8192
    max_header_lines: int = 256


DEFAULT_LIMITS = Limits()


class HeadError(ParseError):
    """An error found once the header lines were read.

    ``headers`` holds them and ``is_request`` says what the start line looked like, so
    a request can still be answered statelessly (its Via, From, To, Call-ID, CSeq) and
    a response dropped.
    """

    def __init__(self, reason: str, status: int, headers: Headers, is_request: bool) -> None:
        super().__init__(reason, status)
        self.headers = headers
        self.is_request = is_request


def parse_head(head: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse a start line and header lines (``head`` excludes the blank line)."""
    text = head.decode("utf-8", "surrogateescape")
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        raise ParseError("Bad Request: bare CR or LF in header section")
    if crlf >= limits.max_header_lines:
        raise MessageTooLarge("Message Too Large: too many header lines")
    start, _, block = text.partition("\r\n")
    if len(start) > limits.max_line_bytes:
        raise MessageTooLarge("Message Too Large: start line too long")
    headers = Headers._from_parsed(_header_fields(block, limits.max_line_bytes) if block else [])
    if start.startswith("SIP/"):
        return _response(start, headers)
    return _request(start, headers)


_FOLD = re.compile(r"\r\n[ \t]+")
# name ":" value, one per line; a line without a colon does not match at all.
_FIELD = re.compile(r"([^\r\n:]*):([^\r\n]*)")


def _header_fields(block: str, max_line: int) -> list[tuple[str, str, str]]:
    """``(key, canonical name, value)`` for each header line, folding undone (§7.3.1)."""
    if block[0] in " \t":
        raise ParseError("Bad Request: continuation line before any header")
    if "\r\n " in block or "\r\n\t" in block:
        block = _FOLD.sub(" ", block)
    pairs = _FIELD.findall(block)
    if len(pairs) != block.count("\r\n") + 1:
        raise ParseError("Bad Request: header line without a colon")
    long_lines = len(block) > max_line  # else no line can be too long
    spelling = SPELLINGS.get
    fields: list[tuple[str, str, str]] = []
    for name, value in pairs:
        if long_lines and (len(value) > max_line or len(name) > max_line):
            raise MessageTooLarge("Message Too Large: header line too long")
        known = spelling(name) or _unusual_name(name)
        fields.append((known[0], known[1], value.strip(" \t")))
    return fields


def _unusual_name(name: str) -> tuple[str, str]:
    """Key and spelling of a name the table does not hold verbatim ("TO ", "MaX-fOrWaRdS")."""
    name = name.rstrip(" \t")
    canonical = CANONICAL.get(name.lower())
    if canonical is not None:
        return canonical.lower(), canonical
    if _TOKEN.fullmatch(name) is None:
        raise ParseError("Bad Request: malformed header name")
    return name.lower(), name


def _request(line: str, headers: Headers) -> Request:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise HeadError("Bad Request: malformed Request-Line", 400, headers, True)
    method, uri_text, version = parts
    if _TOKEN.fullmatch(method) is None:
        raise HeadError("Bad Request: malformed method", 400, headers, True)
    if version != SIP_VERSION:
        if _VERSION.fullmatch(version) is not None:
            raise HeadError("Version Not Supported", 505, headers, True)
        raise HeadError("Bad Request: malformed SIP-Version", 400, headers, True)
    if uri_text.startswith("<"):
        raise HeadError("Bad Request: Request-URI must not be in <>", 400, headers, True)
    try:
        return Request(method, uri_text, headers)
    except ParseError as exc:
        raise HeadError(exc.reason, exc.status, headers, True) from None


def _response(line: str, headers: Headers) -> Response:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version != SIP_VERSION:
        raise HeadError("Version Not Supported", 505, headers, False)
    if _STATUS.fullmatch(code) is None:
        raise HeadError("Bad Request: malformed status code", 400, headers, False)
    return Response(int(code), reason, headers)


def check_request(
    request: Request,
    supported: frozenset[str] = frozenset(),
    methods: frozenset[str] = KNOWN_METHODS,
) -> None:
    """The stateless sanity stage: raise :class:`ParseError` with the status to answer.

    ``methods`` are those this element implements: others get 501 with Allow (RFC 3261
    §8.2.1). ``supported`` are the option tags it implements; anything else in
    Require is answered 420 with an Unsupported header (§8.2.2.3).
    """
    for name in _MANDATORY:
        request.headers.single(name)
    if request.headers.get("Via") is None:
        raise ParseError("Bad Request: missing Via header")
    _check_grammar(request)
    cseq = request.cseq
    if cseq.number > UINT32_MAX // 2:
        raise ParseError("Bad Request: CSeq number must be below 2**31")
    if request.method not in methods:
        raise _refusal("Not Implemented", 501, "Allow", ", ".join(sorted(methods)))
    if cseq.method != request.method:
        raise ParseError("Bad Request: CSeq method does not match the Request-Line")
    if not isinstance(request.uri, SipUri | TelUri):
        raise ParseError("Unsupported URI Scheme", 416)
    if isinstance(request.uri, SipUri) and request.uri.headers:
        raise ParseError("Bad Request: headers in the Request-URI")  # RFC 4475 escruri
    _check_require(request, supported)


def _check_grammar(request: Request) -> None:
    """Touch every header a PBX relies on so malformed ones fail here, as a 400."""
    branch = request.top_via.branch
    if branch is not None and branch.lower() == "z9hg4bk":
        raise ParseError("Bad Request: Via branch is only the magic cookie")
    _ = (request.call_id, request.from_, request.to, request.max_forwards)
    _ = (request.expires, request.contacts, request.routes, request.content_type)
    if "Content-Length" in request.headers:
        request.headers.single("Content-Length")


def _check_require(request: Request, supported: frozenset[str]) -> None:
    unknown = [tag for tag in request.option_tags("Require") if tag.lower() not in supported]
    if unknown and request.method not in ("ACK", "CANCEL"):
        raise _refusal("Bad Extension", 420, "Unsupported", ", ".join(unknown))


def _refusal(reason: str, status: int, header: str, value: str) -> ParseError:
    """The error to raise, made here so that no frame of the traceback holds it in a
    local (error -> traceback -> frame -> error: a cycle per refused request)."""
    error = ParseError(reason, status)
    error.add_header(header, value)
    return error
