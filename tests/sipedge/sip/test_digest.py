"""Digest authentication, as the RFCs tell it: published vectors, then a back-to-back pair.

RFC 2617 §3.5, RFC 7616 §3.4 and §3.9, RFC 8760 §2.4, RFC 3261 §22.4.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from sipedge.sip.auth import Challenge, Credentials, parse_challenge, parse_credentials
from sipedge.sip.digest import (
    ALGORITHMS,
    DigestServer,
    NonceCounter,
    Verdict,
    answer_challenge,
    choose_challenge,
    compute_response,
    ha1,
    ha1_key,
    qop_options,
)
from sipedge.sip.errors import ProtocolMisuse

# --- published vectors -------------------------------------------------------------------

RFC2617 = {
    "username": "Mufasa",
    "realm": "testrealm@host.com",
    "password": "Circle Of Life",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    "cnonce": "0a4f113b",
}
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"

VECTORS = [
    ("RFC 2617 §3.5", RFC2617, "MD5", "6629fae49393a05397450978507c4ef1"),
    ("RFC 7616 §3.9.1 MD5", RFC7616, "MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    (
        "RFC 7616 §3.9.1 SHA-256",
        RFC7616,
        "SHA-256",
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    ),
]


@pytest.mark.parametrize(("source", "v", "algorithm", "expected"), VECTORS)
def test_published_response(source: str, v: dict[str, str], algorithm: str, expected: str) -> None:
    stored = ha1(v["username"], v["realm"], v["password"], algorithm)
    got = compute_response(
        stored,
        algorithm=algorithm,
        method="GET",
        uri="/dir/index.html",
        nonce=v["nonce"],
        qop="auth",
        nc="00000001",
        cnonce=v["cnonce"],
    )
    assert got == expected, source


@pytest.mark.parametrize(("source", "v", "algorithm", "expected"), VECTORS)
def test_client_answers_published_challenge(
    source: str, v: dict[str, str], algorithm: str, expected: str
) -> None:
    """The challenges of RFC 2617 §3.5 and RFC 7616 §3.9.1 offer auth and auth-int."""
    challenge = parse_challenge(
        f'Digest realm="{v["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{v["nonce"]}", opaque="{RFC7616_OPAQUE}"'
    )
    creds = answer_challenge(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username=v["username"],
        password=v["password"],
        cnonce=v["cnonce"],
        nc=1,
    )
    assert creds.get("response") == expected, source
    assert creds.to_header_value() == (
        f'Digest username="Mufasa", realm="{v["realm"]}", nonce="{v["nonce"]}", '
        f'uri="/dir/index.html", response="{expected}", algorithm={algorithm}, '
        f'cnonce="{v["cnonce"]}", opaque="{RFC7616_OPAQUE}", qop=auth, nc=00000001'
    )


def test_sha512_256_is_fips_180_4_not_truncated_sha512() -> None:
    """RFC 7616 §3.9.2 prints ae66e6…79dd, which is SHA-512 cut to 256 bits (an erratum).

    RFC 8760 §2.1 names SHA-512/256 of FIPS 180-4 (own initial values); we compute that.
    """
    assert hashlib.new("sha512_256", b"abc").hexdigest() == (  # FIPS 180-4 example
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )
    args: dict[str, Any] = {
        "method": "GET",
        "uri": "/doe.json",
        "nonce": "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    }
    user, realm, password = "J\u00e4s\u00f8n Doe", "api@example.org", "Secret, or not?"
    truncated = _truncated_sha512_response(user, realm, password, **args)
    assert truncated == "ae66e67d6b427bd3f120414a82e4acff38e8ecd9101d6c861229025f607a79dd"
    ours = compute_response(
        ha1(user, realm, password, "SHA-512-256"), algorithm="SHA-512-256", **args
    )
    assert ours != truncated
    assert len(ours) == 64


def _truncated_sha512_response(
    user: str, realm: str, password: str, *, method: str, uri: str, nonce: str, qop: str,
    nc: str, cnonce: str,
) -> str:  # fmt: skip
    def h(text: str) -> str:
        return hashlib.sha512(text.encode()).hexdigest()[:64]

    a1, a2 = h(f"{user}:{realm}:{password}"), h(f"{method}:{uri}")
    return h(f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}")


@pytest.mark.parametrize(
    ("algorithm", "hash_name"),
    [("MD5", "md5"), ("md5", "md5"), ("SHA-256", "sha256"), ("SHA-512-256", "sha512_256")],
)
def test_ha1_is_h_of_username_realm_password(algorithm: str, hash_name: str) -> None:
    expected = hashlib.new(hash_name, "alice:atlanta.com:pässword".encode()).hexdigest()
    assert ha1("alice", "atlanta.com", "pässword", algorithm) == expected


def test_ha1_of_unknown_algorithm_is_our_misuse() -> None:
    with pytest.raises(ProtocolMisuse):
        ha1("a", "r", "p", "SHA-1")


def test_sess_variant_hashes_nonce_and_cnonce_into_a1() -> None:
    """RFC 7616 §3.4.2: A1 = H(user:realm:pw) ":" nonce ":" cnonce for -sess."""
    stored = ha1("alice", "r", "pw", "MD5")
    sess_ha1 = hashlib.md5(f"{stored}:n:c".encode()).hexdigest()
    common: dict[str, Any] = {
        "method": "REGISTER",
        "uri": "sip:r",
        "nonce": "n",
        "qop": "auth",
        "nc": "00000001",
    }
    plain = compute_response(sess_ha1, algorithm="MD5", cnonce="c", **common)
    assert compute_response(stored, algorithm="MD5-sess", cnonce="c", **common) == plain


def test_rfc2069_response_without_qop() -> None:
    stored = ha1("alice", "r", "pw")
    ha2 = hashlib.md5(b"INVITE:sip:bob@b").hexdigest()
    expected = hashlib.md5(f"{stored}:n:{ha2}".encode()).hexdigest()
    assert compute_response(
        stored, algorithm="MD5", method="INVITE", uri="sip:bob@b", nonce="n"
    ) == (expected)


def test_auth_int_hashes_the_body_into_a2() -> None:
    stored = ha1("alice", "r", "pw")
    body = b"v=0\r\n"
    ha2 = hashlib.md5(b"INVITE:sip:b:" + hashlib.md5(body).hexdigest().encode()).hexdigest()
    expected = hashlib.md5(f"{stored}:n:00000001:c:auth-int:{ha2}".encode()).hexdigest()
    got = compute_response(
        stored, algorithm="MD5", method="INVITE", uri="sip:b", nonce="n", qop="auth-int",
        nc="00000001", cnonce="c", body=body,
    )  # fmt: skip
    assert got == expected


@pytest.mark.parametrize(
    ("qop", "expected"),
    [
        (None, ()),
        ("auth", ("auth",)),
        ("auth, auth-int", ("auth", "auth-int")),
        ("AUTH,", ("auth",)),
    ],
)
def test_qop_options(qop: str | None, expected: tuple[str, ...]) -> None:
    params = (("realm", "r"),) if qop is None else (("realm", "r"), ("qop", qop))
    assert qop_options(Challenge("Digest", params)) == expected


# --- the back-to-back pair ---------------------------------------------------------------

SECRET = b"0123456789abcdef-shared-by-every-edge"
REALM = "tenant-a.pbx.example"
CLIENT = "198.51.100.7"
NOW_S = 1_700_000_000.0
URI = "sip:tenant-a.pbx.example"
PASSWORD = "correct horse"


def _server(**kwargs: object) -> DigestServer:
    return DigestServer(REALM, SECRET, **kwargs)  # type: ignore[arg-type]


def _answer(
    challenge: Challenge, password: str = PASSWORD, nc: int = 1, cnonce: str = "c0ffee"
) -> Credentials:
    return answer_challenge(
        challenge, method="REGISTER", uri=URI, username="alice", password=password,
        cnonce=cnonce, nc=nc,
    )  # fmt: skip


def _verify(
    server: DigestServer,
    creds: Credentials,
    *,
    client: str = CLIENT,
    now: float = NOW_S + 1,
    password: str = PASSWORD,
    request_uri: str | None = None,
) -> Verdict:
    username, _, algorithm = ha1_key(creds)  # what the credential store is asked for
    known = username is not None and algorithm in ALGORITHMS
    stored = ha1(str(username), REALM, password, algorithm) if known else None
    result = server.verify(
        creds, method="REGISTER", stored_ha1=stored, client_addr=client, now=now,
        request_uri=request_uri,
    )  # fmt: skip
    return result.verdict


def _round(server: DigestServer, **answer: object) -> Credentials:
    """Challenge on the wire, answer on the wire, parse back: the full path."""
    wire = [c.to_header_value() for c in server.challenges(client_addr=CLIENT, now=NOW_S)]
    challenge = choose_challenge(parse_challenge(text) for text in wire)
    assert challenge is not None
    creds = _answer(challenge, **answer)  # type: ignore[arg-type]
    return parse_credentials(creds.to_header_value())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_back_to_back_ok_for_every_algorithm(algorithm: str) -> None:
    server = _server(algorithms=(algorithm,))
    creds = _round(server)
    assert creds.get("algorithm") == algorithm
    assert _verify(server, creds) is Verdict.OK


BACK_TO_BACK = [
    # (what, how the answer is made or judged, verdict)
    ("right password", {}, {}, Verdict.OK),
    ("wrong password", {"password": "wrong"}, {}, Verdict.WRONG_RESPONSE),
    ("nonce of another client address", {}, {"client": "203.0.113.9"}, Verdict.BAD_NONCE),
    ("nonce just inside its TTL", {}, {"now": NOW_S + 300}, Verdict.OK),
    ("nonce past its TTL", {}, {"now": NOW_S + 300.5}, Verdict.STALE),
    ("stale but wrong password", {"password": "x"}, {"now": NOW_S + 301}, Verdict.WRONG_RESPONSE),
    ("nonce from the future", {}, {"now": NOW_S - 60}, Verdict.BAD_NONCE),
    ("same Request-URI", {}, {"request_uri": URI}, Verdict.OK),
    ("other Request-URI", {}, {"request_uri": "sip:evil.example"}, Verdict.URI_MISMATCH),
]  # fmt: skip


@pytest.mark.parametrize(("what", "answer", "judge", "verdict"), BACK_TO_BACK)
def test_back_to_back(
    what: str, answer: dict[str, object], judge: dict[str, object], verdict: Verdict
) -> None:
    server = _server()
    creds = _round(server, **answer)
    assert _verify(server, creds, **judge) is verdict, what  # type: ignore[arg-type]


def test_verification_exposes_nonce_and_nc_for_replay_detection() -> None:
    server = _server()
    creds = _round(server, nc=7)
    stored = ha1("alice", REALM, PASSWORD, "SHA-256")
    result = server.verify(
        creds, method="REGISTER", stored_ha1=stored, client_addr=CLIENT, now=NOW_S + 1
    )
    assert result.ok
    assert (result.username, result.nonce, result.nc) == ("alice", creds.get("nonce"), 7)
    assert result.nonce_issued_s == NOW_S


def test_nc_replay_is_detected() -> None:
    server, counter = _server(), NonceCounter(nonce_ttl_s=300)
    seen = []
    for nc in (1, 2, 2, 1, 3):
        creds = _round(server, nc=nc)
        stored = ha1("alice", REALM, PASSWORD, "SHA-256")
        result = server.verify(
            creds, method="REGISTER", stored_ha1=stored, client_addr=CLIENT, now=NOW_S + 1
        )
        assert result.ok
        assert result.nonce is not None
        assert result.nc is not None
        assert result.nonce_issued_s is not None
        seen.append(counter.is_replay(result.nonce, result.nc, result.nonce_issued_s, NOW_S + 1))
    assert seen == [False, False, True, True, False]


def test_client_picks_sha256_when_offered_with_md5() -> None:
    """RFC 8760 §2.4: one challenge per algorithm; we answer the strongest we support."""
    server = _server(algorithms=("MD5", "SHA-256"))  # even when MD5 comes first
    creds = _round(server)
    assert creds.get("algorithm") == "SHA-256"
    assert len(str(creds.get("response"))) == 64
    assert _verify(server, creds) is Verdict.OK


def test_another_edge_process_with_the_same_secret_verifies() -> None:
    creds = _round(_server())
    assert _verify(_server(), creds) is Verdict.OK


@pytest.mark.parametrize(
    ("server", "verdict"),
    [
        (DigestServer(REALM, b"another-secret-of-16-bytes"), Verdict.BAD_NONCE),
        (DigestServer(REALM, b"new-secret-0123456789", old_secrets=(SECRET,)), Verdict.OK),
        (DigestServer("other.example", SECRET), Verdict.WRONG_REALM),
    ],
)
def test_secrets_and_realms(server: DigestServer, verdict: Verdict) -> None:
    creds = _round(_server())
    assert _verify(server, creds) is verdict


def test_foreign_realm_nonce_fails_even_with_matching_realm_field() -> None:
    """A nonce minted for realm B is refused by realm A, whatever the realm field says."""
    other = DigestServer("other.example", SECRET)
    nonce = other.make_nonce(client_addr=CLIENT, now=NOW_S)
    creds = _round(_server())
    forged = _with_param(creds, "nonce", nonce)
    assert _verify(_server(), forged) is Verdict.BAD_NONCE


def _with_param(creds: Credentials, name: str, value: str | None) -> Credentials:
    """``creds`` with parameter ``name`` set to ``value``, or removed when None."""
    if value is None:
        params = tuple(p for p in creds.params if p[0] != name)
    else:
        params = tuple((k, value if k == name else v) for k, v in creds.params)
    return Credentials(creds.scheme, params)


def _flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1 :]


TAMPER: list[tuple[str, Callable[[str], str]]] = [
    ("a tag character changed", lambda n: _flip(n, len(n) - 3)),
    ("the timestamp changed", lambda n: _flip(n, 5)),
    ("truncated", lambda n: n[:-4]),
    ("extended", lambda n: n + "AAAA"),
    ("padded", lambda n: n + "="),
    ("standard base64 alphabet", lambda n: n.replace("-", "+").replace("_", "/") + "+"),
    ("empty", lambda n: ""),
    ("not base64", lambda n: "!!!!"),
    ("way too long", lambda n: n * 10),
    ("non-ASCII", lambda n: n[:-1] + "é"),
]


@pytest.mark.parametrize(("what", "tamper"), TAMPER)
def test_tampered_nonce_is_refused(what: str, tamper: Callable[[str], str]) -> None:
    server = _server()
    creds = _round(server)
    tampered = _with_param(creds, "nonce", tamper(str(creds.get("nonce"))))
    assert _verify(server, tampered) is Verdict.BAD_NONCE, what


FIELD_VERDICTS = [
    ("username", None, Verdict.MISSING_FIELD),
    ("realm", None, Verdict.MISSING_FIELD),
    ("nonce", None, Verdict.MISSING_FIELD),
    ("uri", None, Verdict.MISSING_FIELD),
    ("response", None, Verdict.MISSING_FIELD),
    ("qop", None, Verdict.MISSING_FIELD),
    ("nc", None, Verdict.MISSING_FIELD),
    ("cnonce", None, Verdict.MISSING_FIELD),
    ("realm", "other.example", Verdict.WRONG_REALM),
    ("algorithm", "SHA-512-256", Verdict.UNSUPPORTED_ALGORITHM),
    ("algorithm", "SHA-1", Verdict.UNSUPPORTED_ALGORITHM),
    ("algorithm", "sha-256", Verdict.OK),
    ("qop", "auth-int", Verdict.UNSUPPORTED_QOP),
    ("qop", "AUTH", Verdict.WRONG_RESPONSE),  # the value is hashed as sent
    ("nc", "1", Verdict.MALFORMED_FIELD),
    ("nc", "0000000g", Verdict.MALFORMED_FIELD),
    ("nc", "00000002", Verdict.WRONG_RESPONSE),
    ("response", "abc", Verdict.MALFORMED_FIELD),
    ("response", "z" * 64, Verdict.MALFORMED_FIELD),
    ("response", "é" * 64, Verdict.MALFORMED_FIELD),
    ("response", "0" * 64, Verdict.WRONG_RESPONSE),
    ("cnonce", "other", Verdict.WRONG_RESPONSE),
    ("uri", "sip:elsewhere", Verdict.WRONG_RESPONSE),
    ("username", "bob", Verdict.WRONG_RESPONSE),
]


@pytest.mark.parametrize(("name", "value", "verdict"), FIELD_VERDICTS)
def test_verdict_per_field(name: str, value: str | None, verdict: Verdict) -> None:
    server = _server()
    creds = _round(server)
    assert _verify(server, _with_param(creds, name, value)) is verdict


def test_response_compares_case_insensitively() -> None:
    server = _server()
    creds = _round(server)
    upper = _with_param(creds, "response", str(creds.get("response")).upper())
    assert _verify(server, upper) is Verdict.OK


def test_unknown_user_fails_like_a_wrong_password() -> None:
    server = _server()
    result = server.verify(
        _round(server), method="REGISTER", stored_ha1=None, client_addr=CLIENT, now=NOW_S
    )
    assert result.verdict is Verdict.WRONG_RESPONSE


def test_other_scheme_is_unsupported() -> None:
    creds = Credentials("NoOneKnowsThisScheme", (("opaque-data", "here"),))
    assert _verify(_server(), creds) is Verdict.UNSUPPORTED_ALGORITHM


def test_method_is_part_of_the_response() -> None:
    server = _server()
    result = server.verify(
        _round(server),
        method="INVITE",
        stored_ha1=ha1("alice", REALM, PASSWORD, "SHA-256"),
        client_addr=CLIENT,
        now=NOW_S,
    )
    assert result.verdict is Verdict.WRONG_RESPONSE


# --- the challenge on the wire -----------------------------------------------------------


def test_challenge_wire_format_is_pinned() -> None:
    """Every edge pod must mint and read the same nonce: this pins the layout."""
    server = _server()
    texts = [
        c.to_header_value()
        for c in server.challenges(client_addr=CLIENT, now=NOW_S, entropy=b"\x01\x02")
    ]
    nonce = "AAABi8_laAABAgnUAJdFckhmjlmLOb0MS_k"
    assert texts == [
        f'Digest realm="{REALM}", nonce="{nonce}", algorithm=SHA-256, qop="auth"',
        f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"',
    ]


def test_stale_challenge_says_so() -> None:
    (challenge,) = _server(algorithms=("MD5",)).challenges(
        client_addr=CLIENT, now=NOW_S, stale=True
    )
    assert challenge.get("stale") == "true"
    assert challenge.to_header_value().endswith(", stale=true")


def test_entropy_makes_nonces_of_the_same_millisecond_differ() -> None:
    server = _server()
    a = server.make_nonce(client_addr=CLIENT, now=NOW_S, entropy=b"a")
    b = server.make_nonce(client_addr=CLIENT, now=NOW_S, entropy=b"b")
    assert a != b
    assert server.check_nonce(a, client_addr=CLIENT, now=NOW_S).genuine
    assert server.check_nonce(b, client_addr=CLIENT, now=NOW_S).genuine


def test_non_canonical_base64_is_refused() -> None:
    """Base64 decoders ignore unused trailing bits; a nonce has exactly one spelling."""
    server = _server()
    nonce = server.make_nonce(client_addr=CLIENT, now=NOW_S, entropy=b"\x01")  # 25 octets
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    twin = nonce[:-1] + alphabet[alphabet.index(nonce[-1]) ^ 1]
    assert server.check_nonce(nonce, client_addr=CLIENT, now=NOW_S).genuine
    assert not server.check_nonce(twin, client_addr=CLIENT, now=NOW_S).genuine


def test_secret_is_not_in_repr() -> None:
    assert SECRET.decode() not in repr(_server())


@pytest.mark.parametrize(
    "build",
    [
        lambda: DigestServer(REALM, b"short"),
        lambda: DigestServer(REALM, SECRET, old_secrets=(b"short",)),
        lambda: DigestServer(REALM, SECRET, algorithms=()),
        lambda: DigestServer(REALM, SECRET, algorithms=("SHA-1",)),
        lambda: DigestServer(REALM, SECRET, nonce_ttl_s=0),
        lambda: _server().make_nonce(client_addr=CLIENT, now=-1.0),
        lambda: _server().make_nonce(client_addr=CLIENT, now=float("nan")),
        lambda: _server().make_nonce(client_addr=CLIENT, now=NOW_S, entropy=b"x" * 17),
        lambda: NonceCounter(max_nonces=0),
    ],
)
def test_server_misconfiguration_is_our_misuse(build: Callable[[], object]) -> None:
    with pytest.raises(ProtocolMisuse):
        build()


# --- replay detection --------------------------------------------------------------------

REPLAYS = [
    # (what, [(nonce, nc, issued_s, now_s)], expected replay flags)
    ("counts rising", [("n1", 1, 0, 0), ("n1", 2, 0, 1), ("n1", 5, 0, 2)], [False] * 3),
    ("the same count twice", [("n1", 1, 0, 0), ("n1", 1, 0, 1)], [False, True]),
    ("a lower count", [("n1", 3, 0, 0), ("n1", 2, 0, 1)], [False, True]),
    ("counts per nonce", [("n1", 1, 0, 0), ("n2", 1, 0, 1), ("n2", 2, 0, 1)], [False] * 3),
    ("forgotten after the TTL", [("n1", 1, 0, 0), ("n1", 1, 0, 11)], [False, False]),
    ("kept within the TTL", [("n1", 1, 0, 0), ("n1", 1, 0, 10)], [False, True]),
]  # fmt: skip


@pytest.mark.parametrize(("what", "steps", "expected"), REPLAYS)
def test_nonce_counter(
    what: str, steps: list[tuple[str, int, float, float]], expected: list[bool]
) -> None:
    counter = NonceCounter(nonce_ttl_s=10)
    got = [counter.is_replay(nonce, nc, issued, now) for nonce, nc, issued, now in steps]
    assert got == expected, what


def test_nonce_counter_is_bounded_and_refuses_what_it_forgot() -> None:
    counter = NonceCounter(nonce_ttl_s=100, max_nonces=2)
    assert not counter.is_replay("n1", 1, issued_s=1, now=5)
    assert not counter.is_replay("n2", 1, issued_s=2, now=5)
    assert not counter.is_replay("n3", 1, issued_s=3, now=5)  # pushes n1 out
    assert len(counter) == 2
    assert counter.is_replay("n1", 1, issued_s=1, now=5)  # forgotten: assume a replay
    assert counter.is_replay("n0", 1, issued_s=0.5, now=5)  # older than what was forgotten
    assert not counter.is_replay("n4", 1, issued_s=4, now=5)  # newer: fine
    assert not counter.is_replay("n3", 2, issued_s=3, now=5)  # still remembered


# --- client side -------------------------------------------------------------------------


def _digest(algorithm: str | None, realm: str = "r", **extra: str) -> Challenge:
    params = {"realm": realm, "nonce": "n", "qop": "auth"}
    if algorithm is not None:
        params["algorithm"] = algorithm
    return Challenge("Digest", tuple((params | extra).items()))


CHOICES = [
    ("SHA-256 over MD5", [_digest("MD5"), _digest("SHA-256")], "SHA-256"),
    ("strongest of 3", [_digest("SHA-256"), _digest("SHA-512-256"), _digest(None)], "SHA-512-256"),
    ("topmost among equals", [_digest("MD5-sess"), _digest("MD5")], "MD5-sess"),
    ("unknown algorithm ignored", [_digest("SHA-1"), _digest("MD5")], "MD5"),
    ("other scheme ignored", [Challenge("Basic", (("realm", "r"),)), _digest("MD5")], "MD5"),
    ("unknown qop ignored", [_digest("SHA-256", qop="x-new"), _digest("MD5")], "MD5"),
    ("no algorithm means MD5", [_digest(None)], None),
    ("nothing answerable", [_digest("SHA-1"), Challenge("Basic", raw="xyz")], "none"),
    ("nothing at all", [], "none"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "challenges", "algorithm"), CHOICES)
def test_choose_challenge(what: str, challenges: list[Challenge], algorithm: str | None) -> None:
    chosen = choose_challenge(challenges)
    if algorithm == "none":
        assert chosen is None, what
    else:
        assert chosen is not None, what
        assert chosen.get("algorithm") == algorithm, what


def test_choose_challenge_by_realm() -> None:
    challenges = [_digest("SHA-256", realm="a"), _digest("MD5", realm="b")]
    chosen = choose_challenge(challenges, realm="b")
    assert chosen is not None
    assert chosen.get("realm") == "b"


def test_rfc2069_peer_gets_no_qop_nc_or_cnonce() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n"')
    creds = answer_challenge(
        challenge, method="INVITE", uri="sip:b", username="u", password="p", cnonce="c"
    )
    stored = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:b").hexdigest()
    response = hashlib.md5(f"{stored}:n:{ha2}".encode()).hexdigest()
    assert creds.to_header_value() == (
        f'Digest username="u", realm="r", nonce="n", uri="sip:b", response="{response}"'
    )


def test_auth_int_only_challenge_covers_the_body() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\n"
    creds = answer_challenge(
        challenge, method="INVITE", uri="sip:b", username="u", password="p", cnonce="c",
        body=body,
    )  # fmt: skip
    expected = compute_response(
        ha1("u", "r", "p"), algorithm="MD5", method="INVITE", uri="sip:b", nonce="n",
        qop="auth-int", nc="00000001", cnonce="c", body=body,
    )  # fmt: skip
    assert (creds.get("qop"), creds.get("response")) == ("auth-int", expected)


def test_client_answers_from_stored_ha1_and_echoes_opaque() -> None:
    challenge = _digest("SHA-256", opaque="keep me")
    from_password = answer_challenge(
        challenge, method="INVITE", uri="sip:b", username="u", password="p", cnonce="c", nc=2
    )
    from_ha1 = answer_challenge(
        challenge, method="INVITE", uri="sip:b", username="u", cnonce="c", nc=2,
        stored_ha1=ha1("u", "r", "p", "SHA-256"),
    )  # fmt: skip
    assert from_password == from_ha1
    assert (from_ha1.get("opaque"), from_ha1.get("nc")) == ("keep me", "00000002")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"password": "p", "stored_ha1": "00"},
        {},
        {"password": "p", "nc": 0},
        {"password": "p", "nc": 2**32},
        {"password": "p", "challenge": _digest("SHA-1")},
        {"password": "p", "challenge": Challenge("Digest", (("realm", "r"),))},
    ],
)
def test_client_misuse(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"challenge": _digest("MD5"), "method": "INVITE", "uri": "sip:b"}
    args |= {"username": "u", "cnonce": "c", **kwargs}
    with pytest.raises(ProtocolMisuse):
        answer_challenge(**args)  # type: ignore[arg-type]


def test_ha1_key_names_the_base_algorithm() -> None:
    creds = Credentials(
        "Digest", (("username", "u"), ("realm", "r"), ("algorithm", "SHA-256-sess"))
    )
    assert ha1_key(creds) == ("u", "r", "SHA-256")
    assert ha1_key(replace(creds, params=creds.params[:2])) == ("u", "r", "MD5")
