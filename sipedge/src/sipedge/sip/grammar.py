"""Lexical pieces of RFC 3261 §25.1 written once: tokens, quoted strings, escapes, params.

Every function here is linear in its input (no backtracking regular expressions, no
repeated concatenation), so hostile input costs time in proportion to its size.
:func:`remembered` keeps the last few thousand results of a pure parser: the values a
request repeats from the one before (the answer to a challenge, the rest of a dialog,
the same Request-URI) are then parsed once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar
from urllib.parse import quote as _pct_quote
from urllib.parse import unquote as _pct_unquote

from sipedge.sip.errors import ParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# A header-param value: token, host (IPv6 reference included) or quoted-string.
_PARAM_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+|\"[^\"\\]*(?:\\.[^\"\\]*)*\"", re.DOTALL)
# "(?:[^"\\]|\\.)*" unrolled (the same strings, matched twice as fast).
_QUOTED = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
WSP = " \t"

#: Header and URI parameters beyond this count are refused (hostile input).
DEFAULT_MAX_PARAMS = 64

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class TextParser(Protocol[T_co]):
    """A parser of one field's text; ``what`` names the field in its errors."""

    # The default is never used (a protocol's body is not run); mypyc rejects ``= ...``.
    def __call__(self, text: str, what: str = "") -> T_co: ...


def remembered(
    parse: Callable[[str, str], T],
    default_what: str,
    max_entries: int = 4096,
    max_chars: int = 512,
) -> TextParser[T]:
    """``parse(text, what)`` remembering the results of recently seen texts.

    For pure parsers whose results are immutable and depend on ``text`` alone (``what``
    only names the field in errors). Errors are not remembered and texts longer than
    ``max_chars`` are not kept. Two generations of at most ``max_entries`` each: when
    the young one is full it becomes the old one and the previous old one is dropped;
    a text found in the old generation moves to the young one. Memory stays bounded
    whatever a peer sends, and every step is O(1) (evicting the oldest key of one
    dict instead cost microseconds per miss: iteration skips the deleted slots at the
    front of a dict, and every insert of a full cache deleted one).
    """
    young: dict[str, T] = {}
    old: dict[str, T] = {}

    def parse_remembered(text: str, what: str = default_what) -> T:
        nonlocal young, old
        found = young.get(text)
        if found is not None:
            return found
        found = old.get(text)
        if found is None:
            found = parse(text, what)
            if len(text) > max_chars:
                return found
        if len(young) >= max_entries:
            young, old = {}, young
        young[text] = found
        return found

    parse_remembered.__doc__ = parse.__doc__
    return parse_remembered


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 token."""
    return _TOKEN.fullmatch(text) is not None


def require_token(text: str, what: str) -> str:
    """Return ``text`` when it is a token, else raise 400 naming ``what``."""
    if _TOKEN.fullmatch(text) is None:
        raise ParseError(f"Bad Request: malformed {what}")
    return text


def unescape(text: str, what: str) -> str:
    """Decode ``%HH`` escapes exactly once (RFC 3986 §2.1); ``%00`` stays a NUL."""
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text) is not None:
        raise ParseError(f"Bad Request: invalid %-escape in {what}")
    return _pct_unquote(text, errors="surrogateescape")


def escape(text: str, safe: str) -> str:
    """Percent-encode what is not alphanumeric, one of ``-_.!~*'()``, or in ``safe``."""
    if text.isalnum() and text.isascii():
        return text  # the usual user part or parameter: nothing to encode
    plain = _PLAIN.get(safe)
    if plain is None:
        plain = _PLAIN[safe] = re.compile(f"[A-Za-z0-9\\-_.!~*'(){re.escape(safe)}]*")
    if plain.fullmatch(text) is not None:
        return text
    return _pct_quote(text, safe="!*'()" + safe, errors="surrogateescape")


#: Per ``safe`` set: the texts :func:`escape` leaves as they are.
_PLAIN: dict[str, re.Pattern[str]] = {}


def quote(text: str) -> str:
    r"""Make a quoted-string: wrap in double quotes, backslash-escape ``"`` and ``\``.

    CR and LF cannot be written inside a quoted-string (RFC 3261 §25.1 quoted-pair
    excludes them), so they become spaces: a display name never injects a header.
    """
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(text: str) -> str:
    """Undo :func:`quote`; ``text`` must start and end with a double quote."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ParseError("Bad Request: unterminated quoted string")
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i, n = 0, len(inner)
    while i < n:
        ch = inner[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ParseError("Bad Request: dangling backslash in quoted string")
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def find_quote_end(text: str, start: int) -> int:
    """Index just past the quoted string opening at ``text[start]`` (a ``"``)."""
    match = _QUOTED.match(text, start)
    if match is None:
        raise ParseError("Bad Request: unterminated quoted string")
    return match.end()


def split_outside(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it stands outside quoted strings and ``<...>``."""
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = find_quote_end(text, i)
            continue
        if ch == "<":
            close = text.find(">", i)
            if close < 0:
                raise ParseError("Bad Request: unbalanced '<'")
            i = close + 1
            continue
        if ch == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


class Params:
    """Ordered ``;name=value`` parameters; names compare case-insensitively.

    A flag parameter (``;lr``) has the value ``None``. Values are stored as they are
    meant to be written back (a quoted-string keeps its quotes); the owner of the
    params decides any escaping.
    """

    __slots__ = ("_items", "_names")

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items: tuple[tuple[str, str | None], ...] = tuple(items)
        #: The names in lower case, made on the first lookup (most params get one).
        self._names: tuple[str, ...] | None = None

    def _lower_names(self) -> tuple[str, ...]:
        names = self._names
        if names is None:
            names = self._names = tuple([key.lower() for key, _ in self._items])
        return names

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name`` (``None`` for a flag), or ``default`` when absent."""
        names = self._lower_names()
        lname = name.lower()
        if lname in names:
            return self._items[names.index(lname)][1]
        return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lower_names()

    def replace(self, name: str, value: str | None) -> Params:
        """A copy with ``name`` set to ``value`` (in place if present, else appended)."""
        lname = name.lower()
        items = list(self._items)
        for index, (key, _) in enumerate(items):
            if key.lower() == lname:
                items[index] = (key, value)
                return Params(items)
        items.append((name, value))
        return Params(items)

    def remove(self, name: str) -> Params:
        """A copy without ``name``."""
        lname = name.lower()
        return Params(item for item in self._items if item[0].lower() != lname)

    def items(self) -> tuple[tuple[str, str | None], ...]:
        return self._items

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Params({list(self._items)!r})"

    def to_header_text(self) -> str:
        """Serialize as header parameters: ``;a=b;flag``."""
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self._items)


#: The shared empty parameter list (Params are immutable).
EMPTY_PARAMS = Params()

_FAST_VALUE = r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+"
_FAST_PARAM = rf"[ \t]*[A-Za-z0-9\-.!%*_+`'~]+[ \t]*(?:=[ \t]*{_FAST_VALUE}[ \t]*)?"
# Parameters without quoted strings, checked in one linear pass (the common case).
_FAST_PARAMS = re.compile(rf"{_FAST_PARAM}(?:;{_FAST_PARAM})*")


def parse_header_params(text: str, what: str, max_params: int = DEFAULT_MAX_PARAMS) -> Params:
    """Parse ``*( SEMI generic-param )`` where ``text`` begins after the first ``;``.

    Whitespace around ``;`` and ``=`` is allowed (it is LWS in the grammar). An empty
    parameter (``;;``) or a name that is not a token is a 400.
    """
    if text.count(";") >= max_params:
        raise ParseError(f"Bad Request: too many parameters in {what}", 400)
    if _FAST_PARAMS.fullmatch(text) is not None:
        return Params(_split_checked_params(text))
    items: list[tuple[str, str | None]] = []
    for raw in split_outside(text, ";"):
        name, eq, value = raw.partition("=")
        name = name.strip(WSP)
        if _TOKEN.fullmatch(name) is None:
            raise ParseError(f"Bad Request: malformed parameter in {what}")
        if not eq:
            items.append((name, None))
            continue
        value = value.strip(WSP)
        if _PARAM_VALUE.fullmatch(value) is None:
            raise ParseError(f"Bad Request: malformed value of parameter {name!r} in {what}")
        items.append((name, value))
    return Params(items)


def _split_checked_params(text: str) -> list[tuple[str, str | None]]:
    """Split params already matched by ``_FAST_PARAMS`` (no quoted strings inside)."""
    items: list[tuple[str, str | None]] = []
    spaced = " " in text or "\t" in text
    for raw in text.split(";"):
        name, eq, value = raw.partition("=")
        if spaced:
            name, value = name.strip(WSP), value.strip(WSP)
        items.append((name, value if eq else None))
    return items
