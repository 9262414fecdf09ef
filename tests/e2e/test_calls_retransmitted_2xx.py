"""A callee that retransmits its 2xx (our ACK was lost or late) gets the ACK again.

RFC 3261 §13.2.2.4: the UAC core ACKs every 2xx the transaction layer passes up, and a
retransmission of the 2xx that answered the call is the same dialog, not a second one:
the edge must not hang it up. The scripted callee retransmits its 200, must get the
very same ACK (same branch) and nothing else: the next request it sees is the caller's
in-dialog INFO, passed through, and the call still ends normally by BYE.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.scripted import SDP, ScriptedPhone
from sipedge.sip.message import Request

PASSWORDS = {"2001": "pw-2001-test", "2002": "pw-2002-test"}


@contextmanager
def ringing(edge: Any) -> Iterator[tuple[ScriptedPhone, ScriptedPhone, str, Request]]:
    """2001 calls 2002 through the edge: both phones, the A-leg Call-ID, the B-leg INVITE."""
    caller = ScriptedPhone("2001", edge.domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", edge.domain, PASSWORDS["2002"])
    try:
        callee.register(edge.port)
        call_id = caller.invite(edge.port, "2002").call_id
        yield caller, callee, call_id, callee.receive_request("INVITE")
    finally:
        caller.close()
        callee.close()


def test_retransmitted_2xx_is_acked_again_not_hung_up(edge: Any) -> None:
    with ringing(edge) as (caller, callee, call_id, incoming):
        ok = callee.answer(incoming, 200, "OK", edge.port, SDP)
        first_ack = callee.receive_request("ACK")
        callee.send(ok, edge.port)  # the same 200 again
        again = callee.receive_request("ACK")
        assert again.branch == first_ack.branch
        assert again.cseq == first_ack.cseq

        answer = caller.final()
        assert answer.status == 200
        target, in_dialog_to = str(answer.contacts[0].uri), answer.headers.get("To") or ""  # type: ignore[index]
        caller.send(caller.request("ACK", target, in_dialog_to, call_id, 2), edge.port)
        caller.send(caller.request("INFO", target, in_dialog_to, call_id, 3), edge.port)
        info = callee.receive()
        assert isinstance(info, Request)
        assert info.method == "INFO"  # not a BYE: the call is still up
        callee.answer(info, 200, "OK", edge.port)
        assert caller.final().status == 200

        caller.send(caller.request("BYE", target, in_dialog_to, call_id, 4), edge.port)
        bye = callee.receive_request("BYE")
        callee.answer(bye, 200, "OK", edge.port)
        assert caller.final().status == 200


def test_second_dialog_of_the_same_invite_is_acked_and_hung_up(edge: Any) -> None:
    """A 2xx with another To tag on the same B-leg INVITE (forked beyond the callee) is a
    second dialog: §13.2.2.4 says ACK it, and a B2BUA that already has its call ends it
    with a BYE, while the first dialog goes on."""
    with ringing(edge) as (caller, callee, call_id, incoming):
        callee.answer(incoming, 200, "OK", edge.port, SDP)
        first_ack = callee.receive_request("ACK")
        first_tag = callee.tag
        callee.tag = "second-branch"
        callee.answer(incoming, 200, "OK", edge.port, SDP)  # another dialog, same INVITE
        second_ack = callee.receive_request("ACK")
        assert second_ack.to.tag == "second-branch"
        assert first_ack.to.tag == first_tag
        bye = callee.receive_request("BYE")
        assert bye.to.tag == "second-branch"  # the second dialog is the one hung up
        callee.answer(bye, 200, "OK", edge.port)

        answer = caller.final()
        assert answer.status == 200
        target, in_dialog_to = str(answer.contacts[0].uri), answer.headers.get("To") or ""  # type: ignore[index]
        caller.send(caller.request("ACK", target, in_dialog_to, call_id, 2), edge.port)
        caller.send(caller.request("BYE", target, in_dialog_to, call_id, 3), edge.port)
        bye = callee.receive_request("BYE")
        assert bye.to.tag == first_tag  # the call itself was still up, on the first dialog
        callee.answer(bye, 200, "OK", edge.port)
        assert caller.final().status == 200
