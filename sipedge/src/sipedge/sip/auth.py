"""The header grammar of SIP authentication: challenges and credentials, parsed and written.

Owns the values of WWW-Authenticate / Proxy-Authenticate (a *challenge*) and Authorization /
Proxy-Authorization (*credentials*): RFC 3261 §25.1 (``challenge``, ``credentials``,
``auth-param``), §20.7, §20.27, §20.28, §20.44 and RFC 7616 §3.3–3.4 for which Digest
parameters are written as quoted strings. The digest arithmetic lives in
:mod:`sipedge.sip.digest`; this module only reads and writes text.

One header field value holds exactly one challenge or one set of credentials: RFC 3261 §7.3.1
forbids combining these four headers into one comma-separated row, so the caller hands over
each row on its own.

Values are unquoted on the way in and the parameter names keep their spelling but compare
case-insensitively. A scheme we do not know (RFC 4475 §3.3.7 ``NoOneKnowsThisScheme``) parses
as that scheme with its parameters, or with its raw text when they are not auth-params (an
RFC 7235 token68, say); it is never an error, so that a proxy can forward it unchanged.
Malformed Digest values raise :class:`ParseError` (400) with a reason naming the header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Self

from sipedge.sip.errors import ParseError, ProtocolMisuse
from sipedge.sip.grammar import WSP, find_quote_end, is_token, quote, split_outside, unquote

#: Auth-params beyond this count are refused (hostile input); Digest needs about ten.
MAX_AUTH_PARAMS = 32

#: Header names, for the reason phrases of errors.
WWW_AUTHENTICATE = "WWW-Authenticate"
PROXY_AUTHENTICATE = "Proxy-Authenticate"
AUTHORIZATION = "Authorization"
PROXY_AUTHORIZATION = "Proxy-Authorization"

DIGEST = "Digest"

# RFC 7616 §3.3 (challenge) and §3.4 (credentials): the Digest parameters that are always
# written as quoted strings. The others (algorithm, stale, nc, qop in credentials, charset,
# userhash) are tokens. An unknown parameter is written as a token when it is one.
_CHALLENGE_QUOTED = frozenset({"realm", "domain", "nonce", "opaque", "qop"})
_CREDENTIALS_QUOTED = frozenset(
    {"username", "realm", "nonce", "uri", "response", "cnonce", "opaque", "auts"}
)

# LWS = [*WSP CRLF] 1*WSP (RFC 3261 §25.1): a folded line becomes one space.
_FOLD = re.compile(r"\r?\n[ \t]+")
_SCHEME_SPLIT = re.compile(r"[ \t]+")

AuthParam = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _AuthValue:
    """A scheme and either its ordered auth-params (values unquoted) or its raw text."""

    scheme: str
    params: tuple[AuthParam, ...] = ()
    raw: str | None = None
    #: lower-case name → value (names are unique): the verifier asks for ten of them.
    _by_name: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_scheme(self.scheme)
        if self.raw is not None and (self.params or _has_line_break(self.raw)):
            raise ProtocolMisuse("auth value: raw text excludes params and line breaks")
        object.__setattr__(self, "_by_name", _checked_index(self.params))

    @classmethod
    def _parsed(
        cls, scheme: str, params: tuple[AuthParam, ...], raw: str | None, by_name: dict[str, str]
    ) -> Self:
        """An instance from :func:`_parse`, whose output needs no second check."""
        value = cls.__new__(cls)  # compiled by mypyc, object.__new__(cls) is refused
        for name, item in (("scheme", scheme), ("params", params), ("raw", raw)):
            object.__setattr__(value, name, item)
        object.__setattr__(value, "_by_name", by_name)
        return value

    @property
    def is_digest(self) -> bool:
        """True for the Digest scheme (scheme names compare case-insensitively)."""
        return self.scheme.lower() == "digest"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The unquoted value of parameter ``name`` (case-insensitive), or ``default``."""
        found = self._by_name.get(name)  # the usual: asked in lower case already
        return found if found is not None else self._by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def to_header_value(self) -> str:
        """Serialize as a header field value, quoting per RFC 7616 §3.3–3.4."""
        if self.raw is not None:
            return f"{self.scheme} {self.raw}" if self.raw else self.scheme
        if not self.params:
            return self.scheme
        rendered = ", ".join(f"{k}={self._render(k, v)}" for k, v in self.params)
        return f"{self.scheme} {rendered}"

    def _render(self, name: str, value: str) -> str:
        if name.lower() in self._quoted() or not is_token(value):
            return quote(value)
        return value

    # A method, not a ClassVar: mypyc turns a ClassVar of a dataclass into a field.
    def _quoted(self) -> frozenset[str]:
        """The parameters written as quoted strings whatever their value."""
        return frozenset()


@dataclass(frozen=True, slots=True)
class Challenge(_AuthValue):
    """A WWW-Authenticate or Proxy-Authenticate value (RFC 3261 §20.44, §20.27)."""

    def _quoted(self) -> frozenset[str]:
        return _CHALLENGE_QUOTED


@dataclass(frozen=True, slots=True)
class Credentials(_AuthValue):
    """An Authorization or Proxy-Authorization value (RFC 3261 §20.7, §20.28)."""

    def _quoted(self) -> frozenset[str]:
        return _CREDENTIALS_QUOTED


def parse_challenge(value: str, header: str = WWW_AUTHENTICATE) -> Challenge:
    """Parse one WWW-Authenticate / Proxy-Authenticate value; ``header`` names it in errors."""
    return Challenge._parsed(*_parse(value, header))


def parse_credentials(value: str, header: str = AUTHORIZATION) -> Credentials:
    """Parse one Authorization / Proxy-Authorization value; ``header`` names it in errors."""
    return Credentials._parsed(*_parse(value, header))


_Parsed = tuple[str, tuple[AuthParam, ...], str | None, dict[str, str]]


def _parse(value: str, header: str) -> _Parsed:
    """Split ``scheme LWS auth-param *(COMMA auth-param)``; other schemes may keep raw text."""
    text = _unfold(value, header)
    parts = _SCHEME_SPLIT.split(text, maxsplit=1)
    scheme = parts[0]
    if not is_token(scheme):
        raise ParseError(f"Bad Request: malformed auth-scheme in {header}")
    rest = parts[1] if len(parts) > 1 else ""
    is_digest = scheme.lower() == "digest"
    if not rest:
        if is_digest:
            raise ParseError(f"Bad Request: Digest without parameters in {header}")
        return scheme, (), None, {}
    try:
        params, by_name = _parse_params(rest, header)
    except ParseError:
        if is_digest:
            raise
        return scheme, (), rest, {}
    return scheme, params, None, by_name


def _unfold(value: str, header: str) -> str:
    """Replace folded lines by a space; any other CR or LF is a 400."""
    if "\r" in value or "\n" in value:
        value = _FOLD.sub(" ", value)
        if _has_line_break(value):
            raise ParseError(f"Bad Request: line break in {header}")
    return value.strip(WSP)


def _parse_params(text: str, header: str) -> tuple[tuple[AuthParam, ...], dict[str, str]]:
    """Parse ``auth-param *(COMMA auth-param)``: names unique, values token or quoted.

    Returns the params in order and by lower-case name.
    """
    plain = _PLAIN_PARAMS.fullmatch(text) is not None
    if plain:  # every name a token, every value a token or a whole quoted string
        pieces: list[tuple[str | None, str]] = _ONE_PARAM.findall(text)
    else:  # the general rules, and their exact errors
        try:
            split = split_outside(text, ",")
        except ParseError:
            raise ParseError(f"Bad Request: malformed parameters in {header}") from None
        pieces = [_split_param(piece) for piece in split]
    if len(pieces) > MAX_AUTH_PARAMS:
        raise ParseError(f"Bad Request: too many parameters in {header}")
    params: list[AuthParam] = []
    by_name: dict[str, str] = {}
    for name, raw_value in pieces:
        if name is None:
            raise ParseError(f"Bad Request: malformed auth-param in {header}")
        lname = name.lower()
        if lname in by_name:
            raise ParseError(f"Bad Request: repeated parameter in {header}")
        if plain:
            value = unquote(raw_value) if raw_value[0] == '"' else raw_value
        else:
            value = _param_value(raw_value, header)
        by_name[lname] = value
        params.append((name, value))
    return tuple(params), by_name


def _split_param(piece: str) -> tuple[str | None, str]:
    """``(name, raw value)`` of one comma-separated piece; a ``None`` name is malformed."""
    name, eq, raw_value = piece.partition("=")
    name = name.strip(WSP)
    if not eq or not is_token(name):
        return None, ""
    return name, raw_value.strip(WSP)


_WORD = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED_TEXT = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # "(?:[^"\\]|\\.)*", unrolled: 2x faster
_BARE_PARAM = rf"[ \t]*{_WORD}[ \t]*=[ \t]*(?:{_WORD}|{_QUOTED_TEXT})[ \t]*"
# The usual form of a Digest header, checked and then split by the regex engine instead
# of a character at a time. Linear: the quoted-string's alternatives cannot overlap.
_PLAIN_PARAMS = re.compile(rf"{_BARE_PARAM}(?:,{_BARE_PARAM})*", re.DOTALL)
_ONE_PARAM = re.compile(rf"[ \t]*({_WORD})[ \t]*=[ \t]*({_WORD}|{_QUOTED_TEXT})[ \t]*", re.DOTALL)


def _param_value(text: str, header: str) -> str:
    """``token / quoted-string``, returned unquoted."""
    if text.startswith('"'):
        try:
            if find_quote_end(text, 0) == len(text):
                return unquote(text)
        except ParseError:
            pass
        raise ParseError(f"Bad Request: malformed quoted string in {header}")
    if not is_token(text):
        raise ParseError(f"Bad Request: malformed auth-param value in {header}")
    return text


def _check_scheme(scheme: str) -> None:
    if not is_token(scheme):
        raise ProtocolMisuse(f"auth-scheme {scheme!r} is not a token")


def _checked_index(params: tuple[AuthParam, ...]) -> dict[str, str]:
    """Our own values must be writable: token names, unique, no line breaks in values.

    Returns them by lower-case name.
    """
    by_name: dict[str, str] = {}
    for name, value in params:
        lname = name.lower()
        if lname in by_name or _has_line_break(value) or not is_token(name):
            raise ProtocolMisuse(f"auth-param {name!r} cannot be written")
        by_name[lname] = value
    return by_name


def _has_line_break(text: str) -> bool:
    return "\r" in text or "\n" in text
