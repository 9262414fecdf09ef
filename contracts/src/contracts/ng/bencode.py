"""Bencode, the dictionary format of rtpengine's *ng* control protocol: a strict, bounded codec.

Owns the four bencode types as BEP 3 ("The BitTorrent Protocol Specification", section
"bencoding") defines them and as rtpengine's ``docs/ng_control_protocol.md`` uses them:

* integers ``i<decimal>e``: no leading zeros, no ``-0``, no ``+``, ASCII digits only, and
  within the signed 64-bit range, because rtpengine (``long long``) and Kamailio read no more;
* byte strings ``<length>:<bytes>`` (the length is decimal without leading zeros);
* lists ``l...e``;
* dictionaries ``d...e`` whose keys are byte strings.

:func:`encode` writes dictionary keys in sorted order of their raw bytes, as BEP 3 requires.
:func:`decode` accepts keys in any order, because rtpengine documents that it does not
honour the ordering rule and clients rely on it (rtpengine's own debug dumps of Kamailio
requests list ``sdp`` first and ``command`` last);
it rejects a key that appears twice in one dictionary (which value would win is not
specified anywhere, and a request naming two ``call-id`` values must not be half-read).

Hostile input stays cheap and never escapes as anything but :class:`BencodeError`: the
input size is bounded (``max_bytes``, by default the largest UDP payload), nesting depth is
bounded (``max_depth``, far above the 5 levels an ng message uses) so that recursion can
never reach Python's limit, and trailing bytes after the top-level value are an error.

Written by hand, after trying the two libraries the style guide names: ``fastbencode``
(0.3.12) rejects dictionaries whose keys are out of order, so every request Kamailio
sends, and bounds neither size nor depth (it returns 100,000 nested lists, on which any
recursive consumer, ``repr`` or ``==``, then raises ``RecursionError``); ``bencode.py``
(4.1.0) accepts ``i1_0e``, ``i +1e`` and ``1_0:...`` (it calls :func:`int` on the digits),
keeps the last of duplicate keys silently, ships no type information and raises an error
that is not a ``ValueError``. The codec below is ~150 lines, pinned by property tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeAlias

#: What :func:`decode` returns.
Value: TypeAlias = "int | bytes | list[Value] | dict[bytes, Value]"
#: What :func:`encode` takes: text is written as UTF-8, tuples as lists, ``str`` keys as UTF-8.
Encodable: TypeAlias = (
    "int | bytes | str | Sequence[Encodable] | Mapping[bytes, Encodable] | Mapping[str, Encodable]"
)

#: The most a 16-bit UDP length (RFC 768) can describe; every UDP payload is smaller.
DEFAULT_MAX_BYTES = 65_535
#: Nesting allowed by default; rtpengine's deepest documented request (``sdp-attr``
#: ``substitute``: dict, dict, dict, list, list) uses 5.
DEFAULT_MAX_DEPTH = 32
#: Above this a caller's ``max_depth`` could reach Python's recursion limit.
MAX_DEPTH_LIMIT = 256
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_INTEGER = re.compile(rb"i(0|-?[1-9][0-9]{0,18})e")
_LENGTH = re.compile(rb"(0|[1-9][0-9]{0,9}):")
_DIGITS = frozenset(b"0123456789")


class BencodeError(ValueError):
    """Bytes that are not one well-formed bencoded value within the limits, or a value that
    has no bencode form within them (an integer out of range, nesting too deep)."""


def decode(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Value:
    """Decode exactly one bencoded value that spans all of ``data``.

    Raises :class:`BencodeError` naming the offset and the problem for anything else.
    """
    _check_depth(max_depth)
    if len(data) > max_bytes:
        raise BencodeError(f"bencoded input of {len(data)} bytes exceeds the limit of {max_bytes}")
    value, end = _value(bytes(data), 0, max_depth)
    if end != len(data):
        raise BencodeError(f"trailing data after the bencoded value at offset {end}")
    return value


def _value(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    lead = data[pos : pos + 1]
    if lead == b"i":
        return _integer(data, pos)
    if lead and lead[0] in _DIGITS:
        return _string(data, pos)
    if lead in (b"l", b"d"):
        if depth <= 0:
            raise BencodeError(f"nesting too deep at offset {pos}")
        return _list(data, pos, depth - 1) if lead == b"l" else _dict(data, pos, depth - 1)
    if not lead:
        raise BencodeError(f"truncated: a value was expected at offset {pos}")
    raise BencodeError(f"unexpected byte {lead!r} at offset {pos}: no bencoded value starts so")


def _integer(data: bytes, pos: int) -> tuple[int, int]:
    match = _INTEGER.match(data, pos)
    if match is None:
        raise BencodeError(
            f"malformed integer at offset {pos}: expected i<decimal>e, at most 19 digits,"
            " without leading zeros or -0"
        )
    number = int(match.group(1))
    if not INT_MIN <= number <= INT_MAX:
        raise BencodeError(f"integer at offset {pos} is outside the signed 64-bit range")
    return number, match.end()


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    match = _LENGTH.match(data, pos)
    if match is None:
        raise BencodeError(
            f"malformed string length at offset {pos}: expected <decimal>: without leading zeros"
        )
    start = match.end()
    end = start + int(match.group(1))
    if end > len(data):
        raise BencodeError(f"truncated: the byte string at offset {pos} runs past the end")
    return data[start:end], end


def _list(data: bytes, pos: int, depth: int) -> tuple[list[Value], int]:
    items: list[Value] = []
    pos += 1
    while data[pos : pos + 1] != b"e":
        item, pos = _value(data, pos, depth)
        items.append(item)
    return items, pos + 1


def _dict(data: bytes, pos: int, depth: int) -> tuple[dict[bytes, Value], int]:
    items: dict[bytes, Value] = {}
    pos += 1
    while data[pos : pos + 1] != b"e":
        if pos >= len(data):
            raise BencodeError(f"truncated: a dictionary key was expected at offset {pos}")
        if data[pos] not in _DIGITS:
            raise BencodeError(f"dictionary key at offset {pos} is not a byte string")
        key, pos = _string(data, pos)
        if key in items:
            raise BencodeError(f"duplicate dictionary key {key!r} at offset {pos}")
        items[key], pos = _value(data, pos, depth)
    return items, pos + 1


def encode(value: Encodable, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Encode ``value``; dictionary keys come out sorted by their bytes (BEP 3).

    Raises :class:`TypeError` for a type with no bencode form (``bool``, ``float``, None...)
    and :class:`BencodeError` for an integer out of range, nesting deeper than ``max_depth``
    (which also catches a list that contains itself) or two keys equal once encoded
    (``"a"`` and ``b"a"``).
    """
    _check_depth(max_depth)
    out: list[bytes] = []
    _encode(value, out, max_depth)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes], depth: int) -> None:
    if isinstance(value, bool):
        raise TypeError("cannot bencode a bool: send the integer 0 or 1, or a string")
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise BencodeError(f"integer {value} is outside the signed 64-bit range")
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes | bytearray | memoryview):
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        out.append(b"%d:%s" % (len(raw), raw))
    elif isinstance(value, Mapping | Sequence):
        if depth <= 0:
            raise BencodeError("nesting too deep to encode (or a container holds itself)")
        if isinstance(value, Mapping):
            _encode_dict(value, out, depth - 1)
        else:
            out.append(b"l")
            for item in value:
                _encode(item, out, depth - 1)
            out.append(b"e")
    else:
        raise TypeError(f"cannot bencode a {type(value).__name__}")


def _check_depth(max_depth: int) -> None:
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH_LIMIT}, not {max_depth}")


def _encode_dict(
    value: Mapping[bytes, Encodable] | Mapping[str, Encodable], out: list[bytes], depth: int
) -> None:
    items: dict[bytes, Encodable] = {}
    for key, item in value.items():
        if not isinstance(key, bytes | str):
            raise TypeError(f"cannot bencode a dictionary key of type {type(key).__name__}")
        raw = key.encode("utf-8") if isinstance(key, str) else key
        if raw in items:
            raise BencodeError(f"dictionary key {raw!r} given twice (as text and as bytes)")
        items[raw] = item
    out.append(b"d")
    for raw in sorted(items):
        out.append(b"%d:%s" % (len(raw), raw))
        _encode(items[raw], out, depth)
    out.append(b"e")
