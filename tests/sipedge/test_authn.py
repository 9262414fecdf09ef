"""Digest authentication at the edge: 401 for REGISTER, 407 for INVITE, no tenant oracle."""

from __future__ import annotations

import hashlib

import pytest

from contracts.snapshot import Extension, TenantSnapshot
from sipedge.authn import Authenticator, Outcome
from sipedge.sip.auth import parse_challenge
from sipedge.sip.digest import answer_challenge
from sipedge.sip.message import Request, Response

DOMAIN = "acme.pbx.test"
SECRET = b"a-shared-secret-of-32-bytes-long"
NOW = 1_800_000_000.0


def ha1(user: str, password: str, algorithm: str) -> str:
    name = "md5" if algorithm == "MD5" else "sha256"
    return hashlib.new(name, f"{user}:{DOMAIN}:{password}".encode()).hexdigest()


TENANT = TenantSnapshot(
    name="acme",
    domain=DOMAIN,
    extensions=(
        Extension(
            number="2001",
            ha1_md5=ha1("2001", "secret", "MD5"),
            ha1_sha256=ha1("2001", "secret", "SHA-256"),
        ),
    ),
)


def request(method: str, user: str = "2001") -> Request:
    uri = f"sip:{DOMAIN}" if method == "REGISTER" else f"sip:2002@{DOMAIN}"
    return Request(
        method,
        uri,
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx"),
            ("From", f"<sip:{user}@{DOMAIN}>;tag=f"),
            ("To", f"<sip:{user}@{DOMAIN}>"),
            ("Call-ID", "c"),
            ("CSeq", f"1 {method}"),
        ],
    )


def answered(
    auth: Authenticator, method: str, password: str, user: str = "2001", realm: str = DOMAIN
) -> tuple[Request, Response]:
    first = request(method, user)
    challenge = auth.challenge(first, realm, "192.0.2.10", NOW, stale=False, to_tag="t")
    header = "WWW-Authenticate" if method == "REGISTER" else "Proxy-Authenticate"
    second = request(method, user)
    credentials = answer_challenge(
        parse_challenge(challenge.headers.lines(header)[0], header),
        method=method,
        uri=second.uri_text,
        username=user,
        cnonce="abcd",
        password=password,
    )
    reply = "Authorization" if method == "REGISTER" else "Proxy-Authorization"
    second.headers.add(reply, credentials.to_header_value())
    return second, challenge


@pytest.mark.parametrize(
    ("method", "status", "header"),
    [
        ("REGISTER", 401, "WWW-Authenticate"),
        ("INVITE", 407, "Proxy-Authenticate"),
    ],
)
def test_challenge_per_method(method: str, status: int, header: str) -> None:
    auth = Authenticator(SECRET, 300)
    assert (
        auth.check(request(method), TENANT, DOMAIN, "192.0.2.10", NOW).outcome is Outcome.CHALLENGE
    )
    response = auth.challenge(request(method), DOMAIN, "192.0.2.10", NOW, stale=False, to_tag="t")
    assert response.status == status
    (value,) = response.headers.lines(header)
    assert parse_challenge(value, header).get("realm") == DOMAIN


@pytest.mark.parametrize("method", ["REGISTER", "INVITE"])
def test_right_password_passes_and_replay_is_stale(method: str) -> None:
    auth = Authenticator(SECRET, 300)
    second, _ = answered(auth, method, "secret")
    result = auth.check(second, TENANT, DOMAIN, "192.0.2.10", NOW + 1)
    assert result.outcome is Outcome.OK
    assert result.extension is not None
    assert result.extension.number == "2001"
    assert auth.check(second, TENANT, DOMAIN, "192.0.2.10", NOW + 2).outcome is Outcome.STALE


def test_unknown_user_and_unknown_domain_look_like_a_wrong_password() -> None:
    auth = Authenticator(SECRET, 300)
    wrong, _ = answered(auth, "REGISTER", "guess")
    ghost, _ = answered(auth, "REGISTER", "secret", user="2999")
    elsewhere, _ = answered(auth, "REGISTER", "secret", realm="nobody.test")
    outcomes = {
        auth.check(wrong, TENANT, DOMAIN, "192.0.2.10", NOW).outcome,
        auth.check(ghost, TENANT, DOMAIN, "192.0.2.10", NOW).outcome,
        auth.check(elsewhere, None, "nobody.test", "192.0.2.10", NOW).outcome,
    }
    assert outcomes == {Outcome.FORBIDDEN}


def test_expired_nonce_is_stale_and_other_client_is_rechallenged() -> None:
    auth = Authenticator(SECRET, 300)
    second, _ = answered(auth, "REGISTER", "secret")
    assert auth.check(second, TENANT, DOMAIN, "192.0.2.10", NOW + 301).outcome is Outcome.STALE
    assert auth.check(second, TENANT, DOMAIN, "192.0.2.99", NOW).outcome is Outcome.CHALLENGE


def test_sha256_when_offered() -> None:
    auth = Authenticator(SECRET, 300, ("SHA-256", "MD5"))
    second, challenge = answered(auth, "INVITE", "secret")
    values = challenge.headers.lines("Proxy-Authenticate")
    assert [parse_challenge(v, "x").get("algorithm") for v in values] == ["SHA-256", "MD5"]
    assert auth.check(second, TENANT, DOMAIN, "192.0.2.10", NOW).outcome is Outcome.OK
    with pytest.raises(ValueError, match="digest algorithms"):
        Authenticator(SECRET, 300, ("SHA-1",))
