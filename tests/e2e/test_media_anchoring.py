"""The edge anchors every call's media on a relay over ng (DESIGN "NAT", issue 4).

A real edge (``python -m sipedge serve --relay ...``), a real relay — ours
(``python -m mediarelay serve``) or rtpengine-daemon, chosen by configuration only —
and two scripted phones with an RTP socket each, all on loopback:

* RFC 3264 offer/answer through the relay: the INVITE the callee gets and the 200 the
  caller gets name the relay (c= 127.0.0.1, an m= port of the relay's range), and RTP
  each phone sends to the address it was given arrives at the other phone.
* A re-INVITE from either side (hold, §8.4) is offered and answered through the relay.
* A late offer (an INVITE or re-INVITE without SDP, RFC 3261 §13.2.1): the callee's 2xx
  offers through the relay, our ACK to it waits for the caller's ACK and carries its
  answer, rewritten; an ACK without the answer ends the call.
* BYE and CANCEL delete the call on the relay (``query`` is then refused).
* A relay that is silent or refuses (out of ports) gets the caller 503 with a Warning,
  and the callee is never called: no call without audio.
* A tenant with ``media.anchor: false`` gets its SDP passed through untouched.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from contracts.ng.control import Query
from sipbench.relays import (
    RTPENGINE_CMD,
    NgClient,
    RelayError,
    free_port,
    relay_address,
    relay_process,
    sdp_for,
)
from sipbench.scripted import ScriptedPhone
from sipedge.calls.build import cancel_for
from sipedge.sip.message import Request, Response

from .conftest import PASSWORDS, EdgeFactory, EdgeProc, write_tenant

OUR_RELAY_CMD = (
    f"{sys.executable} -m mediarelay serve --ng 127.0.0.1:{{ng}} --bind 127.0.0.1"
    " --ports {low}-{high} --log-level warning"
)
#: rtpengine keeps a deleted call 30 s by default (delete-delay); the test wants it gone.
RTPENGINE_TEST_CMD = RTPENGINE_CMD + " --delete-delay=0"
#: Media ports below the ephemeral range, apart from test_relay_ng's.
PORTS = {"cloudpbx": (24000, 24899), "rtpengine": (25000, 25999), "full": (24990, 24991)}


@dataclass
class Relay:
    kind: str
    ng: int
    client: NgClient

    @property
    def ports(self) -> tuple[int, int]:
        return PORTS[self.kind]

    def has_call(self, call_id: str) -> bool:
        try:
            self.client.reply(Query(call_id=call_id))
        except RelayError:
            return False
        return True

    def wait_gone(self, call_id: str, timeout_s: float = 5.0) -> None:
        """The edge deletes after answering the BYE/CANCEL: poll until it has."""
        deadline = time.monotonic() + timeout_s
        while self.has_call(call_id):
            assert time.monotonic() < deadline, f"call {call_id} still on the relay"
            time.sleep(0.05)


@contextmanager
def running_relay(kind: str, tmp_path: Path, *extra: str) -> Iterator[Relay]:
    if kind == "rtpengine" and shutil.which("rtpengine") is None:
        pytest.fail("rtpengine-daemon is not installed: ./pbx test installs it")
    low, high = PORTS[kind]
    template = RTPENGINE_TEST_CMD if kind == "rtpengine" else OUR_RELAY_CMD
    ng = free_port()
    client = NgClient(("127.0.0.1", ng))
    try:
        command = " ".join((template.format(ng=ng, low=low, high=high, workdir=tmp_path), *extra))
        with relay_process(command, tmp_path / f"{kind}.log") as process:
            client.wait_ready(10.0)
            yield Relay(kind, ng, client)
            assert process.poll() is None, (tmp_path / f"{kind}.log").read_text()
    finally:
        client.close()


@pytest.fixture(params=["cloudpbx", "rtpengine"])
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Relay]:
    with running_relay(str(request.param), tmp_path) as running:
        yield running


@pytest.fixture
def our_relay(tmp_path: Path) -> Iterator[Relay]:
    with running_relay("cloudpbx", tmp_path) as running:
        yield running


def relay_args(ng: int) -> list[str]:
    return ["--relay", f"127.0.0.1:{ng}", "--relay-timeout", "0.5", "--relay-tries", "3"]


# --- phones with an RTP socket ------------------------------------------------------------


class RtpPort:
    """A phone's media socket on loopback: sends numbered RTP packets, reads them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.port = int(self.sock.getsockname()[1])
        self.ssrc = secrets.randbits(32)
        self.sequence = 0

    def send(self, destination: tuple[str, int]) -> None:
        self.sequence += 1
        header = struct.pack("!BBHII", 0x80, 0, self.sequence, self.sequence * 160, self.ssrc)
        self.sock.sendto(header + b"\xff" * 160, destination)

    def received_from(self, ssrc: int) -> int:
        """How many packets of ``ssrc`` are waiting (read without blocking long)."""
        count = 0
        while True:
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                return count
            count += struct.unpack("!I", data[8:12])[0] == ssrc

    def drain(self, quiet_s: float = 0.3) -> None:
        """Read whatever is still in flight until ``quiet_s`` pass without a packet."""
        self.sock.settimeout(quiet_s)
        try:
            while True:
                self.sock.recv(2048)
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(0.02)

    def close(self) -> None:
        self.sock.close()


def exchange_rtp(
    caller: RtpPort, to_callee: tuple[str, int], callee: RtpPort, to_caller: tuple[str, int]
) -> tuple[int, int]:
    """Each side sends to the address its SDP named, 20 rounds; packets each one got."""
    got_by_callee = got_by_caller = 0
    for _ in range(20):
        caller.send(to_callee)
        callee.send(to_caller)
        got_by_callee += callee.received_from(caller.ssrc)
        got_by_caller += caller.received_from(callee.ssrc)
    return got_by_callee, got_by_caller


@dataclass
class Call:
    caller: ScriptedPhone
    callee: ScriptedPhone
    caller_rtp: RtpPort
    callee_rtp: RtpPort
    invite: Request
    incoming: Request

    @property
    def call_id(self) -> str:
        return self.invite.call_id


@contextmanager
def phones(edge: EdgeProc) -> Iterator[Call]:
    """2001 calls 2002 with real RTP ports in its SDP; the callee has the INVITE."""
    caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
    caller_rtp, callee_rtp = RtpPort(), RtpPort()
    try:
        callee.register(edge.port)
        invite = caller.invite(edge.port, "2002", body=sdp_for(caller_rtp.port, 1))
        incoming = callee.receive_request("INVITE")
        yield Call(caller, callee, caller_rtp, callee_rtp, invite, incoming)
    finally:
        for closable in (caller, callee, caller_rtp, callee_rtp):
            closable.close()


def answer_call(call: Call, edge: EdgeProc) -> Response:
    """The callee answers with its RTP port; the caller gets the 200 and ACKs it."""
    call.callee.answer(call.incoming, 200, "OK", edge.port, sdp_for(call.callee_rtp.port, 2))
    call.callee.receive_request("ACK")
    answer = call.caller.final()
    assert answer.status == 200
    ack = call.caller.request("ACK", target_of(answer), to_of(answer), call.call_id, 2)
    call.caller.send(ack, edge.port)
    return answer


def target_of(response: Response) -> str:
    contacts = response.contacts
    assert isinstance(contacts, tuple)
    return str(contacts[0].uri)


def to_of(response: Response) -> str:
    return response.headers.get("To") or ""


def assert_names_relay(body: bytes, relay: Relay, not_port: int) -> tuple[str, int]:
    host, port = relay_address(body)
    low, high = relay.ports
    assert host == "127.0.0.1"
    assert low <= port <= high, f"m= port {port} is not the relay's ({low}-{high})"
    assert port != not_port
    return host, port


def hang_up(call: Call, answer: Response, edge: EdgeProc, cseq: int = 3) -> None:
    bye = call.caller.request("BYE", target_of(answer), to_of(answer), call.call_id, cseq)
    call.caller.send(bye, edge.port)
    call.callee.answer(call.callee.receive_request("BYE"), 200, "OK", edge.port)
    assert call.caller.final().status == 200


# --- the tests ------------------------------------------------------------------------------


def test_call_media_flows_through_the_relay_and_bye_deletes_it(
    edge_factory: EdgeFactory, relay: Relay
) -> None:
    edge = edge_factory(extra_args=relay_args(relay.ng))
    with phones(edge) as call:
        to_caller_leg = assert_names_relay(call.incoming.body, relay, call.caller_rtp.port)
        answer = answer_call(call, edge)
        to_callee_leg = assert_names_relay(answer.body, relay, call.callee_rtp.port)
        got_by_callee, got_by_caller = exchange_rtp(
            call.caller_rtp, to_callee_leg, call.callee_rtp, to_caller_leg
        )
        assert got_by_callee > 10
        assert got_by_caller > 10
        assert relay.has_call(call.call_id)

        hang_up(call, answer, edge)
        relay.wait_gone(call.call_id)
        if relay.kind == "cloudpbx":  # the relay's ports forward nothing any more
            call.caller_rtp.drain()
            call.callee_rtp.drain()
            assert exchange_rtp(call.caller_rtp, to_callee_leg, call.callee_rtp, to_caller_leg) == (
                0,
                0,
            )


def test_reinvites_from_either_side_are_anchored_with_the_senders_tag(
    edge_factory: EdgeFactory, relay: Relay
) -> None:
    edge = edge_factory(extra_args=relay_args(relay.ng))
    with phones(edge) as call:
        first = assert_names_relay(call.incoming.body, relay, call.caller_rtp.port)
        answer = answer_call(call, edge)
        # The caller puts the call on hold (RFC 3264 §8.4): a new offer, CSeq 3.
        hold = sdp_for(call.caller_rtp.port, 1).replace(b"o=- 1 1", b"o=- 1 2") + b"a=sendonly\r\n"
        reinvite = call.caller.request(
            "INVITE", target_of(answer), to_of(answer), call.call_id, 3, body=hold
        )
        call.caller.send(reinvite, edge.port)
        offered = call.callee.receive_request("INVITE")
        assert assert_names_relay(offered.body, relay, call.caller_rtp.port) == first
        call.callee.answer(offered, 200, "OK", edge.port, sdp_for(call.callee_rtp.port, 2))
        call.callee.receive_request("ACK")
        held = call.caller.final()
        assert held.status == 200
        assert_names_relay(held.body, relay, call.callee_rtp.port)
        call.caller.send(
            call.caller.request("ACK", target_of(answer), to_of(answer), call.call_id, 3),
            edge.port,
        )

        # The callee sends the next offer (from-tag: its own tag on the relay), CSeq 1
        # in the B-leg dialog, whose remote target is the edge's Contact.
        resume = call.callee.request(
            "INVITE",
            str(call.incoming.contacts[0].uri),  # type: ignore[index]
            call.incoming.headers.get("From") or "",
            call.incoming.call_id,
            1,
            body=sdp_for(call.callee_rtp.port, 2).replace(b"o=- 2 1", b"o=- 2 2"),
        )
        call.callee.send(resume, edge.port)
        to_caller = call.caller.receive_request("INVITE")
        assert_names_relay(to_caller.body, relay, call.callee_rtp.port)
        call.caller.answer(to_caller, 200, "OK", edge.port, sdp_for(call.caller_rtp.port, 1))
        resumed = call.callee.final()
        assert resumed.status == 200
        assert assert_names_relay(resumed.body, relay, call.caller_rtp.port) == first
        hang_up(call, answer, edge, cseq=4)
        relay.wait_gone(call.call_id)


def test_cancel_deletes_the_relay_call(edge_factory: EdgeFactory, our_relay: Relay) -> None:
    edge = edge_factory(extra_args=relay_args(our_relay.ng))
    with phones(edge) as call:
        call.callee.answer(call.incoming, 180, "Ringing", edge.port)
        assert our_relay.has_call(call.call_id)
        call.caller.send(cancel_for(call.invite), edge.port)
        cancelled = call.callee.receive_request("CANCEL")
        call.callee.answer(cancelled, 200, "OK", edge.port)
        call.callee.answer(call.incoming, 487, "Request Terminated", edge.port)
        statuses = {call.caller.final().status, call.caller.final().status}
        assert statuses == {200, 487}
        our_relay.wait_gone(call.call_id)


def test_a_call_without_media_is_ended_when_the_relay_times_it_out(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """A phone gone without a BYE: no media, so the relay ends the call after its idle
    timeout and tells the edge (contracts.ng.notice), which hangs up both legs."""
    with running_relay("cloudpbx", tmp_path, "--idle-timeout", "1") as relay:
        edge = edge_factory(extra_args=relay_args(relay.ng))
        with phones(edge) as call:
            answer_call(call, edge)
            assert relay.has_call(call.call_id)
            # No RTP at all: within a couple of seconds both phones get a BYE.
            for phone in (call.caller, call.callee):
                bye = phone.receive_request("BYE")
                phone.answer(bye, 200, "OK", edge.port)
            assert not relay.has_call(call.call_id)


@pytest.mark.parametrize("fault", ["silent", "full"])
def test_relay_silent_or_out_of_ports_gets_the_caller_503_and_no_b_leg(
    edge_factory: EdgeFactory, tmp_path: Path, fault: str
) -> None:
    with _faulty_relay(fault, tmp_path) as ng:
        edge = edge_factory(extra_args=relay_args(ng))
        caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
        callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
        try:
            callee.register(edge.port)
            caller.invite(edge.port, "2002", body=sdp_for(4000, 1))
            refused = caller.final()
            assert refused.status == 503
            warning = refused.headers.get("Warning") or ""
            assert "media relay" in warning
            callee.sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                callee.receive_request("INVITE")
        finally:
            caller.close()
            callee.close()


@contextmanager
def _faulty_relay(fault: str, tmp_path: Path) -> Iterator[int]:
    """``silent``: an ng port nothing listens on; ``full``: our relay with one port pair
    (a call needs two), which refuses every offer."""
    if fault == "silent":
        yield free_port()
        return
    with running_relay("full", tmp_path) as running:
        yield running.ng


def test_tenant_without_anchoring_gets_its_sdp_untouched(
    edge_factory: EdgeFactory, our_relay: Relay
) -> None:
    name = f"t{secrets.token_hex(4)}"
    domain = f"{name}.pbx.test"

    def no_anchor(folder: Path) -> None:
        write_tenant(folder, name, domain)
        path = folder / f"{name}.yaml"
        text = path.read_text().replace("  limits:", "  media: {anchor: false}\n  limits:")
        path.write_text(text)

    edge = edge_factory(
        extra_args=relay_args(our_relay.ng), manifest=no_anchor, tenant=name, domain=domain
    )
    with phones(edge) as call:
        assert call.incoming.body == call.invite.body
        answer = answer_call(call, edge)
        assert answer.body == sdp_for(call.callee_rtp.port, 2)
        assert not our_relay.has_call(call.call_id)
        hang_up(call, answer, edge)


# --- late offers: the INVITE without SDP, the offer in the 2xx, the answer in the ACK --------


@contextmanager
def late_phones(edge: EdgeProc) -> Iterator[Call]:
    """2001 calls 2002 with an INVITE without SDP (RFC 3261 §13.2.1: the callee offers)."""
    caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
    caller_rtp, callee_rtp = RtpPort(), RtpPort()
    try:
        callee.register(edge.port)
        invite = caller.invite(edge.port, "2002", body=b"")
        incoming = callee.receive_request("INVITE")
        assert incoming.body == b""
        yield Call(caller, callee, caller_rtp, callee_rtp, invite, incoming)
    finally:
        for closable in (caller, callee, caller_rtp, callee_rtp):
            closable.close()


def assert_no_ack_yet(phone: ScriptedPhone) -> None:
    """Our ACK to a 2xx that offered must wait for the answer: nothing comes meanwhile."""
    phone.sock.settimeout(0.4)
    try:
        with pytest.raises(TimeoutError):
            phone.receive_request("ACK")
    finally:
        phone.sock.settimeout(5)


def late_answer(call: Call, edge: EdgeProc) -> tuple[Response, Request]:
    """The callee offers in its 200; the caller answers in its ACK. (The caller's 200,
    the ACK the callee got.)"""
    offer = sdp_for(call.callee_rtp.port, 2)
    call.callee.answer(call.incoming, 200, "OK", edge.port, offer)
    answer = call.caller.final()
    assert answer.status == 200
    call.callee.answer(call.incoming, 200, "OK", edge.port, offer)  # a retransmission
    assert_no_ack_yet(call.callee)
    ack = call.caller.request(
        "ACK",
        target_of(answer),
        to_of(answer),
        call.call_id,
        2,
        body=sdp_for(call.caller_rtp.port, 1),
    )
    call.caller.send(ack, edge.port)
    got = call.callee.receive_request("ACK")
    assert got.cseq.number == call.incoming.cseq.number
    assert got.to.tag == call.callee.tag
    # A 2xx retransmitted now (our ACK lost) gets the same ACK, answer and all, again.
    call.callee.answer(call.incoming, 200, "OK", edge.port, offer)
    assert call.callee.receive_request("ACK").to_bytes() == got.to_bytes()
    return answer, got


def test_a_late_offer_is_anchored_offer_in_the_2xx_answer_in_the_ack(
    edge_factory: EdgeFactory, relay: Relay
) -> None:
    edge = edge_factory(extra_args=relay_args(relay.ng))
    with late_phones(edge) as call:
        answer, ack = late_answer(call, edge)
        to_callee_leg = assert_names_relay(answer.body, relay, call.callee_rtp.port)
        to_caller_leg = assert_names_relay(ack.body, relay, call.caller_rtp.port)
        assert (ack.headers.get("Content-Type") or "").startswith("application/sdp")
        got_by_callee, got_by_caller = exchange_rtp(
            call.caller_rtp, to_callee_leg, call.callee_rtp, to_caller_leg
        )
        assert got_by_callee > 10
        assert got_by_caller > 10
        hang_up(call, answer, edge)
        relay.wait_gone(call.call_id)


def test_a_late_offer_without_anchoring_passes_the_answer_on_in_the_ack(
    edge_factory: EdgeFactory,
) -> None:
    """The B leg's ACK carries the caller's answer even when no relay is involved (a
    B2BUA that ACKed on the 2xx would lose it, and the callee would have no session)."""
    edge = edge_factory()
    with late_phones(edge) as call:
        answer, ack = late_answer(call, edge)
        assert answer.body == sdp_for(call.callee_rtp.port, 2)
        assert ack.body == sdp_for(call.caller_rtp.port, 1)
        hang_up(call, answer, edge)


def test_a_late_offer_whose_ack_brings_no_answer_ends_the_call(
    edge_factory: EdgeFactory, our_relay: Relay
) -> None:
    edge = edge_factory(extra_args=relay_args(our_relay.ng))
    with late_phones(edge) as call:
        call.callee.answer(call.incoming, 200, "OK", edge.port, sdp_for(call.callee_rtp.port, 2))
        answer = call.caller.final()
        ack = call.caller.request("ACK", target_of(answer), to_of(answer), call.call_id, 2)
        call.caller.send(ack, edge.port)
        assert call.callee.receive_request("ACK").body == b""
        for phone in (call.caller, call.callee):  # no session: both legs are hung up
            phone.answer(phone.receive_request("BYE"), 200, "OK", edge.port)
        our_relay.wait_gone(call.call_id)


def test_a_reinvite_without_sdp_is_anchored_offer_in_the_2xx_answer_in_the_ack(
    edge_factory: EdgeFactory, relay: Relay
) -> None:
    """A re-INVITE without SDP asks the callee for a new offer: it moves its media to a
    new port, and the caller's answer comes in the ACK; the media follows through the relay."""
    edge = edge_factory(extra_args=relay_args(relay.ng))
    with phones(edge) as call:
        answer = answer_call(call, edge)
        reinvite = call.caller.request("INVITE", target_of(answer), to_of(answer), call.call_id, 3)
        call.caller.send(reinvite, edge.port)
        asked = call.callee.receive_request("INVITE")
        assert asked.body == b""
        moved = RtpPort()
        try:
            offer = sdp_for(moved.port, 2).replace(b"o=- 2 1", b"o=- 2 2")
            call.callee.answer(asked, 200, "OK", edge.port, offer)
            offered = call.caller.final()
            assert offered.status == 200
            # rtpengine may give the new offer new ports (ours keeps them): either is
            # fine as long as the media follows what the SDP says.
            to_callee_leg = assert_names_relay(offered.body, relay, moved.port)
            assert_no_ack_yet(call.callee)
            ack = call.caller.request(
                "ACK",
                target_of(answer),
                to_of(answer),
                call.call_id,
                3,
                body=sdp_for(call.caller_rtp.port, 1).replace(b"o=- 1 1", b"o=- 1 2"),
            )
            call.caller.send(ack, edge.port)
            got = call.callee.receive_request("ACK")
            assert got.cseq.number == asked.cseq.number
            to_caller_leg = assert_names_relay(got.body, relay, call.caller_rtp.port)
            got_by_callee, got_by_caller = exchange_rtp(
                call.caller_rtp, to_callee_leg, moved, to_caller_leg
            )
            assert got_by_callee > 10
            assert got_by_caller > 10
        finally:
            moved.close()
        hang_up(call, answer, edge, cseq=4)
        relay.wait_gone(call.call_id)
