"""The batcher alone (contracts.stores.batching), on a stand-in for the statement that
records what it was sent and answers when the test lets it: a lone request goes at once;
requests that queue while every connection is busy go together, at most ``most`` to a
batch; a failed statement fails exactly its batch; a caller that gives up leaves the
others their answers. The billing store tests run it against real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from contracts.stores.batching import Batcher
from contracts.stores.tx import Row

pytestmark = pytest.mark.asyncio


class Statement:
    """Answers each request ``(x,)`` with ``(x * 10,)`` once released, or fails."""

    def __init__(self) -> None:
        self.batches: list[list[object]] = []
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None

    async def __call__(self, columns: list[Sequence[object]]) -> list[Row]:
        (xs,) = columns
        self.batches.append(list(xs))
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [(n, x * 10) for n, x in enumerate(xs, start=1)]  # type: ignore[operator]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_request_goes_at_once() -> None:
    statement = Statement()
    statement.release.set()
    batcher = Batcher(statement, connections=2)
    assert await batcher.submit((4,)) == (40,)
    assert statement.batches == [[4]]


async def test_requests_queued_while_connections_are_busy_go_together() -> None:
    statement = Statement()
    batcher = Batcher(statement, connections=2, most=3)
    waiting = [asyncio.ensure_future(batcher.submit((x,))) for x in range(9)]
    await settle()
    # Two connections: the first two requests went alone; the rest queue.
    assert statement.batches == [[0], [1]]
    statement.release.set()
    assert [await w for w in waiting] == [(x * 10,) for x in range(9)]
    assert statement.batches[:2] == [[0], [1]]
    assert all(1 <= len(batch) <= 3 for batch in statement.batches)
    assert sorted(x for batch in statement.batches for x in batch) == list(range(9))  # type: ignore[type-var]
    assert len(statement.batches) == 2 + 3  # seven queued, three at most a batch


async def test_a_failed_statement_fails_its_batch_only() -> None:
    statement = Statement()
    batcher = Batcher(statement, connections=1)
    first = asyncio.ensure_future(batcher.submit((1,)))
    await settle()
    queued = [asyncio.ensure_future(batcher.submit((x,))) for x in (2, 3)]
    statement.fail_with = ConnectionError("server closed the connection")
    statement.release.set()
    with pytest.raises(ConnectionError):
        await first
    # The queued pair went as the next batch, which failed the same way.
    for each in queued:
        with pytest.raises(ConnectionError):
            await each
    statement.fail_with = None
    assert await batcher.submit((5,)) == (50,)
    assert statement.batches == [[1], [2, 3], [5]]


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    statement = Statement()
    batcher = Batcher(statement, connections=1)
    first = asyncio.ensure_future(batcher.submit((1,)))
    await settle()
    impatient = asyncio.ensure_future(batcher.submit((2,)))
    patient = asyncio.ensure_future(batcher.submit((3,)))
    await settle()
    impatient.cancel()
    statement.release.set()
    assert await first == (10,)
    assert await patient == (30,)
    assert impatient.cancelled()
    await batcher.close()


async def test_a_missing_answer_is_an_error_for_that_request() -> None:
    async def forgets_the_second(columns: list[Sequence[object]]) -> list[Row]:
        return [(1, "only the first")]

    batcher = Batcher(forgets_the_second, connections=1)
    blocked = asyncio.ensure_future(batcher.submit(("a",)))
    queued = [asyncio.ensure_future(batcher.submit((x,))) for x in ("b", "c")]
    assert await blocked == ("only the first",)
    assert await queued[0] == ("only the first",)
    with pytest.raises(RuntimeError, match="did not answer item 2"):
        await queued[1]


async def test_close_waits_for_batches_under_way() -> None:
    statement = Statement()
    batcher = Batcher(statement, connections=1)
    under_way = asyncio.ensure_future(batcher.submit((7,)))
    await settle()
    closing = asyncio.ensure_future(batcher.close())
    await settle()
    assert not closing.done()
    statement.release.set()
    await closing
    assert await under_way == (70,)


async def test_bad_limits_are_refused() -> None:
    statement = Statement()
    with pytest.raises(ValueError, match="connections >= 1"):
        Batcher(statement, connections=0)
