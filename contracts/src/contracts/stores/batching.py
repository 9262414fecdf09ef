"""Requests that queue while every connection is busy go to the database together.

A :class:`Batcher` sends a request at once when a connection is free, so a lone request
waits for nothing. While all ``connections`` are busy, requests queue; the first batch to
come back sends everything queued (up to ``most``) as one statement: one round trip and
one transaction, so one commit (one WAL flush) for the lot. This is group commit done
by the client: the busier the store, the bigger the batches and the less each request
costs, with no timer and no added latency when it is quiet.

The statement takes one array per request field and answers one row per request, its
first column the request's index from 1 (the billing functions of migration 4). When
the statement fails, every request of its batch gets the error; none of them took
effect, since the batch was one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from contracts.stores.tx import Row

#: Sends one batch: a column (a sequence) per request field; answers the rows.
Send = Callable[[list[Sequence[object]]], Awaitable[list[Row]]]


class Batcher:
    def __init__(self, send: Send, *, connections: int, most: int = 64) -> None:
        if connections < 1 or most < 1:
            raise ValueError(
                f"a batcher needs connections >= 1 and most >= 1, not {connections}, {most}"
            )
        self._send = send
        self._connections = connections
        self._most = most
        self._queued: list[tuple[tuple[object, ...], asyncio.Future[Row]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, fields: tuple[object, ...]) -> Row:
        """The request's row (without its index), once its batch has committed."""
        done: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._queued.append((fields, done))
        if len(self._running) < self._connections:
            self._start()
        return await done

    def _start(self) -> None:
        batch, self._queued = self._queued[: self._most], self._queued[self._most :]
        task = asyncio.create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._queued and len(self._running) < self._connections:
            self._start()

    async def _run(self, batch: list[tuple[tuple[object, ...], asyncio.Future[Row]]]) -> None:
        try:
            rows = await self._send(
                [list(column) for column in zip(*(f for f, _ in batch), strict=True)]
            )
        except BaseException as error:  # every request of the batch failed with it
            for _, done in batch:
                if done.done():
                    continue
                if isinstance(error, Exception):
                    done.set_exception(error)
                else:  # cancelled (the loop is closing): so are its requests
                    done.cancel()
            if not isinstance(error, Exception):
                raise
            return
        answered = {row[0]: row[1:] for row in rows}
        for item, (_, done) in enumerate(batch, start=1):
            if done.done():  # its caller gave up waiting (cancelled)
                continue
            if item in answered:
                done.set_result(answered[item])
            else:
                done.set_exception(RuntimeError(f"the batch statement did not answer item {item}"))

    async def close(self) -> None:
        """Wait for the batches under way (their requests are in the database's hands)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
