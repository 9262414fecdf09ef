"""Stateless edges: a call set up through edge process A is ended through edge process B.

Both processes share one Redis (registrations and dialogs live there, nothing that
matters lives in a process). The phones are small scripted UAs built on the SIP core, so
the test decides exactly which edge each request goes to: everything to A, then the
caller's BYE to B. B finds the call in Redis, answers the BYE and sends the callee its
BYE; the call is gone from Redis afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import redis

from contracts.keys import dialog_key, tenant_key_pattern
from sipbench.scripted import SDP, ScriptedPhone
from sipedge.sip.message import Request, make_response

PASSWORDS = {"2001": "pw-2001-test", "2002": "pw-2002-test"}


def test_bye_through_another_edge_process(edge_factory: Any) -> None:
    a = edge_factory(redis=True)
    b = edge_factory(redis=True, tenant=a.tenant)
    caller = ScriptedPhone("2001", a.domain, PASSWORDS["2001"])
    callee = ScriptedPhone("2002", a.domain, PASSWORDS["2002"])
    store = redis.Redis.from_url(a.redis_url)
    try:
        callee.register(a.port)
        call_id = caller.invite(a.port, "2002").call_id

        incoming = callee.receive()
        assert isinstance(incoming, Request)
        assert incoming.method == "INVITE"
        answer = make_response(incoming, 200, "OK", to_tag=callee.tag)
        answer.headers.add("Contact", f"<sip:2002@127.0.0.1:{callee.port}>")
        answer.headers.add("Content-Type", "application/sdp")
        answer.body = SDP
        callee.send(answer, a.port)

        ok = caller.final()
        assert ok.status == 200
        edge_contact = str(ok.contacts[0].uri)  # type: ignore[index]
        in_dialog_to = ok.headers.get("To") or ""
        caller.send(caller.request("ACK", edge_contact, in_dialog_to, call_id, 2), a.port)
        assert store.exists(dialog_key(a.tenant, call_id))

        bye = caller.request("BYE", edge_contact, in_dialog_to, call_id, 3)
        caller.send(bye, b.port)  # the other process
        far_bye = callee.receive()
        while isinstance(far_bye, Request) and far_bye.method == "ACK":
            far_bye = callee.receive()
        assert isinstance(far_bye, Request)
        assert far_bye.method == "BYE"
        assert far_bye.top_via.port == b.port  # B, not A, ended the callee's leg
        callee.send(make_response(far_bye, 200, "OK"), b.port)
        assert caller.final().status == 200
        assert not store.exists(dialog_key(a.tenant, call_id))
    finally:
        caller.close()
        callee.close()
        for key in store.scan_iter(match=tenant_key_pattern(a.tenant)):
            store.delete(key)
        store.close()
