"""The stores' bounded memory: two generations, O(1), never more than twice the bound."""

from __future__ import annotations

from sipedge.adapters.memo import Generations


def test_entries_survive_one_turnover_and_not_two() -> None:
    memo: Generations[str, int] = Generations(2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("c", 3)  # the young generation was full: a and b are now the old one
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (1, 2, 3)
    memo.put("d", 4)
    memo.put("e", 5)  # c and d become old; a and b are gone
    assert (memo.get("a"), memo.get("b")) == (None, None)
    assert (memo.get("c"), memo.get("d"), memo.get("e")) == (3, 4, 5)


def test_pop_removes_a_key_from_both_generations() -> None:
    memo: Generations[str, int] = Generations(2)
    memo.put("k", 1)
    memo.put("x", 0)
    memo.put("y", 0)  # k and x are the old generation now
    memo.put("k", 2)  # and k is young again, with a newer value: held twice
    assert memo.pop("k") == 2
    assert memo.get("k") is None
    assert memo.pop("k") is None


def test_clear_forgets_everything() -> None:
    memo: Generations[str, int] = Generations(1)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.clear()
    assert (memo.get("a"), memo.get("b")) == (None, None)
