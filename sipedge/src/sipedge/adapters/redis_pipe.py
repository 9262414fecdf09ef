"""Many concurrent Redis commands over one connection, pipelined: the edge's hot path.

Why not only redis-py: its asyncio client spent 56-77 µs of CPU per command here (a
pool checkout under a condition and a timeout, timeout contexts around every send and
read, observability hooks), more than the rest of a REGISTER's Redis work; measured by
``bench/edge_pipeline.py``. This module is the technique of ioredis and Lettuce
("auto-pipelining"): every coroutine writes its command at once on the shared
connection, Redis answers in order (RESP guarantees it), and the replies are parsed by
hiredis's C reader and handed out first in, first out. A command then costs a write, a
future and a parse. redis-py remains the client for everything else (scans, deletes,
admin, tests); this is used for the commands every request runs. Never send a blocking command
(BLPOP, WAIT, XREAD BLOCK, SUBSCRIBE) through it: it would stall every caller behind it.

Failure semantics: a reply that is an error raises :class:`redis.exceptions.ResponseError`
(:class:`~redis.exceptions.NoScriptError` for NOSCRIPT) in the caller only; the
connection stays in step. A lost connection, or a reply overdue by ``timeout_s``,
fails every command waiting on it with :class:`redis.exceptions.ConnectionError` or
:class:`redis.exceptions.TimeoutError` (whether a write was applied is then unknown,
as with any client) and the next command connects again. A caller that is cancelled
leaves its reply to be read and dropped, so the order is never lost.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


class RedisPipe:
    """One pipelined connection to the Redis server of ``url`` (opened on first use)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self._params = parse_url(url)
        self._timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, *args: Arg) -> Any:
        """Run one command; its reply as hiredis gives it (bytes, int, list, None)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        reply = await protocol.send(pack(args))
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)
        return reply

    async def evalsha(self, sha: str, script: str, keys: list[str], args: list[Arg]) -> Any:
        """EVALSHA, loading ``script`` once when the server does not know it (NOSCRIPT:
        a restarted or failed-over Redis)."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script)
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connection, however many callers wait for it
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            protocol = await self._open()
            self._protocol = protocol
            return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        params = self._params
        protocol = _Protocol(self._timeout_s)
        try:
            async with asyncio.timeout(self._timeout_s):
                if "path" in params:
                    await loop.create_unix_connection(lambda: protocol, params["path"])
                else:
                    await loop.create_connection(
                        lambda: protocol, params.get("host", "localhost"), params.get("port", 6379)
                    )
        except (OSError, TimeoutError) as error:
            raise RedisConnectionError(f"Redis unreachable: {error}") from None
        setup: list[tuple[Arg, ...]] = []
        if params.get("password"):
            user = params.get("username")
            setup.append(
                ("AUTH", user, params["password"]) if user else ("AUTH", params["password"])
            )
        if params.get("db"):
            setup.append(("SELECT", params["db"]))
        for command in setup:
            reply = await protocol.send(pack(command))
            if isinstance(reply, hiredis.ReplyError):
                protocol.close()
                raise _error(reply)
        return protocol


class _Protocol(asyncio.Protocol):
    """The connection: commands out as they come, replies matched first in, first out."""

    def __init__(self, timeout_s: float) -> None:
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._timeout_s = timeout_s
        self._transport: asyncio.Transport | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.closed or self._transport is None:
            raise RedisConnectionError("Redis connection closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((future, loop.time() + self._timeout_s))
        self._transport.write(packed)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout_s, self._check_overdue)
        return future

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        waiting = self._waiting
        try:
            reader.feed(data)
            reply = reader.gets()
            while reply is not False:
                future, _ = waiting.popleft()
                if not future.done():  # its caller may have been cancelled
                    future.set_result(reply)
                reply = reader.gets()
        except (hiredis.ProtocolError, IndexError) as error:  # garbage, or a reply nobody asked
            self._fail(RedisConnectionError(f"Redis protocol out of step: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def close(self) -> None:
        self._fail(RedisConnectionError("Redis connection closed"))

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0][1]
        if deadline <= loop.time():
            self._fail(RedisTimeoutError(f"Redis did not answer within {self._timeout_s} s"))
        else:
            self._watchdog = loop.call_at(deadline, self._check_overdue)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None


def pack(args: tuple[Arg, ...] | list[Arg]) -> bytes:
    """A command as a RESP array of bulk strings (numbers in their decimal spelling)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):  # an int, but never meant as 0/1 here
            raise TypeError("a bool is not a Redis argument")
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _error(reply: hiredis.ReplyError) -> ResponseError:
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)
