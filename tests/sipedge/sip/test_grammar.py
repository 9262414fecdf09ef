"""The grammar helpers' own contracts: the bounded memory of ``remembered`` parsers."""

from __future__ import annotations

import gc
import weakref

import pytest

from sipedge.sip.errors import ParseError
from sipedge.sip.grammar import remembered


class Counting:
    """A pure parser that counts its calls and refuses texts starting with ``!``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str, what: str) -> tuple[str, str]:
        self.calls += 1
        if text.startswith("!"):
            raise ParseError(f"Bad Request: malformed {what}")
        return (text.upper(), what)


def test_results_are_remembered_and_errors_are_not() -> None:
    parse = Counting()
    cached = remembered(parse, "thing", max_entries=4)
    first = cached("a")
    assert cached("a") is first
    assert parse.calls == 1
    for _ in range(2):
        with pytest.raises(ParseError, match="malformed field"):
            cached("!x", "field")
    assert parse.calls == 3


def test_memory_is_two_bounded_generations() -> None:
    parse = Counting()
    cached = remembered(parse, "thing", max_entries=4)
    for index in range(4):
        cached(f"t{index}")
    cached("t4")  # the young generation was full: it became the old one
    assert parse.calls == 5
    cached("t0")  # still in the old generation: not parsed again, moved to the young
    assert parse.calls == 5
    for index in range(5, 12):  # two more turnovers drop t1..t3
        cached(f"t{index}")
    calls = parse.calls
    cached("t1")
    assert parse.calls == calls + 1


class Parsed:
    """A result that can be watched by a weak reference (a tuple cannot)."""

    def __init__(self, text: str) -> None:
        self.text = text


def test_whatever_is_sent_at_most_two_generations_are_held() -> None:
    # Watched from outside, so the same test holds for the mypyc-compiled module.
    alive: weakref.WeakSet[Parsed] = weakref.WeakSet()

    def parse(text: str, what: str) -> Parsed:
        result = Parsed(text)
        alive.add(result)
        return result

    cached = remembered(parse, "thing", max_entries=4)
    for index in range(100):
        cached(f"t{index}")
    gc.collect()
    assert 4 <= len(alive) <= 8


def test_long_texts_are_parsed_every_time() -> None:
    parse = Counting()
    cached = remembered(parse, "thing", max_entries=4, max_chars=8)
    assert cached("x" * 9) == ("X" * 9, "thing")
    cached("x" * 9)
    assert parse.calls == 2
