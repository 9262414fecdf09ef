"""Media relays as test and benchmark targets: started, driven over *ng*, stopped.

* :data:`RTPENGINE_CMD` runs ``rtpengine-daemon`` in userspace (``--table=-1``) on loopback;
  :data:`CLOUDPBX_CMD` runs ``python -m mediarelay serve`` from the compiled tree. Both
  are templates: ``{ng}`` (control port), ``{low}``/``{high}`` (media ports), ``{workdir}``.
* :func:`relay_process` starts one in its own session and stops it (SIGTERM, then SIGKILL).
* :class:`NgClient` sends one command and waits for its reply (:mod:`contracts.ng.control`).
* :func:`set_up` offers and answers one call per :class:`~sipbench.rtpload.Stream`, as an
  edge does, and points each leg at the relay port the rewritten SDP names.

Traffic stays on loopback: the client refuses other addresses, and so do the SDPs.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contracts.ng.control import (
    Answer,
    Command,
    Delete,
    Offer,
    Ping,
    Reply,
    Result,
    command_datagram,
    expect_reply,
)
from contracts.sdp import parse_sdp

from .edge import COMPILED_TREE
from .kamailio import require_loopback
from .rtpload import Stream

ROOT = Path(__file__).resolve().parents[2]
RTPENGINE_CMD = (
    "rtpengine --foreground --log-stderr --log-level=4 --table=-1 --no-fallback"
    " --interface=127.0.0.1 --listen-ng=127.0.0.1:{ng} --port-min={low} --port-max={high}"
    " --num-threads=2 --pidfile={workdir}/rtpengine.pid"
)
CLOUDPBX_CMD = (
    f"env PYTHONPATH={COMPILED_TREE} .venv/bin/python -m mediarelay serve"
    " --ng 127.0.0.1:{ng} --bind 127.0.0.1 --ports {low}-{high} --log-level warning"
)


class RelayError(Exception):
    """A relay that did not start, refused a call, or died."""


class NgClient:
    """A blocking *ng* client on loopback: one command, one reply, a fresh cookie each."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = (require_loopback(address[0]), address[1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self._cookies = 0

    def call(self, command: Command) -> bytes | None:
        """Send ``command``; the reply's SDP (None for replies without one)."""
        return self.reply(command).sdp

    def reply(self, command: Command) -> Reply:
        """Send ``command`` with a fresh cookie; its reply (an error reply raises)."""
        self._cookies += 1
        cookie = f"b{os.getpid()}-{self._cookies}".encode()
        self.sock.sendto(command_datagram(cookie, command), self.address)
        reply = expect_reply(self.sock.recv(65_535), cookie)
        if reply.result is Result.ERROR:
            raise RelayError(f"{command.command} refused: {reply.error_reason}")
        return reply

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.call(Ping())
                return
            except (TimeoutError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RelayError(f"no ng pong from {self.address} in {timeout_s} s") from None
                time.sleep(0.1)

    def close(self) -> None:
        self.sock.close()


def sdp_for(port: int, session: int) -> bytes:
    """A phone's PCMU offer or answer, receiving RTP on 127.0.0.1:``port``."""
    return (
        f"v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
    ).encode()


def relay_address(sdp: bytes | None) -> tuple[str, int]:
    """Where the relay wants the other side's RTP: the rewritten SDP's c= and m= port."""
    if sdp is None:
        raise RelayError("the relay answered without SDP")
    description = parse_sdp(sdp)
    media = description.media[0]
    connection = media.connections[0] if media.connections else description.connection
    if connection is None:
        raise RelayError("the rewritten SDP has no c= line")
    return require_loopback(connection.address), media.port


def set_up(client: NgClient, streams: list[Stream]) -> None:
    """Offer and answer every stream's call through the relay, as an edge would."""
    for number, stream in enumerate(streams):
        call_id = f"bench-relay-{number}"
        offer = Offer(
            call_id=call_id, from_tag="caller", sdp=sdp_for(stream.caller.address[1], number)
        )
        stream.callee.relay = relay_address(client.call(offer))
        answer = Answer(
            call_id=call_id,
            from_tag="caller",
            to_tag="callee",
            sdp=sdp_for(stream.callee.address[1], number),
        )
        stream.caller.relay = relay_address(client.call(answer))


def tear_down(client: NgClient, streams: list[Stream]) -> None:
    for number in range(len(streams)):
        # The relay may have reaped the call already, or be gone: nothing left to free.
        with contextlib.suppress(RelayError, TimeoutError):
            client.call(Delete(call_id=f"bench-relay-{number}"))


@contextmanager
def relay_process(command: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            shlex.split(command),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
