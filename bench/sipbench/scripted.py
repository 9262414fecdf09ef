"""A scripted SIP phone for tests: every request and answer spelled out by the test.

Built on cloudpbx's own SIP core (messages, digest client side) over a UDP socket on
127.0.0.1, so a test decides exactly what goes where (which edge process, which
CSeq, which body) and reads every answer. Real-world peers (SIPp, baresip) are in the
other modules; this is for the cases they cannot script.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Sequence

from sipedge.sip.auth import parse_challenge
from sipedge.sip.digest import answer_challenge
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response, make_response

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


class ScriptedPhone:
    """A UDP phone on 127.0.0.1 whose every request and answer the test spells out."""

    def __init__(self, user: str, domain: str, password: str) -> None:
        self.user, self.domain, self.password = user, domain, password
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
            password=self.password,
        )
        request.headers.add(reply, credentials.to_header_value())
        return request

    def invite(
        self,
        edge_port: int,
        callee: str,
        *,
        max_forwards: int = 70,
        body: bytes = SDP,
        call_id: str | None = None,
        cseq: int = 1,
    ) -> Request:
        """Call ``callee`` as a phone does: INVITE, the edge's 407, its ACK, then the
        INVITE with credentials (the next CSeq), which is returned as sent. ``body``: the
        offer; ``call_id`` and ``cseq``: another attempt of an earlier call's Call-ID."""
        call_id = call_id or secrets.token_hex(8)
        to = f"<sip:{callee}@{self.domain}>"
        uri = f"sip:{callee}@{self.domain}"
        first = self.request("INVITE", uri, to, call_id, cseq, body=body)
        first.headers.set("Max-Forwards", str(max_forwards))
        self.send(first, edge_port)
        challenge = self.final()
        if challenge.status != 407:
            raise AssertionError(f"expected 407, got {challenge.status} {challenge.reason}")
        self.ack_failure(first, challenge, edge_port)
        second = self.request("INVITE", first.uri_text, to, call_id, cseq + 1, body=body)
        second.headers.set("Max-Forwards", str(max_forwards))
        self.send(self.with_auth(second, challenge), edge_port)
        return second

    def ack_failure(self, invite: Request, response: Response, edge_port: int) -> None:
        """ACK a failure answer to ``invite`` (RFC 3261 §17.1.1.3: its branch, the answer's
        To)."""
        to = response.headers.get("To") or ""
        ack = self.request("ACK", invite.uri_text, to, invite.call_id, invite.cseq.number)
        ack.headers.set("Via", invite.headers.get("Via") or "")
        self.send(ack, edge_port)

    def register(self, edge_port: int, contact: str | None = None) -> Response:
        """Register (401, then digest); ``contact`` replaces our real one (a NATed phone
        writes its private address there). Returns the 200."""
        call_id = secrets.token_hex(6)
        aor = f"<sip:{self.user}@{self.domain}>"
        responses: list[Response] = []
        for cseq in (1, 2):
            request = self.request(
                "REGISTER", f"sip:{self.domain}", aor, call_id, cseq, [("Expires", "300")]
            )
            if contact is not None:
                request.headers.set("Contact", contact)
            if responses:
                request = self.with_auth(request, responses[-1])
            self.send(request, edge_port)
            responses.append(self.final())
        assert responses[0].status == 401
        assert responses[1].status == 200
        return responses[1]

    def register_status(self, edge_port: int) -> int:
        """The status a REGISTER ends with, answering one challenge: 200 when the edge
        takes the phone, else its refusal (a wrong password's, a disabled tenant's)."""
        call_id = secrets.token_hex(6)
        aor = f"<sip:{self.user}@{self.domain}>"
        first = self.request("REGISTER", f"sip:{self.domain}", aor, call_id, 1)
        self.send(first, edge_port)
        challenge = self.final()
        if challenge.status != 401:
            return challenge.status
        second = self.request("REGISTER", f"sip:{self.domain}", aor, call_id, 2)
        self.send(self.with_auth(second, challenge), edge_port)
        return self.final().status

    def answer(
        self, request: Request, status: int, reason: str, port: int, body: bytes = b""
    ) -> Response:
        """Answer ``request`` (with our tag and Contact, and SDP when ``body``) via ``port``."""
        response = make_response(request, status, reason, to_tag=self.tag)
        if 100 < status < 300:
            response.headers.add("Contact", f"<sip:{self.user}@127.0.0.1:{self.port}>")
        if body:
            response.headers.add("Content-Type", "application/sdp")
            response.body = body
        self.send(response, port)
        return response

    def receive_request(self, method: str) -> Request:
        """The next request of ``method``, skipping retransmitted answers and ACKs."""
        while True:
            message = self.receive()
            if isinstance(message, Request) and message.method == method:
                return message
