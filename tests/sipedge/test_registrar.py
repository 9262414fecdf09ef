"""The registrar's decisions and responses, as RFC 3261 §10.3 steps 5–8 state them.

Pure tests: a REGISTER (wire bytes), the AoR's bindings and ``now`` go in; the decision
and the exact response bytes come out. The stores are tested in test_location_stores.
"""

from __future__ import annotations

import pytest

from sipedge.location import Binding, Changes, Source
from sipedge.registrar import (
    RegistrarDecision,
    RegistrarPolicy,
    address_of_record,
    build_response,
    decide,
)
from sipedge.sip.errors import ParseError, ProtocolMisuse
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Request

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
AOR = "sip:100@pbx.example.com"
CALL_ID = "843817637684230@998sdasdh09"
POLICY = RegistrarPolicy(
    domain="pbx.example.com",
    extensions=frozenset({"100", "101"}),
    min_expires_s=60,
    max_expires_s=3600,
    default_expires_s=1800,
    max_contacts=3,
)
SOURCE = Source("UDP", "198.51.100.7", 40000, edge="edge-0/udp")


def register(
    *lines: str, to: str = "sip:100@pbx.example.com", call_id: str = CALL_ID, cseq: int = 1826
) -> Request:
    """A REGISTER with the given extra header lines (Contact, Expires...)."""
    head = [
        "REGISTER sip:pbx.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport",
        "Max-Forwards: 70",
        f'To: "Alice" <{to}>',
        f'From: "Alice" <{to}>;tag=456248',
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *lines,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_datagram("\r\n".join(head).encode())
    assert isinstance(message, Request)
    return message


def stored(contact: str, *, call_id: str = CALL_ID, cseq: int = 1826, left_s: int = 600) -> Binding:
    return Binding(contact, NOW + left_s, call_id, cseq, SOURCE)


def test_the_200_ok_bytes_exactly() -> None:
    """§10.3 step 8 and §8.2.6: copied Via/From/Call-ID/CSeq, To tag, Contacts, Date."""
    request = register(
        "Contact: <sip:100@192.0.2.10:5060>;expires=600",
        "Contact: <sip:100@10.0.0.5:5062;transport=udp>;q=0.5",
        "Expires: 7200",
    )
    decision = decide(request, [], NOW, POLICY, SOURCE)
    response = build_response(request, decision, decision.bindings, NOW, to_tag="reg-1")
    assert response.to_bytes() == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport\r\n"
        b'From: "Alice" <sip:100@pbx.example.com>;tag=456248\r\n'
        b'To: "Alice" <sip:100@pbx.example.com>;tag=reg-1\r\n'
        b"Call-ID: 843817637684230@998sdasdh09\r\n"
        b"CSeq: 1826 REGISTER\r\n"
        b"Contact: <sip:100@192.0.2.10:5060>;expires=600\r\n"
        b"Contact: <sip:100@10.0.0.5:5062;transport=udp>;expires=3600;q=0.5\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )


def test_a_423_carries_min_expires_and_no_contacts() -> None:
    request = register("Contact: <sip:100@192.0.2.10>", "Expires: 30")
    decision = decide(request, [stored("sip:100@192.0.2.99")], NOW, POLICY, SOURCE)
    response = build_response(request, decision, [stored("sip:100@192.0.2.99")], NOW)
    assert (response.status, response.reason) == (423, "Interval Too Brief")
    assert response.headers.lines("Min-Expires") == ["60"]
    assert response.headers.lines("Contact") == []
    assert response.to.tag is not None


def test_the_derived_to_tag_is_stable_and_an_existing_one_is_kept() -> None:
    request = register("Contact: <sip:100@192.0.2.10>")
    decision = decide(request, [], NOW, POLICY, SOURCE)
    first = build_response(request, decision, decision.bindings, NOW)
    again = build_response(request, decision, decision.bindings, NOW)
    assert first.to.tag is not None
    assert first.to.tag == again.to.tag
    tagged = register("Contact: <sip:100@192.0.2.10>")
    tagged.headers.set("To", "<sip:100@pbx.example.com>;tag=x9")
    response = build_response(tagged, decide(tagged, [], NOW, POLICY, SOURCE), [], NOW)
    assert response.to.tag == "x9"


def test_the_remaining_time_is_what_the_200_reports() -> None:
    request = register()
    decision = decide(
        request, [stored("sip:100@192.0.2.10", left_s=600)], NOW + 100, POLICY, SOURCE
    )
    response = build_response(request, decision, decision.bindings, NOW + 100)
    assert response.headers.lines("Contact") == ["<sip:100@192.0.2.10>;expires=500"]


# -- step 5: the address-of-record -------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("sip:100@pbx.example.com", "sip:100@pbx.example.com"),
        ("sips:101@PBX.Example.COM", "sip:101@pbx.example.com"),
        ("sip:100@192.0.2.1:5070", "sip:100@pbx.example.com"),  # the tenant's domain wins
        ("sip:999@pbx.example.com", 404),  # not an extension
        ("sip:pbx.example.com", 404),  # no user
        ("tel:+15551234567", 404),  # not a SIP URI
    ],
)
def test_the_aor_comes_from_to_on_the_tenants_domain(to: str, expected: str | int) -> None:
    request = register("Contact: <sip:100@192.0.2.10>", to=to)
    target = address_of_record(request, POLICY)
    if isinstance(expected, str):
        assert target == expected
        assert decide(request, [], NOW, POLICY, SOURCE).aor == expected
    else:
        assert isinstance(target, RegistrarDecision)
        assert (target.status, target.reason) == (404, "Not Found")
        assert decide(request, [], NOW, POLICY, SOURCE).status == 404


# -- step 6: expiry intervals --------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expires_s"),
    [
        (["Contact: <sip:100@192.0.2.10>"], 1800),  # the registrar's default
        (["Contact: <sip:100@192.0.2.10>", "Expires: 600"], 600),  # the Expires header
        (["Contact: <sip:100@192.0.2.10>;expires=120", "Expires: 600"], 120),  # param wins
        (["Contact: <sip:100@192.0.2.10>;expires=0120"], 120),  # leading zeros
        (["Contact: <sip:100@192.0.2.10>", "Expires: 7200"], 3600),  # clamped to the max
        (["Contact: <sip:100@192.0.2.10>;expires=4294967295"], 3600),
        (["Contact: <sip:100@192.0.2.10>", "Expires: 60"], 60),  # the minimum is allowed
    ],
)
def test_each_contact_gets_its_interval(lines: list[str], expires_s: int) -> None:
    decision = decide(register(*lines), [], NOW, POLICY, SOURCE)
    assert decision.status == 200
    assert [b.expires_at for b in decision.bindings] == [NOW + expires_s]


@pytest.mark.parametrize(
    "lines",
    [
        ["Contact: <sip:100@192.0.2.10>", "Expires: 59"],
        ["Contact: <sip:100@192.0.2.10>;expires=1", "Expires: 600"],
        ["Contact: <sip:100@192.0.2.11>", "Contact: <sip:100@192.0.2.10>;expires=30"],
    ],
)
def test_too_brief_an_interval_is_a_423_that_changes_nothing(lines: list[str]) -> None:
    decision = decide(register(*lines), [], NOW, POLICY, SOURCE)
    assert (decision.status, decision.headers) == (423, (("Min-Expires", "60"),))
    assert decision.changes == Changes()


def test_below_the_minimum_but_not_below_an_hour_only_423s() -> None:
    """§10.3 step 6: 423 only for intervals shorter than one hour."""
    strict = RegistrarPolicy("pbx.example.com", {"100"}, min_expires_s=7200, max_expires_s=9000)
    request = register("Contact: <sip:100@192.0.2.10>", "Expires: 3600")
    assert decide(request, [], NOW, strict, SOURCE).status == 200
    request = register("Contact: <sip:100@192.0.2.10>", "Expires: 3599")
    assert decide(request, [], NOW, strict, SOURCE).status == 423


def test_expires_zero_removes_one_binding_and_keeps_the_others() -> None:
    existing = [stored("sip:100@192.0.2.10"), stored("sip:100@192.0.2.11")]
    request = register("Contact: <sip:100@192.0.2.10>;expires=0", call_id="other")
    decision = decide(request, existing, NOW, POLICY, SOURCE)
    assert decision.changes == Changes(removals=frozenset({"sip:100@192.0.2.10"}))
    assert [b.contact for b in decision.bindings] == ["sip:100@192.0.2.11"]


def test_expires_zero_for_an_unknown_contact_changes_nothing() -> None:
    decision = decide(
        register("Contact: <sip:100@192.0.2.10>", "Expires: 0"), [], NOW, POLICY, SOURCE
    )
    assert (decision.status, decision.changes, decision.bindings) == (200, Changes(), ())


# -- step 6: the wildcard ------------------------------------------------------------------


def test_star_with_expires_zero_removes_every_binding() -> None:
    existing = [stored("sip:100@192.0.2.10", call_id="old"), stored("sip:100@192.0.2.11")]
    decision = decide(
        register("Contact: *", "Expires: 0", cseq=1827), existing, NOW, POLICY, SOURCE
    )
    assert decision.status == 200
    assert decision.changes.removals == {"sip:100@192.0.2.10", "sip:100@192.0.2.11"}
    assert decision.bindings == ()


@pytest.mark.parametrize("expires", [["Expires: 60"], []])
def test_star_without_expires_zero_is_a_400(expires: list[str]) -> None:
    decision = decide(
        register("Contact: *", *expires), [stored("sip:100@192.0.2.10")], NOW, POLICY, SOURCE
    )
    assert (decision.status, decision.reason) == (
        400,
        "Bad Request: Contact '*' requires Expires: 0",
    )
    assert decision.changes == Changes()


def test_star_among_other_contacts_is_a_400_from_the_parser() -> None:
    request = register("Contact: *, <sip:100@192.0.2.10>", "Expires: 0")
    with pytest.raises(ParseError) as caught:
        decide(request, [], NOW, POLICY, SOURCE)
    assert caught.value.status == 400


def test_star_obeys_the_cseq_rule_too() -> None:
    existing = [stored("sip:100@192.0.2.10", cseq=1826)]
    decision = decide(
        register("Contact: *", "Expires: 0", cseq=1826), existing, NOW, POLICY, SOURCE
    )
    assert decision.status == 500


# -- step 7: Call-ID and CSeq ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_id", "cseq", "status"),
    [
        (CALL_ID, 1827, 200),  # the next request of the same registration
        (CALL_ID, 1826, 500),  # a replay
        (CALL_ID, 1000, 500),  # out of order
        ("a-rebooted-phone", 1, 200),  # a new Call-ID starts afresh
    ],
)
def test_the_call_id_and_cseq_rule(call_id: str, cseq: int, status: int) -> None:
    existing = [stored("sip:100@192.0.2.10", cseq=1826)]
    request = register("Contact: <sip:100@192.0.2.10>", call_id=call_id, cseq=cseq)
    decision = decide(request, existing, NOW, POLICY, SOURCE)
    assert decision.status == status
    if status == 500:
        assert decision.reason == "Server Internal Error: out of order CSeq"
        assert decision.changes == Changes()
    else:
        assert [(b.call_id, b.cseq) for b in decision.bindings] == [(call_id, cseq)]


def test_the_cseq_rule_applies_to_removal_too() -> None:
    existing = [stored("sip:100@192.0.2.10", cseq=1826)]
    request = register("Contact: <sip:100@192.0.2.10>;expires=0", cseq=1826)
    assert decide(request, existing, NOW, POLICY, SOURCE).status == 500


# -- step 8 and limits ---------------------------------------------------------------------


def test_a_register_without_contact_is_a_fetch() -> None:
    existing = [stored("sip:100@192.0.2.10"), stored("sip:100@192.0.2.11", left_s=-1)]
    decision = decide(register(), existing, NOW, POLICY, SOURCE)
    assert (decision.status, decision.changes) == (200, Changes())
    assert [b.contact for b in decision.bindings] == ["sip:100@192.0.2.10"]  # expired: gone


def test_more_contacts_than_allowed_is_a_403_that_changes_nothing() -> None:
    existing = [stored(f"sip:100@192.0.2.{n}") for n in (1, 2, 3)]
    decision = decide(register("Contact: <sip:100@192.0.2.4>"), existing, NOW, POLICY, SOURCE)
    assert (decision.status, decision.reason) == (403, "Forbidden: too many contacts for this AoR")
    assert decision.changes == Changes()
    too_many = [f"Contact: <sip:100@192.0.2.{n}>" for n in range(10, 14)]
    assert decide(register(*too_many), [], NOW, POLICY, SOURCE).status == 403


def test_refreshing_and_replacing_at_the_limit_is_allowed() -> None:
    existing = [
        stored(f"sip:100@192.0.2.{n}", call_id="c") for n in (1, 2, 3, 4, 5)
    ]  # limit lowered
    refresh = register("Contact: <sip:100@192.0.2.1>")
    assert decide(refresh, existing, NOW, POLICY, SOURCE).status == 200
    swap = register("Contact: <sip:100@192.0.2.1>;expires=0", "Contact: <sip:100@192.0.2.9>")
    assert decide(swap, existing, NOW, POLICY, SOURCE).status == 200
    grow = register("Contact: <sip:100@192.0.2.9>")
    assert decide(grow, existing, NOW, POLICY, SOURCE).status == 403


@pytest.mark.parametrize(
    ("q", "q_milli", "shown"),
    [
        (None, 1000, "1"),
        ("1.000", 1000, "1"),
        ("0.5", 500, "0.5"),
        ("0.125", 125, "0.125"),
        ("0", 0, "0"),
        ("0.", 0, "0"),
        ("0.05", 50, "0.05"),
    ],
)
def test_q_values_are_thousandths(q: str | None, q_milli: int, shown: str) -> None:
    param = "" if q is None else f";q={q}"
    decision = decide(register(f"Contact: <sip:100@192.0.2.10>{param}"), [], NOW, POLICY, SOURCE)
    (binding,) = decision.bindings
    assert (binding.q_milli, binding.q) == (q_milli, shown)


def test_bindings_are_listed_highest_q_first() -> None:
    request = register(
        "Contact: <sip:100@192.0.2.1>;q=0.1, <sip:100@192.0.2.2>",
        "Contact: <sip:100@192.0.2.3>;q=0.9",
    )
    decision = decide(request, [], NOW, POLICY, SOURCE)
    assert [b.contact for b in decision.bindings] == [
        "sip:100@192.0.2.2",
        "sip:100@192.0.2.3",
        "sip:100@192.0.2.1",
    ]


def test_a_binding_keeps_what_nat_handling_and_outbound_need() -> None:
    request = register(
        'Contact: <sip:100@10.0.0.5:5062>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-'
        '000A95A0E128>";reg-id=1',
        "User-Agent: Grandstream GXP2170 1.0.11",
    )
    (binding,) = decide(request, [], NOW, POLICY, SOURCE).bindings
    assert binding == Binding(
        contact="sip:100@10.0.0.5:5062",
        expires_at=NOW + 1800,
        call_id=CALL_ID,
        cseq=1826,
        source=SOURCE,
        instance='"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
        reg_id=1,
        user_agent="Grandstream GXP2170 1.0.11",
        behind_nat=True,
    )
    assert binding.needs_keepalive


@pytest.mark.parametrize(
    ("contact", "source", "behind_nat"),
    [
        ("sip:100@198.51.100.7:40000", SOURCE, False),
        ("sip:100@198.51.100.7", Source("UDP", "198.51.100.7", 5060), False),
        ("sip:100@198.51.100.7:5060", SOURCE, True),  # the NAT changed the port
        ("sip:100@10.0.0.5:40000", SOURCE, True),  # a private address
        ("sip:100@phone.example.net:40000", SOURCE, True),  # cannot tell: assume NAT
        ("sip:100@[2001:db8::0:1]:5060", Source("UDP", "2001:db8::1", 5060), False),
    ],
)
def test_nat_is_detected_from_contact_and_source(
    contact: str, source: Source, behind_nat: bool
) -> None:
    (binding,) = decide(register(f"Contact: <{contact}>"), [], NOW, POLICY, source).bindings
    assert binding.behind_nat is behind_nat


def test_a_contact_that_is_not_sip_is_a_400() -> None:
    decision = decide(register("Contact: <mailto:alice@example.com>"), [], NOW, POLICY, SOURCE)
    assert (decision.status, decision.changes) == (400, Changes())


@pytest.mark.parametrize(
    "contact",
    ["Contact: <sip:100@192.0.2.10>;q=2", "Contact: <sip:100@192.0.2.10>;expires=soon"],
)
def test_malformed_contact_params_raise_a_400_parse_error(contact: str) -> None:
    with pytest.raises(ParseError) as caught:
        decide(register(contact), [], NOW, POLICY, SOURCE)
    assert caught.value.status == 400


def test_only_a_register_may_be_decided() -> None:
    request = register()
    request.method = "INVITE"
    with pytest.raises(ProtocolMisuse):
        decide(request, [], NOW, POLICY, SOURCE)
