"""Rating: what a call to a destination costs, and how long a balance lets it last.

A :class:`Rate` is one row of a tenant's rate table, as miniSipServer's billing and most
carriers' price lists have it: a destination prefix, a connect fee charged once when the
callee answers, a price per minute, and the increments the duration is billed in — an
initial one, then subsequent ones ("60/60" bills whole minutes; "30/6" a first half
minute, then 6 s steps; "1/1" every second). :class:`RateTable` picks the rate of a
number by its longest matching prefix.

Money is integer micros of the account's currency (1 unit = 1,000,000 micros), never a
float: a price per second is rarely a whole number of micros, so a duration's price is
the per-minute price times the billed seconds over 60, rounded *up* to a micro (the
carrier never undercharges by rounding). Durations come in as integer milliseconds.

The rules, each pinned by a table test:

* Billed seconds of an answered call of ``duration_ms``: 0 for 0 ms; else the initial
  increment if the call fits in it; else the initial increment plus enough subsequent
  ones to cover the rest. 59.9 s and 60.0 s on 60/60 are both 60 s; 60.001 s is 120 s.
* An answered call costs the connect fee plus its billed seconds' price; a zero-second
  answered call costs the connect fee alone; an unanswered call costs nothing.
* :meth:`Rate.affordable_s`: the longest duration, on an increment boundary, whose cost
  fits in the money available — what credit control reserves and where it cuts the call
  off. A call cut off exactly there costs no more than what was available.

Pure: standard library only, no clock, no store (``contracts`` is what every service
imports).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MICROS_PER_UNIT = 1_000_000
#: A rate's prices are capped so that any cost of a call below a year fits in 63 bits.
MAX_PRICE_MICROS = 10**12
MAX_INCREMENT_S = 3600
_DIGITS = frozenset("0123456789")


class RatingError(ValueError):
    """A rate or rate table that cannot be: says which value and why (``field``: the
    :class:`Rate` field at fault, when one is)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Rate:
    """One destination's price: connect fee, per-minute price, billing increments."""

    #: The dialled digits it applies to ("" matches every number: a default rate).
    prefix: str
    per_minute_micros: int
    connect_fee_micros: int = 0
    initial_s: int = 60
    increment_s: int = 60
    #: What the tenant calls it ("Germany mobile"), for CDRs and the portal.
    name: str = ""

    def __post_init__(self) -> None:
        if not _DIGITS.issuperset(self.prefix):
            raise RatingError(f"rate prefix {self.prefix!r} is not digits", "prefix")
        for field_name in ("per_minute_micros", "connect_fee_micros"):
            value = getattr(self, field_name)
            if type(value) is not int or not 0 <= value <= MAX_PRICE_MICROS:
                raise RatingError(
                    f"rate {self.prefix!r}: {field_name} must be an integer in "
                    f"0..{MAX_PRICE_MICROS}, not {value!r}",
                    field_name,
                )
        for field_name in ("initial_s", "increment_s"):
            value = getattr(self, field_name)
            if type(value) is not int or not 1 <= value <= MAX_INCREMENT_S:
                raise RatingError(
                    f"rate {self.prefix!r}: {field_name} must be an integer in "
                    f"1..{MAX_INCREMENT_S}, not {value!r}",
                    field_name,
                )

    @property
    def free(self) -> bool:
        """Whether no call at this rate ever costs anything (credit control may skip it)."""
        return self.per_minute_micros == 0 and self.connect_fee_micros == 0

    def billed_s(self, duration_ms: int) -> int:
        """The seconds an answered call of ``duration_ms`` is billed for (module docstring)."""
        if duration_ms < 0:
            raise RatingError(f"a call cannot last {duration_ms} ms")
        if duration_ms == 0:
            return 0
        initial_ms = self.initial_s * 1000
        if duration_ms <= initial_ms:
            return self.initial_s
        step_ms = self.increment_s * 1000
        steps = -(-(duration_ms - initial_ms) // step_ms)  # ceiling division
        return self.initial_s + steps * self.increment_s

    def price_micros(self, billed_s: int) -> int:
        """The price of ``billed_s`` seconds (no connect fee), rounded up to a micro."""
        return -(-(self.per_minute_micros * billed_s) // 60)

    def cost_micros(self, duration_ms: int, *, answered: bool = True) -> int:
        """What a call of ``duration_ms`` costs: nothing unanswered, else the connect fee
        plus the price of its billed seconds."""
        if not answered:
            return 0
        return self.connect_fee_micros + self.price_micros(self.billed_s(duration_ms))

    def affordable_s(self, available_micros: int, *, connect_fee: bool = True) -> int:
        """The longest duration on an increment boundary whose cost fits in
        ``available_micros`` (with the connect fee when ``connect_fee``): 0 when not even
        the initial increment does. A free rate has no limit: use :attr:`free` first."""
        if self.free:
            raise RatingError(f"rate {self.prefix!r} is free: every duration is affordable")
        budget = available_micros - (self.connect_fee_micros if connect_fee else 0)
        if budget < self.price_micros(self.initial_s):
            return 0
        if self.per_minute_micros == 0:
            raise RatingError(f"rate {self.prefix!r} costs a connect fee only: no limit")
        # The most seconds the budget pays for, then down to an increment boundary.
        most_s = budget * 60 // self.per_minute_micros
        steps = (most_s - self.initial_s) // self.increment_s
        return self.initial_s + steps * self.increment_s


class RateTable:
    """A tenant's rates, looked up by the longest prefix of the dialled number."""

    def __init__(self, rates: Iterable[Rate]) -> None:
        self._by_prefix: dict[str, Rate] = {}
        for rate in rates:
            if rate.prefix in self._by_prefix:
                raise RatingError(f"two rates for prefix {rate.prefix!r}")
            self._by_prefix[rate.prefix] = rate
        self._lengths = sorted({len(prefix) for prefix in self._by_prefix}, reverse=True)

    def __iter__(self) -> Iterator[Rate]:
        return iter(sorted(self._by_prefix.values(), key=lambda rate: rate.prefix))

    def __len__(self) -> int:
        return len(self._by_prefix)

    def rate(self, number: str) -> Rate | None:
        """The rate of ``number`` (digits, a leading ``+`` ignored): the longest prefix
        that matches, or None when nothing does (no default rate: the call is refused)."""
        digits = number.removeprefix("+")
        for length in self._lengths:
            if length <= len(digits):
                found = self._by_prefix.get(digits[:length])
                if found is not None:
                    return found
        return None
