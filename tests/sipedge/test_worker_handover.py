"""Responses that reach the wrong worker are handed to the one whose branch they carry."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from sipedge.adapters.transport import Inbound, Transports, WorkerGroup, response_owner
from sipedge.config import Listen
from sipedge.sip.message import Response
from sipedge.sip.transaction import Peer


def response(via: str, status: str = "200 OK") -> bytes:
    return (
        f"SIP/2.0 {status}\r\n{via}\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKw0-upstream\r\n"
        "From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("data", "owner"),
    [
        (response("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKw1-abc;rport=5060"), 1),
        (response("v: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKw12-abc"), 12),
        (response("VIA : SIP/2.0/UDP 127.0.0.1;branch = z9hG4bKw3-x"), 3),
        (response("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-not-ours"), None),
        (response("Via: SIP/2.0/UDP 127.0.0.1:5060"), None),  # only the top Via counts
        (b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKw1-abc\r\n\r\n", None),
        (b"SIP/2.0 200 OK\r\n\r\n", None),
        (b"SIP/2.0 garbage without headers", None),
    ],
)
def test_the_owner_is_read_from_the_top_via_branch(data: bytes, owner: int | None) -> None:
    assert response_owner(data) == owner


@pytest.mark.asyncio
async def test_a_sibling_hands_over_with_the_original_source() -> None:
    name = f"cloudpbx-test-{secrets.token_hex(4)}"
    listen = Listen("UDP", "127.0.0.1", 0)
    got: list[Inbound] = []
    first, second = Transports(lambda inbound: None), Transports(got.append)
    await first.start((listen,), reuse_port=False, group=WorkerGroup(name, 0, 2))
    await second.start((listen,), reuse_port=False, group=WorkerGroup(name, 1, 2))
    try:
        theirs = response("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKw1-abc;rport")
        ours = response("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKw0-abc;rport")
        foreign = response("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKw7-abc;rport")
        assert first.hand_over(theirs, "192.0.2.7", 5062)
        assert not first.hand_over(ours, "192.0.2.7", 5062)
        assert not first.hand_over(foreign, "192.0.2.7", 5062)  # no worker 7: ours to judge
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert len(got) == 1
        assert isinstance(got[0].item, Response)
        assert got[0].item.status == 200
        assert got[0].source == Peer("UDP", "192.0.2.7", 5062)
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
async def test_a_missing_sibling_costs_the_datagram_not_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"cloudpbx-test-{secrets.token_hex(4)}"
    alone = Transports(lambda inbound: None)
    await alone.start(
        (Listen("UDP", "127.0.0.1", 0),), reuse_port=False, group=WorkerGroup(name, 0, 2)
    )
    try:
        theirs = response("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKw1-abc;rport")
        for _ in range(3):  # worker 1 never started: each is dropped, warned about once
            assert alone.hand_over(theirs, "192.0.2.7", 5062)
        warnings = [r for r in caplog.records if "cannot hand responses" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        await alone.close()
