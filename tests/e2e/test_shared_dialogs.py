"""Stateless edges: a call set up through edge process A is ended through edge process B.

Both processes share one Redis (registrations and dialogs live there, nothing that
matters lives in a process). The phones are small scripted UAs built on the SIP core, so
the test decides exactly which edge each request goes to: everything to A, then the
caller's BYE to B. B finds the call in Redis, answers the BYE and sends the callee its
BYE; the call is gone from Redis afterwards.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence
from typing import Any

import redis

from contracts.keys import dialog_key, tenant_key_pattern
from sipedge.sip.auth import parse_challenge
from sipedge.sip.digest import answer_challenge
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response, make_response

PASSWORDS = {"2001": "pw-2001-test", "2002": "pw-2002-test"}
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


class ScriptedPhone:
    """A UDP phone on 127.0.0.1 whose every request and answer the test spells out."""

    def __init__(self, user: str, domain: str) -> None:
        self.user, self.domain = user, domain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.tag = secrets.token_hex(4)

    def close(self) -> None:
        self.sock.close()

    def request(
        self,
        method: str,
        uri: str,
        to: str,
        call_id: str,
        cseq: int,
        extra: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        return Request(
            method,
            uri,
            [
                (
                    "Via",
                    f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
                ),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{self.user}@{self.domain}>;tag={self.tag}"),
                ("To", to),
                ("Call-ID", call_id),
                ("CSeq", f"{cseq} {method}"),
                ("Contact", f"<sip:{self.user}@127.0.0.1:{self.port}>"),
                *extra,
            ]
            + ([("Content-Type", "application/sdp")] if body else []),
            body,
        )

    def send(self, message: Request | Response, port: int) -> None:
        self.sock.sendto(message.to_bytes(), ("127.0.0.1", port))

    def receive(self) -> Request | Response:
        data, _ = self.sock.recvfrom(65535)
        return parse_datagram(data)

    def final(self) -> Response:
        while True:
            message = self.receive()
            if isinstance(message, Response) and message.status >= 200:
                return message

    def with_auth(self, request: Request, challenge: Response) -> Request:
        header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
        reply = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
        parsed = parse_challenge(challenge.headers.lines(header)[0], header)
        credentials = answer_challenge(
            parsed,
            method=request.method,
            uri=request.uri_text,
            username=self.user,
            cnonce=secrets.token_hex(4),
            password=PASSWORDS[self.user],
        )
        request.headers.add(reply, credentials.to_header_value())
        return request

    def register(self, edge_port: int) -> None:
        call_id = secrets.token_hex(6)
        aor = f"<sip:{self.user}@{self.domain}>"
        first = self.request(
            "REGISTER", f"sip:{self.domain}", aor, call_id, 1, [("Expires", "300")]
        )
        self.send(first, edge_port)
        challenge = self.final()
        assert challenge.status == 401
        second = self.request(
            "REGISTER", f"sip:{self.domain}", aor, call_id, 2, [("Expires", "300")]
        )
        self.send(self.with_auth(second, challenge), edge_port)
        assert self.final().status == 200


def test_bye_through_another_edge_process(edge_factory: Any) -> None:
    a = edge_factory(redis=True)
    b = edge_factory(redis=True, tenant=a.tenant)
    caller, callee = ScriptedPhone("2001", a.domain), ScriptedPhone("2002", a.domain)
    store = redis.Redis.from_url(a.redis_url)
    try:
        callee.register(a.port)
        call_id = secrets.token_hex(8)
        to = f"<sip:2002@{a.domain}>"
        invite = caller.request("INVITE", f"sip:2002@{a.domain}", to, call_id, 1, body=SDP)
        caller.send(invite, a.port)
        challenge = caller.final()
        assert challenge.status == 407
        ack = caller.request("ACK", invite.uri_text, challenge.headers.get("To") or to, call_id, 1)
        ack.headers.set("Via", invite.headers.get("Via") or "")
        caller.send(ack, a.port)
        invite = caller.with_auth(
            caller.request("INVITE", invite.uri_text, to, call_id, 2, body=SDP), challenge
        )
        caller.send(invite, a.port)

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
