"""URIs of SIP: SIP/SIPS (RFC 3261 §19.1, §25.1), TEL (RFC 3966) and any other absolute URI.

User, password and parameter values are stored unescaped exactly once (RFC 3261
§19.1.2; RFC 4475 §3.1.1.3 esc01: ``n%61me=v%61lue%25%34%31`` is ``name=value%41``)
and escaped again on output, so parse → str → parse is a fixed point. Hosts keep IPv6
references in brackets and are lower-cased (RFC 5118 §4.1–4.4, §4.10 tolerated).

The URI types are named tuples rather than frozen dataclasses: every message carries
three or more URIs, and a frozen dataclass took 3.1 µs to build against 0.4 µs
(measured for ``bench/parse.py``).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sipedge.sip.errors import ParseError
from sipedge.sip.grammar import (
    DEFAULT_MAX_PARAMS,
    EMPTY_PARAMS,
    Params,
    escape,
    remembered,
    unescape,
)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# RFC 3261 §25.1 SIP-URI in one pass; every group is linear (no nested quantifiers).
_SIP_BODY = re.compile(
    r"(?:(?P<user>[A-Za-z0-9\-_.!~*'()&=+$,;?/%]*)"
    r"(?::(?P<password>[A-Za-z0-9\-_.!~*'()&=+$,%]*))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>;[^?]*)?"
    r"(?:\?(?P<headers>.*))?",
    re.DOTALL,
)
_PARAM_CHARS = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$%]+")
_HEADER_CHARS = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]*")
_TEL_BODY = re.compile(r"[0-9A-Fa-f*#+\-.()pwPW]+(?:;[^?]*)?")
_USER_SAFE = "&=+$,;?/"
_PASSWORD_SAFE = "&=+$,"  # noqa: S105  (characters, not a password)
_PARAM_SAFE = "[]/:&+$"
_HEADER_SAFE = "[]/?:+$"

#: The default ports of RFC 3261 §19.1.2 (used when a URI names none).
DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


class SipUri(NamedTuple):
    """``sip:`` or ``sips:`` URI; ``host`` is lower-case, IPv6 kept as ``[addr]``."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = EMPTY_PARAMS
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "sip"

    @property
    def host_address(self) -> str:
        """The host without IPv6 brackets, for sockets and comparisons."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def effective_port(self) -> int:
        """The port, or the scheme's default (5060 / 5061)."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased, if any."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def aor(self) -> str:
        """Address-of-record form: ``scheme:user@host``, no port, params or headers."""
        user = f"{escape(self.user, _USER_SAFE)}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host}"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                out += [":", escape(self.password, _PASSWORD_SAFE)]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        out.append(_params_text(self.params))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{escape(n, _HEADER_SAFE)}={escape(v, _HEADER_SAFE)}" for n, v in self.headers
                )
            )
        return "".join(out)


def _params_text(params: Params) -> str:
    return "".join(
        f";{escape(n, _PARAM_SAFE)}"
        if v is None
        else f";{escape(n, _PARAM_SAFE)}={escape(v, _PARAM_SAFE)}"
        for n, v in params
    )


class TelUri(NamedTuple):
    """``tel:`` URI (RFC 3966): the number as written and its parameters."""

    number: str
    params: Params = EMPTY_PARAMS
    scheme: str = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{_params_text(self.params)}"


class AbsoluteUri(NamedTuple):
    """A URI of a scheme SIP does not interpret (RFC 3261 §25.1 absoluteURI); opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | TelUri | AbsoluteUri


def _parse_uri(text: str, what: str) -> Uri:
    """Parse any URI SIP carries; other schemes become :class:`AbsoluteUri`."""
    scheme, colon, rest = text.partition(":")
    if not colon or _SCHEME.fullmatch(scheme) is None:
        raise ParseError(f"Bad Request: malformed {what}")
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip(lscheme, rest, what)
    if lscheme == "tel":
        return _parse_tel(rest, what)
    if not rest or any(ch in rest for ch in ' \t\r\n<>"'):
        raise ParseError(f"Bad Request: malformed {what}")
    return AbsoluteUri(lscheme, rest)


#: Parse any URI SIP carries; other schemes become :class:`AbsoluteUri` (results are
#: remembered: a Request-URI or a contact comes again and again).
parse_uri = remembered(_parse_uri, "URI")


def _parse_sip(scheme: str, rest: str, what: str) -> SipUri:
    match = _SIP_BODY.fullmatch(rest)
    if match is None:
        raise ParseError(f"Bad Request: malformed {what}")
    user, password, host, port, params, headers = match.groups()
    if user == "" and password is None:
        raise ParseError(f"Bad Request: empty user in {what}")
    port_number = None
    if port is not None:
        port_number = int(port)
        if port_number > 65535:
            raise ParseError(f"Bad Request: port out of range in {what}")
    return SipUri(
        host.lower(),
        None if user is None else unescape(user, what),
        None if password is None else unescape(password, what),
        port_number,
        _parse_uri_params(params[1:], what) if params else EMPTY_PARAMS,
        _parse_uri_headers(headers, what) if headers is not None else (),
        scheme,
    )


def _parse_uri_params(text: str, what: str) -> Params:
    if text.count(";") >= DEFAULT_MAX_PARAMS:
        raise ParseError(f"Bad Request: too many parameters in {what}")
    items: list[tuple[str, str | None]] = []
    for raw in text.split(";"):
        name, eq, value = raw.partition("=")
        if _PARAM_CHARS.fullmatch(name) is None:
            raise ParseError(f"Bad Request: malformed parameter in {what}")
        if eq and _PARAM_CHARS.fullmatch(value) is None:
            raise ParseError(f"Bad Request: malformed parameter value in {what}")
        items.append((unescape(name, what), unescape(value, what) if eq else None))
    return Params(items)


def _parse_uri_headers(text: str, what: str) -> tuple[tuple[str, str], ...]:
    if text.count("&") >= DEFAULT_MAX_PARAMS:
        raise ParseError(f"Bad Request: too many headers in {what}")
    out: list[tuple[str, str]] = []
    for raw in text.split("&"):
        name, eq, value = raw.partition("=")
        if not name or not eq or _HEADER_CHARS.fullmatch(name + value) is None:
            raise ParseError(f"Bad Request: malformed header in {what}")
        out.append((unescape(name, what), unescape(value, what)))
    return tuple(out)


def _parse_tel(rest: str, what: str) -> TelUri:
    if _TEL_BODY.fullmatch(rest) is None:
        raise ParseError(f"Bad Request: malformed {what}")
    number, semi, params = rest.partition(";")
    if not number:
        raise ParseError(f"Bad Request: empty number in {what}")
    return TelUri(number, _parse_uri_params(params, what) if semi else EMPTY_PARAMS)
