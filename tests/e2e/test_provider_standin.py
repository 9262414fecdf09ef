"""The SIP provider stand-in (tests/e2e/provider.py) behaves like a carrier, proven with SIPp.

Before trunk tests lean on it: a trunk REGISTER is challenged (401) and accepted, a wrong
password is refused with 403 and no second challenge, too short an expiry gets 423 with
Min-Expires; a call from the trunk is challenged (407), re-sent with credentials and
reaches the PSTN UAS, or gets 503 in failure mode; an inbound PSTN call to a DID reaches
the registered customer with the DID in To (480 when nobody is registered); and the
provider's log says what it answered, which the parser reads back. SHA-256 digest is
proven with cloudpbx's own digest client (SIPp 3.6 computes MD5 only).

Needs the Debian packages kamailio and sip-tester; skipped when they are missing.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pytest

from sipbench import (
    SippOptions,
    SippProcess,
    SippResult,
    call_options,
    free_udp_port,
    register_options,
    run_sipp,
    scenario,
)
from sipbench.scripted import ScriptedPhone
from sipedge.sip.message import Response

from .provider import (
    Binding,
    Outcome,
    Provider,
    final_invite_status,
    parse_bindings,
    parse_outcomes,
    provider_scenario,
    pstn_call,
    pstn_uas,
    traced_messages,
    trunk_csv,
)

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None or shutil.which("kamailio") is None,
    reason="needs the Debian packages sip-tester and kamailio",
)

DID = "4930555100"
DIALLED = "4989123456"


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    with Provider(tmp_path, username="trunk-a", password="s3cret-a") as running:
        yield running


def statuses(outcomes: list[Outcome]) -> list[int | None]:
    return [outcome.status for outcome in outcomes]


def assert_one_call(result: SippResult) -> None:
    assert result.ok, result.describe()
    assert result.stats is not None, result.describe()
    assert (result.stats.successful, result.stats.failed) == (1, 0), result.describe()


def register(
    provider: Provider,
    tmp_path: Path,
    *,
    expires: int = 300,
    password: str | None = None,
    port: int | None = None,
    refused: bool = False,
) -> SippResult:
    """One SIPp registration of the trunk (register.xml, or register_refused.xml)."""
    options = register_options(
        provider.address,
        trunk_csv(provider, tmp_path, password=password),
        provider.realm,
        expires=expires,
        local_port=port,
        calls=1,
        trace_messages=True,
        name=f"register-{expires}-{password or 'ok'}",
    )
    if refused:
        options = replace(options, scenario=provider_scenario("register_refused"))
    return run_sipp(options, tmp_path, timeout_s=20)


def received_invite(messages: str) -> str:
    """The first INVITE a SIPp UAS received, from its message trace."""
    match = re.search(r"message received \[\d+\] bytes :\s*\n\n(INVITE .*?)\n\n", messages, re.S)
    assert match is not None, messages[-2000:]
    return match[1]


# --- the log and kamcmd parsers --------------------------------------------------------------

LOG = """\
 0(7) INFO: <core> [main.c:2883]: main(): processes (at least): 12 - shm size: 33554432
 3(9935) NOTICE: <script>: PROVIDER REGISTER from 127.0.0.1:50379 user=- status=401 \
t=1795767118.143824 callid=195-9941@127.0.0.1 cseq=1 expires=300
 4(9936) NOTICE: <script>: PROVIDER REGISTER from 127.0.0.1:50379 user=trunk status=200 \
t=1795767118.244153 callid=195-9941@127.0.0.1 cseq=2 expires=-
 4(9936) NOTICE: <script>: PROVIDER INVITE from 127.0.0.1:6000 user=trunk status=relayed \
t=1795767119.5 callid=c1 cseq=2 ruri=sip:49@provider.test
 3(9935) NOTICE: <script>: PROVIDER INVITE-REPLY status=200 t=1795767119.6 callid=c1 cseq=2
"""


def test_outcome_lines_are_parsed() -> None:
    assert parse_outcomes(LOG) == [
        Outcome("REGISTER", 401, 1795767118.143824, "195-9941@127.0.0.1", 1,
                source="127.0.0.1:50379", user=None, expires_s=300),
        Outcome("REGISTER", 200, 1795767118.244153, "195-9941@127.0.0.1", 2,
                source="127.0.0.1:50379", user="trunk", expires_s=None),
        Outcome("INVITE", None, 1795767119.5, "c1", 2, source="127.0.0.1:6000", user="trunk",
                ruri="sip:49@provider.test"),
        Outcome("INVITE-REPLY", 200, 1795767119.6, "c1", 2),
    ]  # fmt: skip


UL_LOOKUP = """\
{
	AoR: trunk-a
	Contacts: {
		Contact: {
			Address: sip:trunk-a@127.0.0.1:40000;transport=UDP
			Expires: 298
			Q: -1.000000
		}
		Contact: {
			Address: sip:trunk-a@127.0.0.1:40002
			Expires: 12
		}
	}
}
"""


def test_bindings_are_parsed() -> None:
    assert parse_bindings(UL_LOOKUP) == [
        Binding("sip:trunk-a@127.0.0.1:40000;transport=UDP", 298),
        Binding("sip:trunk-a@127.0.0.1:40002", 12),
    ]
    assert parse_bindings("") == []


def test_final_invite_status_skips_provisional_and_other_methods() -> None:
    trace = (
        "SIP/2.0 100 Trying\nCSeq: 1 INVITE\n\n"
        "SIP/2.0 480 Temporarily Unavailable\nVia: x\nCSeq: 1 INVITE\n\n"
        "SIP/2.0 200 OK\nCSeq: 2 BYE\n\n"
    )
    assert final_invite_status(trace) == 480
    assert final_invite_status("") is None


# --- REGISTER --------------------------------------------------------------------------------


def test_register_is_challenged_then_accepted_and_bound(provider: Provider, tmp_path: Path) -> None:
    port = free_udp_port()
    result = register(provider, tmp_path, port=port)
    assert_one_call(result)
    challenge, accepted = provider.registers()
    assert (challenge.status, challenge.user) == (401, None)
    assert (accepted.status, accepted.user, accepted.cseq) == (200, "trunk-a", 2)
    assert challenge.source == accepted.source == f"127.0.0.1:{port}"
    assert challenge.call_id == accepted.call_id
    assert 'qop="auth"' in traced_messages(result)
    (binding,) = provider.registered_contacts()
    assert binding.contact.startswith(f"sip:trunk-a@127.0.0.1:{port}")
    assert 0 < binding.expires_s <= 300


def test_wrong_password_is_forbidden_without_a_second_challenge(
    provider: Provider, tmp_path: Path
) -> None:
    result = register(provider, tmp_path, password="wrong", refused=True)
    assert_one_call(result)
    assert final_register_status(result) == 403
    assert statuses(provider.registers()) == [401, 403]
    assert provider.registered_contacts() == []


def test_too_short_an_expiry_gets_423_with_min_expires(provider: Provider, tmp_path: Path) -> None:
    result = register(provider, tmp_path, expires=30, refused=True)
    assert_one_call(result)
    assert final_register_status(result) == 423
    assert re.search(r"^Min-Expires:\s*60\s*$", traced_messages(result), re.M)
    assert [(o.status, o.expires_s) for o in provider.registers()] == [(401, 30), (423, 30)]
    assert provider.registered_contacts() == []


def final_register_status(result: SippResult) -> int:
    codes = re.findall(r"^SIP/2\.0 (\d{3}) ", traced_messages(result), re.M)
    return int(codes[-1])


def test_sha256_digest_with_cloudpbx_client(tmp_path: Path) -> None:
    with Provider(tmp_path, username="trunk-s", password="pw-s", algorithm="SHA-256") as sha:
        phone = ScriptedPhone("trunk-s", sha.realm, "pw-s")
        try:
            first = phone.request(
                "REGISTER", f"sip:{sha.realm}", f"<sip:trunk-s@{sha.realm}>", "sha-1", 1,
                [("Expires", "120")],
            )  # fmt: skip
            phone.send(first, sha.port)
            challenge = phone.final()
            assert challenge.status == 401
            assert "algorithm=SHA-256" in (challenge.headers.get("WWW-Authenticate") or "")
            second = phone.request(
                "REGISTER", f"sip:{sha.realm}", f"<sip:trunk-s@{sha.realm}>", "sha-1", 2,
                [("Expires", "120")],
            )  # fmt: skip
            phone.send(phone.with_auth(second, challenge), sha.port)
            accepted: Response = phone.final()
        finally:
            phone.close()
        assert accepted.status == 200, accepted.reason
        assert statuses(sha.registers()) == [401, 200]
        assert len(sha.registered_contacts()) == 1


# --- calls from the trunk (outbound) ---------------------------------------------------------


def trunk_call(
    provider: Provider,
    tmp_path: Path,
    *,
    answered: bool = True,
    password: str | None = None,
    caller: str = "uac",
) -> SippResult:
    """One call from the trunk's customer to DIALLED: ``caller`` (a tests/e2e/sipp scenario),
    or trunk_uac_rejected.xml when it must not be ``answered``."""
    options = call_options(
        caller,
        provider.address,
        trunk_csv(provider, tmp_path, password=password),
        DIALLED,
        provider.realm,
        calls=1,
        duration_ms=200,
        trace_messages=True,
        name="trunk-call",
        extra=("-default_behaviors", "all,-bye"),
    )
    if not answered:
        options = replace(options, scenario=provider_scenario("trunk_uac_rejected"))
    return run_sipp(options, tmp_path, timeout_s=20)


def test_call_from_the_trunk_is_challenged_then_reaches_the_pstn(
    provider: Provider, tmp_path: Path
) -> None:
    with pstn_uas(provider, tmp_path) as uas:
        caller = trunk_call(provider, tmp_path)
        assert_one_call(caller)
        assert_one_call(uas.wait(timeout_s=10))
    invite = received_invite(traced_messages(uas.wait(0)))
    assert invite.startswith(f"INVITE sip:{DIALLED}@{provider.realm} SIP/2.0")
    assert re.search(r"^CSeq: 2 INVITE", invite, re.M)
    assert re.search(rf"^Record-Route: <sip:127\.0\.0\.1:{provider.port};lr>", invite, re.M)
    assert "Proxy-Authorization" not in invite
    challenged, relayed = provider.invites()
    assert (challenged.status, challenged.cseq, challenged.user) == (407, 1, None)
    assert (relayed.status, relayed.cseq, relayed.user) == (None, 2, "trunk-a")
    replies = [o for o in provider.outcomes() if o.method == "INVITE-REPLY"]
    assert {o.status for o in replies} == {200}


def test_call_with_a_wrong_password_is_forbidden(provider: Provider, tmp_path: Path) -> None:
    result = trunk_call(provider, tmp_path, answered=False, password="wrong")
    assert_one_call(result)
    assert final_invite_status(traced_messages(result)) == 403
    assert statuses(provider.invites()) == [407, 403]


def test_failure_mode_answers_503_after_the_digest(tmp_path: Path) -> None:
    with Provider(tmp_path, fail_invites=True) as failing, pstn_uas(failing, tmp_path) as uas:
        result = trunk_call(failing, tmp_path, answered=False)
        assert_one_call(result)
        assert final_invite_status(traced_messages(result)) == 503
        assert [(o.status, o.user) for o in failing.invites()] == [(407, None), (503, "trunk")]
        pstn = uas.stop(grace_s=1.0)
    assert "INVITE sip:" not in traced_messages(pstn)


def test_the_pstn_refusal_is_relayed_back(provider: Provider, tmp_path: Path) -> None:
    with pstn_uas(provider, tmp_path, reject=(486, "Busy Here")) as uas:
        result = trunk_call(provider, tmp_path, answered=False)
        assert_one_call(result)
        assert_one_call(uas.wait(timeout_s=10))
    assert final_invite_status(traced_messages(result)) == 486


def test_cancel_from_the_trunk_reaches_the_ringing_pstn(provider: Provider, tmp_path: Path) -> None:
    ringing = scenario("uas_cancel")
    with pstn_uas(provider, tmp_path, server_scenario=ringing) as uas:
        result = trunk_call(provider, tmp_path, caller="uac_cancel")
        assert_one_call(result)
        assert_one_call(uas.wait(timeout_s=10))
    assert final_invite_status(traced_messages(result)) == 487


# --- calls from the PSTN (inbound, to a DID) ------------------------------------------------


@pytest.mark.parametrize("did_in_request_uri", [False, True], ids=["contact-ruri", "did-ruri"])
def test_pstn_call_to_a_did_reaches_the_registered_customer(
    tmp_path: Path, did_in_request_uri: bool
) -> None:
    with Provider(tmp_path, did_in_request_uri=did_in_request_uri) as provider:
        port = free_udp_port()
        assert_one_call(register(provider, tmp_path, port=port))
        options = SippOptions(
            scenario=scenario("uas"), local_port=port, calls=1, trace_messages=True, name="customer"
        )
        with SippProcess(options, tmp_path) as customer:
            customer.wait_listening()
            call = pstn_call(provider, DID, tmp_path)
            assert_one_call(call.result)
            assert call.status == 200
            assert_one_call(customer.wait(timeout_s=10))
        invite = received_invite(traced_messages(customer.wait(0)))
        user = DID if did_in_request_uri else "trunk"
        assert invite.startswith(f"INVITE sip:{user}@127.0.0.1:{port};transport=UDP SIP/2.0")
        assert re.search(rf"^To: <sip:{DID}@{provider.realm}>", invite, re.M)
        assert "Proxy-Authorization" not in invite
        (inbound,) = provider.invites()
        assert (inbound.source, inbound.status) == (f"127.0.0.1:{provider.pstn_uac_port}", None)


def test_pstn_call_without_a_registration_gets_480(provider: Provider, tmp_path: Path) -> None:
    call = pstn_call(provider, DID, tmp_path, answered=False)
    assert_one_call(call.result)
    assert call.status == 480
    assert statuses(provider.invites()) == [480]


def test_registers_are_counted_per_source(provider: Provider, tmp_path: Path) -> None:
    ports = [free_udp_port() for _ in range(3)]
    for port in ports:
        assert_one_call(register(provider, tmp_path, port=port))
    assert_one_call(register(provider, tmp_path, password="wrong", refused=True))
    registers = provider.registers()
    assert len(registers) == 8
    accepted = [o.source for o in registers if o.status == 200]
    assert accepted == [f"127.0.0.1:{port}" for port in ports]
    assert statuses(registers).count(403) == 1
    assert len(provider.registered_contacts()) == 3
