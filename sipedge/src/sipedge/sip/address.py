"""name-addr and addr-spec with header parameters (RFC 3261 §20.10, §20.20, §20.39, §25.1).

Used by From, To, Contact, Route, Record-Route, Reply-To, Path and friends. In the
addr-spec form (no angle brackets) every ``;`` after the URI starts a *header*
parameter (RFC 4475 §3.3.12 cparam01), and a URI with ``,``, ``;`` or ``?`` must be
enclosed in ``<>`` (§3.1.2.13 regbadct). A display name is a quoted string or tokens
separated by whitespace (§3.1.2.15 baddn); no LWS before ``<`` is accepted
(§3.1.1.6 lwsdisp, a known grammar bug).
"""

from __future__ import annotations

from typing import NamedTuple

from sipedge.sip.errors import ParseError
from sipedge.sip.grammar import (
    EMPTY_PARAMS,
    WSP,
    Params,
    find_quote_end,
    is_token,
    parse_header_params,
    quote,
    remembered,
    unquote,
)
from sipedge.sip.uri import SipUri, Uri, parse_uri


class Address(NamedTuple):
    """A URI with an optional display name and header parameters (``tag``, ``q``, ...).

    A named tuple for the speed of building one per From, To and Contact (see uri.py).
    """

    uri: Uri
    display_name: str | None = None
    params: Params = EMPTY_PARAMS

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipUri:
        """The URI when it is SIP or SIPS; a 400 otherwise (callers that need routing)."""
        if not isinstance(self.uri, SipUri):
            raise ParseError(f"Bad Request: {self.uri.scheme}: URI where a SIP URI is needed")
        return self.uri

    def with_tag(self, tag: str) -> Address:
        return Address(self.uri, self.display_name, self.params.replace("tag", tag))

    def __str__(self) -> str:
        shown = "" if self.display_name is None else f"{quote(self.display_name)} "
        return f"{shown}<{self.uri}>{self.params.to_header_text()}"


def _parse_address(text: str, what: str) -> Address:
    """Parse one name-addr or addr-spec with its header params."""
    value = text.strip(WSP)
    if not value:
        raise ParseError(f"Bad Request: empty {what}")
    if value[0] == '"':
        end = find_quote_end(value, 0)
        display: str | None = unquote(value[:end])
        rest = value[end:].lstrip(WSP)
        if not rest.startswith("<"):
            raise ParseError(f"Bad Request: display name without <URI> in {what}")
        return _name_addr(display, rest, what)
    lt = value.find("<")
    if lt >= 0:
        return _name_addr(_token_display_name(value[:lt], what), value[lt:], what)
    return _addr_spec(value, what)


#: Parse one name-addr or addr-spec with its header params (results are remembered: the
#: answer to a challenge and the rest of a dialog repeat From, To and Contact).
parse_address = remembered(_parse_address, "address")


def _token_display_name(text: str, what: str) -> str | None:
    words = text.split()
    if not all(is_token(word) for word in words):
        raise ParseError(f"Bad Request: display name of {what} must be quoted")
    return " ".join(words) or None


def _name_addr(display: str | None, rest: str, what: str) -> Address:
    close = rest.find(">")
    if close < 0:
        raise ParseError(f"Bad Request: missing '>' in {what}")
    inner = rest[1:close]
    if inner != inner.strip(" \t"):
        raise ParseError(f"Bad Request: whitespace inside <> in {what}")
    uri = parse_uri(inner, what)
    params = rest[close + 1 :].strip(WSP)
    if not params:
        return Address(uri, display)
    if params[0] != ";":
        raise ParseError(f"Bad Request: junk after '>' in {what}")
    return Address(uri, display, parse_header_params(params[1:], what))


def _addr_spec(value: str, what: str) -> Address:
    uri_text, semi, params = value.partition(";")
    uri_text = uri_text.rstrip(WSP)
    if "?" in uri_text or "," in uri_text:
        raise ParseError(f"Bad Request: URI with '?' or ',' must be in <> in {what}")
    if any(ch in uri_text for ch in WSP):
        raise ParseError(f"Bad Request: whitespace in URI of {what}")
    uri = parse_uri(uri_text, what)
    if not semi:
        return Address(uri)
    return Address(uri, None, parse_header_params(params, what))
