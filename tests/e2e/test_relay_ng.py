"""One *ng* command sequence, two relays: rtpengine-daemon and ours answer it alike.

The contract of issue 4 is rtpengine's behaviour: whatever drives rtpengine (Kamailio, our
edge) must be able to drive our relay instead. So the same client (``bench/sipbench``'s,
built on :mod:`contracts.ng`) runs the same sequence against both, each started as a
process on loopback: ``ping``; ``offer`` and ``answer`` for two calls, each reply's SDP
rewritten to the relay (c= its address, m= a port of its range, ``a=rtcp`` the next one,
the rest of the SDP kept); two-way RTP through both calls with nothing lost or crossed;
``query``; ``delete``; a malformed command refused with an error reason; and a forked
call, two phones answering one offer with their own to-tags, whose media goes to the
latest answerer.
"""

from __future__ import annotations

import select
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from contracts.ng.control import Answer, Delete, Offer, Query, expect_reply
from contracts.sdp import parse_sdp
from sipbench.relays import (
    RTPENGINE_CMD,
    NgClient,
    RelayError,
    free_port,
    relay_address,
    relay_process,
    sdp_for,
    set_up,
    tear_down,
)
from sipbench.rtpload import Leg, Stream, run_load

#: Our relay as the test run has it (source, or the compiled tree via PYTHONPATH).
CLOUDPBX_CMD = (
    f"{sys.executable} -m mediarelay serve --ng 127.0.0.1:{{ng}} --bind 127.0.0.1"
    " --ports {low}-{high} --log-level warning"
)
#: Media ports below the ephemeral range, apart for each relay.
PORTS = {"rtpengine": (22000, 22999), "cloudpbx": (23000, 23999)}


@pytest.fixture(params=["rtpengine", "cloudpbx"])
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, NgClient]]:
    target = str(request.param)
    if target == "rtpengine" and shutil.which("rtpengine") is None:
        pytest.fail("rtpengine-daemon is not installed: ./pbx test installs it")
    low, high = PORTS[target]
    template = RTPENGINE_CMD if target == "rtpengine" else CLOUDPBX_CMD
    ng = free_port()
    command = template.format(ng=ng, low=low, high=high, workdir=tmp_path)
    client = NgClient(("127.0.0.1", ng))
    try:
        with relay_process(command, tmp_path / f"{target}.log") as process:
            client.wait_ready(10.0)
            yield target, client
            assert process.poll() is None, (tmp_path / f"{target}.log").read_text()
    finally:
        client.close()


def test_offer_answer_rewrite_the_sdp_to_the_relay(relay: tuple[str, NgClient]) -> None:
    target, client = relay
    low, high = PORTS[target]
    original = sdp_for(4000, 7) + b"a=sendrecv\r\n"
    rewritten = client.call(Offer(call_id="ng-sdp", from_tag="caller", sdp=original))
    assert rewritten is not None
    sdp, before = parse_sdp(rewritten), parse_sdp(original)
    media = sdp.media[0]
    connection = media.connections[0] if media.connections else sdp.connection
    assert connection is not None
    assert connection.address == "127.0.0.1"
    assert low <= media.port <= high
    assert media.port != 4000
    rtcp = media.rtcp
    assert rtcp is not None
    assert rtcp.port == media.port + 1
    assert sdp.origin == before.origin  # o= is left alone unless asked (replace: origin)
    assert media.formats == before.media[0].formats
    assert media.rtpmaps() == before.media[0].rtpmaps()
    tear_down_one(client, "ng-sdp")


def test_media_flows_both_ways_through_two_calls(relay: tuple[str, NgClient]) -> None:
    _, client = relay
    streams = [Stream.open(number) for number in range(2)]
    try:
        set_up(client, streams)
        run_load(streams, 0.3)  # latching
        result = run_load(streams, 1.0)
        assert result.misrouted == 0
        assert result.loss == 0.0
        for sent, received in result.per_direction.values():
            assert sent == received > 0
        query = client.reply(Query(call_id="bench-relay-0"))
        assert query.totals is not None
        assert query.totals.rtp.packets >= 2 * 50  # both directions, a second and more
        assert query.created_s is not None
        tear_down(client, streams)
    finally:
        for stream in streams:
            stream.close()


def test_a_command_without_call_id_is_refused_with_a_reason(relay: tuple[str, NgClient]) -> None:
    _, client = relay
    client.sock.sendto(b"bad1 d7:command5:offer3:sdp3:v=0e", client.address)
    reply = expect_reply(client.sock.recv(65_535), b"bad1")
    assert reply.result.value == "error"
    assert reply.error_reason


def test_the_latest_of_two_forked_answers_gets_the_media(relay: tuple[str, NgClient]) -> None:
    """The INVITE went to two phones: one sends a 183 with SDP (to-tag early-fork, port
    P1) and early media, then the other answers with a 200 and SDP (answering-fork, P2)."""
    target, client = relay
    call, early = Stream.open(0), Stream.open(1)
    first_phone = early.callee  # P1; the second phone is call.callee, P2
    try:
        offer = Offer(call_id="ng-fork", from_tag="caller", sdp=sdp_for(call.caller.address[1], 0))
        callee_port = relay_address(client.call(offer))  # what both phones were offered
        first = client.call(
            Answer(
                call_id="ng-fork",
                from_tag="caller",
                to_tag="early-fork",
                sdp=sdp_for(first_phone.address[1], 1),
            )
        )
        first_phone.sock.sendto(first_phone.packet(), callee_port)
        assert arrived(call.caller, 1.0), "the first phone's early media did not reach the caller"
        second = client.call(
            Answer(
                call_id="ng-fork",
                from_tag="caller",
                to_tag="answering-fork",
                sdp=sdp_for(call.callee.address[1], 2),
            )
        )
        if target == "cloudpbx":  # rtpengine gives each fork new ports on the caller's side
            assert relay_address(second) == relay_address(first)
        call.callee.relay, call.caller.relay = callee_port, relay_address(second)
        run_load([call], 0.3)  # latching
        result = run_load([call], 1.0)
        assert result.misrouted == 0
        for sent, received in result.per_direction.values():
            assert sent == received > 0
        assert not arrived(first_phone, 0.0), "the superseded phone still gets the caller's media"
        tear_down_one(client, "ng-fork")
    finally:
        call.close()
        early.close()


def arrived(leg: Leg, timeout_s: float) -> bool:
    """Whether a datagram reached ``leg`` within ``timeout_s`` (read and discarded)."""
    readable, _, _ = select.select([leg.sock], [], [], timeout_s)
    if readable:
        leg.sock.recv(2048)
    return bool(readable)


def tear_down_one(client: NgClient, call_id: str) -> None:
    try:
        client.call(Delete(call_id=call_id))
    except RelayError as exc:
        pytest.fail(f"delete refused: {exc}")
