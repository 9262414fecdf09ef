"""A trunk's registration state machine (sipedge.trunking, issue 6.2) against a provider's
registrar built from the edge's own digest server: its answers to 401 and 407 (MD5 and
SHA-256, qop=auth) verify, stale nonces are answered again, 423 raises the expiry to
Min-Expires, the grant sets the refresh, and a refused password or a 403 leaves the
trunk Failed with that status and an exponential, jittered back-off."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sipedge.sip.auth import parse_credentials
from sipedge.sip.digest import DigestServer, Verdict, ha1
from sipedge.sip.framing import parse_datagram
from sipedge.sip.message import Response
from sipedge.trunking import (
    Account,
    Register,
    Registration,
    State,
    Status,
    Wait,
    contact_user,
    server_failed,
    trunk_of_contact_user,
)

ACCOUNT = Account(
    registrar="sip:sip.carrier.example",
    aor="sip:4930555@sip.carrier.example",
    contact="sip:4930555@198.51.100.7:5060",
    username="4930555",
    password="s3cret-trunk",
    expires_s=600,
)


def response(status: int, reason: str, *headers: str) -> Response:
    lines = [
        f"SIP/2.0 {status} {reason}",
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKtrunk1",
        "From: <sip:4930555@sip.carrier.example>;tag=t1",
        "To: <sip:4930555@sip.carrier.example>;tag=r1",
        "Call-ID: reg-1@198.51.100.7",
        "CSeq: 1 REGISTER",
        *headers,
        "Content-Length: 0",
    ]
    message = parse_datagram(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Response)
    return message


@dataclass
class Registrar:
    """The provider: challenges with ``status`` (401 or 407), verifies with the password
    it knows, grants ``grant_s``."""

    password: str = ACCOUNT.password
    status: int = 401
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    grant_s: int = 600
    now: float = 1_780_000_000.0
    verified: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = DigestServer("carrier.example", b"0123456789abcdef" * 2, self.algorithms)

    def challenge(self, *, stale: bool = False) -> Response:
        header = "WWW-Authenticate" if self.status == 401 else "Proxy-Authenticate"
        reason = "Unauthorized" if self.status == 401 else "Proxy Authentication Required"
        found = self.server.challenges(client_addr="198.51.100.7", now=self.now, stale=stale)
        return response(self.status, reason, *(f"{header}: {c.to_header_value()}" for c in found))

    def handle(self, register: Register) -> Response:
        if register.authorization is None:
            return self.challenge()
        name, value = register.authorization
        assert name == ("Authorization" if self.status == 401 else "Proxy-Authorization")
        credentials = parse_credentials(value, name)
        algorithm = str(credentials.get("algorithm") or "MD5")
        verdict = self.server.verify(
            credentials,
            method="REGISTER",
            stored_ha1=ha1("4930555", "carrier.example", self.password, algorithm),
            client_addr="198.51.100.7",
            now=self.now,
            request_uri=ACCOUNT.registrar,
        ).verdict
        if verdict is Verdict.STALE:
            return self.challenge(stale=True)
        if verdict is not Verdict.OK:
            return self.challenge()
        self.verified.append(algorithm)
        return response(
            200, "OK", f"Contact: <{ACCOUNT.contact}>;expires={self.grant_s}", "Expires: 3600"
        )


def run(registration: Registration, registrar: Registrar, first: Register) -> Register | Wait:
    """Exchange until the machine waits; returns the Wait."""
    action: Register | Wait = first
    for _ in range(5):
        if isinstance(action, Wait):
            return action
        action = registration.answer(registrar.handle(action), cnonce="0a4f113b", jitter=0.5)
    raise AssertionError("no end to the exchange")


@pytest.mark.parametrize("status", [401, 407])
@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",)])
def test_a_challenge_is_answered_and_the_registration_refreshed_ahead(
    status: int, algorithms: tuple[str, ...]
) -> None:
    registration = Registration(ACCOUNT)
    registrar = Registrar(status=status, algorithms=algorithms)
    first = registration.start()
    assert (first.cseq, first.expires_s, first.authorization) == (1, 600, None)
    assert run(registration, registrar, first) == Wait(540.0)  # 60 s before the 600 granted
    assert registrar.verified == [algorithms[0]]  # the strongest offered
    assert registration.status == Status(State.REGISTERED, 200, "OK")
    refresh = registration.wait_over()
    assert refresh.cseq == 3  # CSeq grows across the registration's REGISTERs


def test_a_short_grant_is_refreshed_at_half_time_and_the_contacts_expires_wins() -> None:
    registration = Registration(ACCOUNT)
    assert run(registration, Registrar(grant_s=90), registration.start()) == Wait(45.0)


def test_a_stale_nonce_is_answered_again_without_counting_as_a_failure() -> None:
    registration = Registration(ACCOUNT)
    registrar = Registrar()
    first = registration.start()
    answered = registration.answer(registrar.handle(first), cnonce="c1", jitter=0.5)
    assert isinstance(answered, Register)
    # The nonce expired meanwhile: the registrar says stale=true.
    registrar.now += 3_600
    again = registration.answer(registrar.handle(answered), cnonce="c2", jitter=0.5)
    assert isinstance(again, Register)
    assert again.authorization is not None
    assert registration.status == Status(State.REGISTERING)
    assert isinstance(registration.answer(registrar.handle(again), cnonce="c3", jitter=0.5), Wait)
    assert registration.status == Status(State.REGISTERED, 200, "OK")


def test_a_refused_password_fails_with_the_providers_status_and_backs_off() -> None:
    registration = Registration(ACCOUNT)
    registrar = Registrar(password="not-the-trunks")
    waits = []
    for _ in range(5):  # run() answers with jitter 0.5: three quarters of each step
        waits.append(run(registration, registrar, registration.start()))
        assert registration.status.state is State.FAILED
        assert (registration.status.status, registration.status.reason) == (401, "Unauthorized")
    assert [w.seconds for w in waits if isinstance(w, Wait)] == [1.5, 3.0, 6.0, 12.0, 24.0]
    assert registration.status.failures == 5


def test_back_off_is_jittered_and_capped() -> None:
    registration = Registration(ACCOUNT, backoff_base_s=2, backoff_most_s=60)
    forbidden = response(403, "Forbidden")
    seconds = [registration.answer(forbidden, cnonce="c", jitter=j) for j in (0.0, 0.5, 0.999)]
    assert seconds == [Wait(1.0), Wait(3.0), Wait(8 * (0.5 + 0.999 / 2))]
    for _ in range(10):
        last = registration.answer(forbidden, cnonce="c", jitter=0.999)
    assert last == Wait(60 * (0.5 + 0.999 / 2))
    assert registration.status == Status(State.FAILED, 403, "Forbidden", 13)
    assert registration.timed_out(jitter=0.0) == Wait(30.0)
    assert registration.status.status == 408


def test_423_raises_the_expiry_to_min_expires() -> None:
    registration = Registration(ACCOUNT)
    registrar = Registrar()
    first = registration.start()
    answered = registration.answer(registrar.handle(first), cnonce="c1", jitter=0.5)
    assert isinstance(answered, Register)
    brief = response(423, "Interval Too Brief", "Min-Expires: 1800")
    again = registration.answer(brief, cnonce="c2", jitter=0.5)
    assert isinstance(again, Register)
    assert again.expires_s == 1800
    assert again.authorization is not None  # the challenge answered again, nc 2
    assert "nc=00000002" in again.authorization[1]
    useless = registration.answer(response(423, "Interval Too Brief"), cnonce="c3", jitter=0.0)
    assert useless == Wait(1.0)
    assert registration.status.state is State.FAILED


def test_a_challenge_it_cannot_answer_fails() -> None:
    registration = Registration(ACCOUNT)
    registration.start()
    odd = response(401, "Unauthorized", 'WWW-Authenticate: Basic realm="carrier"')
    assert registration.answer(odd, cnonce="c", jitter=0.0) == Wait(1.0)
    assert registration.status.status == 401
    assert "no challenge we answer" in registration.status.reason


def test_disabling_unregisters_and_stops() -> None:
    registration = Registration(ACCOUNT)
    run(registration, Registrar(), registration.start())
    bye = registration.disable()
    assert bye.expires_s == 0
    assert registration.status == Status(State.DISABLED)
    with pytest.raises(RuntimeError):
        registration.wait_over()


def test_the_unregister_answers_its_one_challenge() -> None:
    registration = Registration(ACCOUNT)
    registrar = Registrar()
    run(registration, registrar, registration.start())
    bye = registration.disable()
    challenge = registrar.handle(bye)
    again = registration.answer(challenge, cnonce="77aa", jitter=0.5)
    assert isinstance(again, Register)
    assert (again.cseq, again.expires_s) == (bye.cseq + 1, 0)
    assert again.authorization is not None
    assert registration.answer(registrar.handle(again), cnonce="77ab", jitter=0.5) == Wait(0.0)
    assert len(registrar.verified) == 2
    assert registration.answer(challenge, cnonce="77ac", jitter=0.5) == Wait(0.0)  # once only
    assert registration.status == Status(State.DISABLED)


def test_an_unreachable_registrar_is_a_503_retried_after_the_back_off() -> None:
    registration = Registration(ACCOUNT, backoff_base_s=2.0)
    registration.start()
    wait = registration.unreachable("cannot resolve sip.carrier.example", jitter=1.0)
    assert wait == Wait(2.0)
    assert registration.status == Status(State.FAILED, 503, "cannot resolve sip.carrier.example", 1)
    assert registration.wait_over().cseq == 2


@pytest.mark.parametrize(
    ("tenant", "trunk"), [("acme", "carrier-a"), ("acme.example", "b"), ("t-1.x.y", "c-2")]
)
def test_contact_user_names_tenant_and_trunk(tenant: str, trunk: str) -> None:
    assert trunk_of_contact_user(contact_user(tenant, trunk)) == (tenant, trunk)


@pytest.mark.parametrize("user", ["2001", "trunk-", "trunk-a", "trunk-.t", "trunk-a.", "Trunk-a.t"])
def test_other_users_are_no_trunk_contact(user: str) -> None:
    assert trunk_of_contact_user(user) is None


@pytest.mark.parametrize(
    ("status", "failed"), [(None, True), (503, True), (500, False), (408, False), (404, False)]
)
def test_a_server_fails_a_request_by_503_or_silence_only(status: int | None, failed: bool) -> None:
    """RFC 3263 §4.3: a 503 or no answer sends the request to the provider's next server;
    a 500 or a 408 is the provider's answer, a 404 the callee's."""
    assert server_failed(status) is failed
