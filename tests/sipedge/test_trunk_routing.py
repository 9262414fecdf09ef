"""Where calls go and the messages of trunk calls (sipedge.calls.trunks): the dial plan's
routes, caller ID per policy, the INVITE answering a provider's challenge, codecs kept,
and which INVITEs count as a trunk's."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from contracts.sdp import parse_sdp
from contracts.snapshot import BillingPlan, Extension, Limits, TenantSnapshot
from sipedge.calls.admission import Refused
from sipedge.calls.build import Identity
from sipedge.calls.trunks import (
    NOT_FOUND,
    VOICEMAIL_NOT_SERVED,
    Inbound,
    Local,
    Outbound,
    TrunkRef,
    TrunkSources,
    fails_over,
    inbound_call,
    only_codecs,
    presented,
    route,
    to_next_server,
    trunk_addresses,
    trunk_invite,
    with_credentials,
)
from sipedge.sip.auth import parse_credentials
from sipedge.sip.digest import DigestServer, Verdict, ha1
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request, Response
from sipedge.trunking import Hop

DOMAIN = "acme.pbx.test"


def extension(number: str, name: str = "") -> Extension:
    digest = hashlib.md5(f"{number}:{DOMAIN}:pw".encode()).hexdigest()
    sha = hashlib.sha256(f"{number}:{DOMAIN}:pw".encode()).hexdigest()
    return Extension(number=number, display_name=name, ha1_md5=digest, ha1_sha256=sha)


def trunk(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cloudpbx.io/v1",
        "kind": "Trunk",
        "metadata": {"name": name},
        "spec": {
            "tenant": "acme",
            "host": "192.0.2.10",
            "username": "4930555",
            "password": {"file": f"{name}.password"},
            **spec,
        },
    }


BARRED = {"reject": {"status": 403, "reason": "Premium Numbers Barred"}}
NATIONAL = {"trunks": ["a", "b"], "noAnswerSeconds": 20}
RULES: list[dict[str, Any]] = [
    {"name": "emergency", "match": {"prefix": "112"}, "route": {"trunks": ["b", "a"]}},
    {"name": "premium", "match": {"prefix": "0900"}, "route": BARRED},
    {"name": "national", "match": {"pattern": "0Z."}, "strip": 1, "prepend": "49",
     "route": NATIONAL},
    {"name": "short", "match": {"pattern": "9XX"}, "strip": 1, "route": {"extension": True}},
    {"name": "mailbox", "match": {"prefix": "*98"}, "route": {"voicemail": True}},
    {"name": "did", "match": {"prefix": "+4930555"}, "strip": 8, "route": {"extension": True}},
]  # fmt: skip


def tenant(rules: list[dict[str, Any]] = RULES, **more: Any) -> TenantSnapshot:
    plan = {
        "apiVersion": "cloudpbx.io/v1",
        "kind": "DialPlan",
        "metadata": {"name": "main"},
        "spec": {"tenant": "acme", "rules": rules},
    }
    return TenantSnapshot(
        name="acme",
        domain=DOMAIN,
        extensions=(extension("100", "Front Desk"), extension("101"), extension("2001")),
        trunk_manifests=(
            trunk("a", dids=["+4930555100", "+4930555101"], port=5070),
            trunk("b", host="sip.carrier-b.example", outboundProxy="sip:198.51.100.9:5080"),
        ),
        dial_plan_manifests=(plan,),
        trunk_passwords={"a": "pw-a", "b": "pw-b"},
        **more,
    )


ACME = tenant()


# --- routing ---------------------------------------------------------------------------------


def test_a_national_number_goes_out_through_the_trunks_in_order_rewritten() -> None:
    target = route(ACME, "0301234567")
    assert isinstance(target, Outbound)
    assert target.number == "49301234567"
    assert [t.name for t in target.trunks] == ["a", "b"]
    assert target.no_answer_s == 20


def test_rules_apply_in_order() -> None:
    target = route(ACME, "112")
    assert isinstance(target, Outbound)
    assert [t.name for t in target.trunks] == ["b", "a"]


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("0900123", Refused(403, "Premium Numbers Barred")),
        ("*98", VOICEMAIL_NOT_SERVED),
        ("999", NOT_FOUND),  # 9XX → extension 99: there is none
        ("+4930555199", NOT_FOUND),  # the DID rule → extension 199: none
        ("555", NOT_FOUND),  # no rule, no extension
    ],
)
def test_refusals(dialled: str, expected: Refused) -> None:
    assert route(ACME, dialled) == expected


@pytest.mark.parametrize(("dialled", "number"), [("2001", "2001"), ("+4930555100", "100")])
def test_extensions_by_number_or_by_rule(dialled: str, number: str) -> None:
    target = route(ACME, dialled)
    assert isinstance(target, Local)
    assert target.callee.number == number


def test_a_trial_calling_out_is_refused_unless_verified() -> None:
    trial = tenant(
        billing=BillingPlan(
            plan="trial", call_limit_s=60, daily_minutes=60, verified_numbers=("49301234567",)
        ),
        limits=Limits(max_concurrent_calls=1),
    )
    assert isinstance(route(trial, "0301234567"), Outbound)  # verified
    assert route(trial, "0307654321") == Refused(403, "Trial Calls Internal Only")


# --- out through a trunk ------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_the_trunk_not_the_callee_failed(status: int) -> None:
    assert fails_over(status)


@pytest.mark.parametrize("status", [403, 404, 480, 486, 487, 488, 600, 603])
def test_the_callees_answers_go_to_the_caller(status: int) -> None:
    assert not fails_over(status)
    assert fails_over(status, auth_refused=True)


def test_caller_id_policies() -> None:
    a = ACME.trunk("a")
    assert a is not None
    assert presented(a, "2001", "Bob") == ("4930555", "")
    passthrough = tenant_with_policy({"policy": "passthrough"})
    assert presented(passthrough, "2001", "Bob") == ("2001", "Bob")
    fixed = tenant_with_policy({"policy": "fixed", "number": "+4930555199"})
    assert presented(fixed, "2001", "Bob") == ("+4930555199", "")


def tenant_with_policy(caller_id: dict[str, str]) -> Any:
    snapshot = TenantSnapshot(
        name="acme",
        domain=DOMAIN,
        trunk_manifests=(trunk("c", callerId=caller_id),),
        trunk_passwords={"c": "pw"},
    )
    return snapshot.trunk("c")


A_INVITE = (
    "INVITE sip:0301234567@acme.pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKa1\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Bob" <sip:2001@acme.pbx.test>;tag=f1\r\n'
    "To: <sip:0301234567@acme.pbx.test>\r\n"
    "Call-ID: a-leg@203.0.113.5\r\n"
    "CSeq: 2 INVITE\r\n"
    "Contact: <sip:2001@203.0.113.5:5060>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{body}"
)
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=fmtp:9 foo\r\na=sendrecv\r\n"
)


def a_invite(body: str = OFFER) -> Request:
    message = parse_datagram(A_INVITE.format(length=len(body), body=body).encode())
    assert isinstance(message, Request)
    return message


ME = Identity(
    "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKb1;rport",
    "<sip:acme@198.51.100.1:5060>",
    "cloudpbx",
)


def b_invite(name: str = "a", **more: Any) -> Request:
    chosen = ACME.trunk(name)
    assert chosen is not None
    return trunk_invite(
        a_invite(),
        chosen,
        number=more.get("number", "49301234567"),
        caller_number="2001",
        caller_name="Bob",
        call_id="b-leg@198.51.100.1",
        from_tag="bt1",
        max_forwards=69,
        me=ME,
    )


def test_the_providers_invite() -> None:
    invite = b_invite()
    assert invite.uri_text == "sip:49301234567@192.0.2.10:5070"
    assert invite.headers.get("From") == "<sip:4930555@192.0.2.10>;tag=bt1"
    assert invite.headers.get("To") == "<sip:49301234567@192.0.2.10>"
    assert invite.headers.get("P-Asserted-Identity") == "<sip:4930555@192.0.2.10>"
    assert invite.headers.get("Route") is None
    assert invite.call_id == "b-leg@198.51.100.1"
    assert invite.body == OFFER.encode()  # no codec list: the offer as it came


def test_an_outbound_proxy_gets_a_loose_route_and_a_hash_is_escaped() -> None:
    invite = b_invite("b", number="*31#4930")
    assert invite.uri_text == "sip:*31%234930@sip.carrier-b.example"
    assert invite.headers.get("Route") == "<sip:198.51.100.9:5080;lr>"


def test_only_the_trunks_codecs_are_offered_in_its_order() -> None:
    kept = parse_sdp(only_codecs(OFFER.encode(), ["PCMA", "PCMU", "telephone-event"]))
    (audio,) = kept.media
    assert audio.formats == ("8", "0", "101")
    assert [a.value for a in audio.attributes if a.name == "fmtp"] == ["101 0-16"]
    assert "G722" not in only_codecs(OFFER.encode(), ["PCMA"]).decode()


def test_an_offer_without_any_allowed_codec_goes_as_it_came() -> None:
    assert only_codecs(OFFER.encode(), ["G729"]) == OFFER.encode()
    assert only_codecs(b"not sdp", ["PCMA"]) == b"not sdp"


@pytest.mark.parametrize(
    ("status", "header"), [(401, "Authorization"), (407, "Proxy-Authorization")]
)
@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",)])
def test_a_challenge_is_answered_in_a_new_invite_with_the_next_cseq(
    status: int, header: str, algorithms: tuple[str, ...]
) -> None:
    server = DigestServer("provider.test", b"k" * 32, algorithms)
    invite = b_invite()
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    found = server.challenges(client_addr="198.51.100.1", now=1_780_000_000.0)
    challenge = response(status, *(f"{name}: {c.to_header_value()}" for c in found))
    new_via = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKb2;rport"
    again = with_credentials(
        invite, challenge, username="4930555", password="pw-a", cnonce="c0ffee", via=new_via
    )
    assert again is not None
    assert again.cseq.number == invite.cseq.number + 1
    assert again.headers.get("Via") == new_via
    for same in ("From", "To", "Call-ID", "P-Asserted-Identity", "Contact"):
        assert again.headers.get(same) == invite.headers.get(same)
    assert again.body == invite.body
    credentials = parse_credentials(again.headers.single(header), header)
    algorithm = str(credentials.get("algorithm") or "MD5")
    assert algorithm == algorithms[0]
    verdict = server.verify(
        credentials,
        method="INVITE",
        stored_ha1=ha1("4930555", "provider.test", "pw-a", algorithm),
        client_addr="198.51.100.1",
        now=1_780_000_000.0,
        request_uri=invite.uri_text,
    ).verdict
    assert verdict is Verdict.OK


def test_an_in_dialog_request_is_answered_with_its_own_method() -> None:
    """A provider challenging our BYE gets it again: method BYE in the digest and CSeq."""
    bye = b_invite()
    bye.method = "BYE"
    bye.headers.set("CSeq", "3 BYE")
    server = DigestServer("provider.test", b"k" * 32, ("MD5",))
    (found,) = server.challenges(client_addr="198.51.100.1", now=1_780_000_000.0)
    challenge = response(407, f"Proxy-Authenticate: {found.to_header_value()}")
    again = with_credentials(
        bye, challenge, username="4930555", password="pw-a", cnonce="c", via="v"
    )
    assert again is not None
    assert (again.method, again.headers.get("CSeq")) == ("BYE", "4 BYE")
    credentials = parse_credentials(
        again.headers.single("Proxy-Authorization"), "Proxy-Authorization"
    )
    verdict = server.verify(
        credentials,
        method="BYE",
        stored_ha1=ha1("4930555", "provider.test", "pw-a", "MD5"),
        client_addr="198.51.100.1",
        now=1_780_000_000.0,
        request_uri=bye.uri_text,
    ).verdict
    assert verdict is Verdict.OK


def test_the_invite_for_the_next_server_leaves_the_failed_ones_credentials_behind() -> None:
    """RFC 3263 §4.3: the same call to the provider's next server, as a new transaction
    (branch, next CSeq) of the same dialog; the credentials answered the failed server's
    nonce, so they stay behind and the next server challenges afresh."""
    server = DigestServer("provider.test", b"k" * 32, ("MD5",))
    (found,) = server.challenges(client_addr="198.51.100.1", now=1_780_000_000.0)
    challenge = response(407, f"Proxy-Authenticate: {found.to_header_value()}")
    invite = b_invite()
    answered = with_credentials(
        invite, challenge, username="4930555", password="pw-a", cnonce="c", via="v1"
    )
    assert answered is not None
    new_via = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKb3;rport"
    again = to_next_server(answered, via=new_via)
    assert (again.method, again.uri_text) == ("INVITE", invite.uri_text)
    assert again.cseq.number == invite.cseq.number + 2
    assert again.headers.get("Via") == new_via
    assert again.headers.get("Proxy-Authorization") is None
    for same in ("From", "To", "Call-ID", "P-Asserted-Identity", "Contact"):
        assert again.headers.get(same) == invite.headers.get(same)
    assert again.body == invite.body


def test_a_challenge_we_cannot_answer_gives_none() -> None:
    challenge = response(
        407, 'Proxy-Authenticate: Digest realm="x", nonce="n", algorithm=AKAv1-MD5'
    )
    assert (
        with_credentials(b_invite(), challenge, username="u", password="p", cnonce="c", via="v")
        is None
    )


def response(status: int, *headers: str) -> Response:
    lines = [
        f"SIP/2.0 {status} Challenge",
        "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKb1;rport",
        "From: <sip:4930555@192.0.2.10>;tag=bt1",
        "To: <sip:49301234567@192.0.2.10>;tag=p1",
        "Call-ID: b-leg@198.51.100.1",
        "CSeq: 1 INVITE",
        *headers,
        "Content-Length: 0",
    ]
    message = parse_datagram(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


# --- in from a trunk ----------------------------------------------------------------------------


def test_sources_are_the_trunk_and_its_proxy() -> None:
    a, b = ACME.trunk("a"), ACME.trunk("b")
    assert a is not None
    assert b is not None
    assert trunk_addresses(a) == [Hop("192.0.2.10", 5070, "UDP")]
    assert trunk_addresses(b) == [
        Hop("sip.carrier-b.example", 5060, "UDP", srv=True),  # named without a port: SRV
        Hop("198.51.100.9", 5080, "UDP"),
    ]


def test_a_source_is_a_trunks_only_at_its_address_and_udp_port() -> None:
    ref = TrunkRef("acme", "a")
    sources = TrunkSources([(("UDP", "192.0.2.10", 5070), ref), (("TCP", "192.0.2.11", 5060), ref)])
    assert sources.at("UDP", "192.0.2.10", 5070) == (ref,)
    assert sources.at("udp", "192.0.2.10", 5071) == ()  # another port: a phone
    assert sources.at("TCP", "192.0.2.10", 5070) == ()
    assert sources.at("TCP", "192.0.2.11", 40_123) == (ref,)  # TCP: any source port
    assert TrunkSources().at("UDP", "192.0.2.10", 5070) == ()


def from_trunk(uri: str, to: str) -> Request:
    text = (
        f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKp1\r\n"
        "Max-Forwards: 69\r\nFrom: <sip:+4930123456@192.0.2.10>;tag=p1\r\n"
        f"To: <{to}>\r\nCall-ID: in-1@192.0.2.10\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:+4930123456@192.0.2.10:5070>\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse_datagram(text.encode())
    assert isinstance(message, Request)
    return message


def lookup(name: str) -> TenantSnapshot | None:
    return ACME if name == "acme" else None


REFS = (TrunkRef("acme", "a"), TrunkRef("acme", "b"))


@pytest.mark.parametrize(
    ("uri", "to", "expected"),
    [
        # to our registered Contact: the DID is in To
        (
            "sip:trunk-a.acme@198.51.100.1:5060",
            "sip:+4930555100@provider.test",
            ("a", "+4930555100"),
        ),
        ("sip:trunk-a.acme@198.51.100.1:5060", "sip:4930555101@provider.test", ("a", "4930555101")),
        # the DID in the Request-URI
        ("sip:+4930555101@198.51.100.1:5060", "sip:whoever@provider.test", ("a", "+4930555101")),
        ("sip:4930555100@198.51.100.1", "sip:4930555100@198.51.100.1", ("a", "4930555100")),
    ],
)
def test_an_inbound_call_finds_its_trunk_and_did(
    uri: str, to: str, expected: tuple[str, str]
) -> None:
    found = inbound_call(from_trunk(uri, to), REFS, lookup)
    assert isinstance(found, Inbound)
    assert (found.trunk.name, found.did) == expected
    assert found.tenant is ACME


@pytest.mark.parametrize(
    ("uri", "to", "refs"),
    [
        ("sip:trunk-a.acme@198.51.100.1", "sip:+4930555199@provider.test", REFS),  # unknown DID
        ("sip:+4930555199@198.51.100.1", "sip:+4930555199@provider.test", (TrunkRef("acme", "a"),)),
        ("sip:trunk-a.other@198.51.100.1", "sip:+4930555100@provider.test", REFS),  # not its trunk
        (
            "sip:trunk-a.acme@198.51.100.1",
            "sip:+4930555100@provider.test",
            (TrunkRef("acme", "b"),),
        ),
        ("sip:+4930555100@198.51.100.1", "sip:x@y", (TrunkRef("gone", "a"),)),
    ],
)
def test_an_unknown_did_or_trunk_is_404(uri: str, to: str, refs: tuple[TrunkRef, ...]) -> None:
    assert inbound_call(from_trunk(uri, to), refs, lookup) == NOT_FOUND


def test_a_trunk_without_a_did_list_takes_any_number() -> None:
    # trunk b lists no DIDs: the only such trunk at the source takes what it is sent
    found = inbound_call(
        from_trunk("sip:777@198.51.100.1", "sip:777@x"), (TrunkRef("acme", "b"),), lookup
    )
    assert isinstance(found, Inbound)
    assert (found.trunk.name, found.did) == ("b", "777")


def test_a_network_a_trunk_lists_holds_its_addresses_only() -> None:
    a, b = TrunkRef("acme", "a"), TrunkRef("globex", "x")
    sources = TrunkSources(
        networks=[("203.0.113.0/24", a), ("2001:db8::/48", a), ("203.0.113.128/25", b)]
    )
    assert sources.near("203.0.113.7") == (a,)
    assert sources.near("203.0.113.200") == (a, b)  # in both: both are asked
    assert sources.near("2001:db8::5") == (a,)
    assert sources.near("198.51.100.7") == ()
    assert sources.near("not-an-address") == ()
    assert sources.at("UDP", "203.0.113.7", 5060) == ()  # not its address
    assert TrunkSources().near("203.0.113.7") == ()


def test_from_a_network_only_a_listed_did_makes_a_call_the_trunks() -> None:
    """A trunk without a DID list takes any number from its own address, none from a
    network it lists: a phone there is a phone."""
    listed = from_trunk("sip:+4930555101@198.51.100.1", "sip:+4930555101@provider.test")
    found = inbound_call(listed, REFS, lookup, listed_dids_only=True)
    assert isinstance(found, Inbound)
    assert (found.trunk.name, found.did) == ("a", "+4930555101")
    anything = from_trunk("sip:777@198.51.100.1", "sip:777@x")
    assert inbound_call(anything, (TrunkRef("acme", "b"),), lookup, listed_dids_only=True) == (
        NOT_FOUND
    )
    to_contact = from_trunk("sip:trunk-b.acme@198.51.100.1", "sip:777@provider.test")
    assert isinstance(inbound_call(to_contact, (TrunkRef("acme", "b"),), lookup), Inbound)
    assert inbound_call(to_contact, (TrunkRef("acme", "b"),), lookup, listed_dids_only=True) == (
        NOT_FOUND
    )  # to our Contact too: from a network only a listed DID
