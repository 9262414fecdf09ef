"""The auth header grammar, as tables: RFC 3261 §25.1, RFC 7616 §3.3–3.4, RFC 4475 §3.3.7."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipedge.sip.auth import (
    AUTHORIZATION,
    MAX_AUTH_PARAMS,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
    Challenge,
    Credentials,
    parse_challenge,
    parse_credentials,
)
from sipedge.sip.errors import ParseError, ProtocolMisuse

TORTURE = Path(__file__).resolve().parents[2] / "data" / "sip-torture"

# RFC 2617 §3.5, the Authorization the client sends.
RFC2617_CREDENTIALS = (
    'Digest username="Mufasa", realm="testrealm@host.com", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
# RFC 3261 §20.44 (stale=FALSE, an empty opaque, a domain).
RFC3261_CHALLENGE = (
    'Digest realm="atlanta.com", domain="sip:ss1.carrier.com", qop="auth", '
    'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
)

PARSE_CHALLENGE = [
    (
        RFC3261_CHALLENGE,
        "Digest",
        (
            ("realm", "atlanta.com"),
            ("domain", "sip:ss1.carrier.com"),
            ("qop", "auth"),
            ("nonce", "f84f1cec41e6cbe5aea9c8e88d359"),
            ("opaque", ""),
            ("stale", "FALSE"),
            ("algorithm", "MD5"),
        ),
    ),
    # RFC 7616 §3.9.1: a comma inside the quoted qop list.
    (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"',
        "Digest",
        (
            ("realm", "http-auth@example.org"),
            ("qop", "auth, auth-int"),
            ("algorithm", "SHA-256"),
            ("nonce", "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"),
        ),
    ),
    # Escaped quote and backslash inside a quoted-string; a comma inside quotes.
    (
        r'Digest realm="say \"hi\", then \\ go", nonce="a,b"',
        "Digest",
        (("realm", 'say "hi", then \\ go'), ("nonce", "a,b")),
    ),
    # LWS around '=' and ',', tabs, and a folded line (RFC 3261 §7.3.1).
    (
        'Digest realm = "r" ,nonce=\t"n"  ,\r\n  algorithm =MD5',
        "Digest",
        (("realm", "r"), ("nonce", "n"), ("algorithm", "MD5")),
    ),
    # Names and scheme keep their spelling; lookups ignore case (below).
    ('digest REALM="r", Nonce="n"', "digest", (("REALM", "r"), ("Nonce", "n"))),
    # Values may be tokens where quotes are usual, and quoted where tokens are usual.
    ('Digest realm=r, algorithm="MD5"', "Digest", (("realm", "r"), ("algorithm", "MD5"))),
    # Commas inside quotes do not count towards the parameter limit.
    (
        'Digest realm="r", domain="' + ",".join(["sip:a"] * (MAX_AUTH_PARAMS + 1)) + '"',
        "Digest",
        (("realm", "r"), ("domain", ",".join(["sip:a"] * (MAX_AUTH_PARAMS + 1)))),
    ),
    # Unknown schemes with auth-params.
    ('Foo bar=baz, x="y z"', "Foo", (("bar", "baz"), ("x", "y z"))),
    ("Negotiate", "Negotiate", ()),
]


@pytest.mark.parametrize(("text", "scheme", "params"), PARSE_CHALLENGE)
def test_parse_challenge(text: str, scheme: str, params: tuple[tuple[str, str], ...]) -> None:
    challenge = parse_challenge(text)
    assert (challenge.scheme, challenge.params, challenge.raw) == (scheme, params, None)


def test_parse_credentials_rfc2617() -> None:
    creds = parse_credentials(RFC2617_CREDENTIALS)
    assert creds.is_digest
    assert creds.params == (
        ("username", "Mufasa"),
        ("realm", "testrealm@host.com"),
        ("nonce", "dcd98b7102dd2f0e8b11d0f600bfb0c093"),
        ("uri", "/dir/index.html"),
        ("qop", "auth"),
        ("nc", "00000001"),
        ("cnonce", "0a4f113b"),
        ("response", "6629fae49393a05397450978507c4ef1"),
        ("opaque", "5ccc069c403ebaf9f0171e9517f40e41"),
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("realm", "r"), ("REALM", "r"), ("nonce", "n"), ("NONCE", "n"), ("opaque", None)],
)
def test_names_compare_case_insensitively(name: str, expected: str | None) -> None:
    challenge = parse_challenge('dIgEsT REALM="r", Nonce="n"')
    assert challenge.is_digest
    assert challenge.get(name) == expected
    assert (name in challenge) == (expected is not None)


def test_regaut01_unknown_scheme_is_kept() -> None:
    """RFC 4475 §3.3.7: an unknown Authorization scheme parses and is forwarded unchanged."""
    lines = (TORTURE / "regaut01.sip").read_bytes().split(b"\r\n")
    line = next(raw for raw in lines if raw.lower().startswith(b"authorization:"))
    value = line.partition(b":")[2].decode("utf-8").strip(" \t")
    assert value == "NoOneKnowsThisScheme opaque-data=here"
    creds = parse_credentials(value)
    assert creds == Credentials("NoOneKnowsThisScheme", (("opaque-data", "here"),))
    assert not creds.is_digest
    assert creds.to_header_value() == value


@pytest.mark.parametrize(
    ("text", "scheme", "raw"),
    [
        ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Basic", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ("Bearer abc.def-ghi", "Bearer", "abc.def-ghi"),
        ('Foo "just a string"', "Foo", '"just a string"'),
        ("Foo a=b c, <x", "Foo", "a=b c, <x"),
        ('Foo a="unterminated', "Foo", 'a="unterminated'),
    ],
)
def test_unknown_scheme_with_other_data_keeps_raw_text(text: str, scheme: str, raw: str) -> None:
    creds = parse_credentials(text)
    assert (creds.scheme, creds.params, creds.raw) == (scheme, (), raw)
    assert creds.to_header_value() == text


BAD = [
    "",
    "   ",
    "Digest",
    "Digest   ",
    '"Digest" realm="r"',
    "Dig/est realm=r",
    'Digest realm="unterminated',
    'Digest realm="r" nonce="n"',
    'Digest realm="r"x',
    "Digest realm=a b",
    'Digest realm="a", REALM="b"',
    'Digest ,realm="a"',
    'Digest realm="a",',
    'Digest realm="a",, nonce="n"',
    "Digest realm",
    'Digest =realm"',
    "Digest realm=",
    'Digest realm="a\\"',
    'Digest realm="r"\r\nX-Injected: 1',
    'Digest realm="r"\n',
    "Digest " + ", ".join(f"p{i}=v" for i in range(MAX_AUTH_PARAMS + 1)),
]


@pytest.mark.parametrize("text", BAD)
@pytest.mark.parametrize(
    ("parse", "header"),
    [
        (parse_challenge, WWW_AUTHENTICATE),
        (parse_challenge, PROXY_AUTHENTICATE),
        (parse_credentials, AUTHORIZATION),
        (parse_credentials, PROXY_AUTHORIZATION),
    ],
)
def test_malformed_values_are_400_naming_the_header(text: str, parse: object, header: str) -> None:
    assert callable(parse)
    with pytest.raises(ParseError) as caught:
        parse(text, header)
    assert caught.value.status == 400
    assert header in caught.value.reason


SERIALIZE = [
    # RFC 7616 §3.3: realm, nonce, opaque, qop, domain quoted; algorithm and stale not.
    (
        Challenge(
            "Digest",
            (
                ("realm", "atlanta.com"),
                ("qop", "auth"),
                ("nonce", "abc"),
                ("opaque", ""),
                ("stale", "true"),
                ("algorithm", "SHA-256"),
                ("domain", "sip:a.example"),
            ),
        ),
        'Digest realm="atlanta.com", qop="auth", nonce="abc", opaque="", stale=true, '
        'algorithm=SHA-256, domain="sip:a.example"',
    ),
    # RFC 7616 §3.4: username, realm, nonce, uri, response, cnonce, opaque quoted;
    # algorithm, qop and nc not.
    (
        Credentials(
            "Digest",
            (
                ("username", "alice"),
                ("realm", "atlanta.com"),
                ("nonce", "abc"),
                ("uri", "sip:bob@biloxi.com"),
                ("response", "0123456789abcdef0123456789abcdef"),
                ("algorithm", "MD5"),
                ("cnonce", "xyz"),
                ("opaque", "op"),
                ("qop", "auth"),
                ("nc", "00000001"),
            ),
        ),
        'Digest username="alice", realm="atlanta.com", nonce="abc", uri="sip:bob@biloxi.com", '
        'response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="xyz", '
        'opaque="op", qop=auth, nc=00000001',
    ),
    # Escapes on the way out; an unknown param is a token when it can be.
    (
        Credentials("Digest", (("username", 'a "b" \\c'), ("x-tok", "v1"), ("x-str", "a b"))),
        r'Digest username="a \"b\" \\c", x-tok=v1, x-str="a b"',
    ),
    (Challenge("Foo", raw="opaque stuff"), "Foo opaque stuff"),
    (Challenge("Negotiate"), "Negotiate"),
]


@pytest.mark.parametrize(("value", "text"), SERIALIZE)
def test_serialize(value: Challenge | Credentials, text: str) -> None:
    assert value.to_header_value() == text
    parse = parse_challenge if isinstance(value, Challenge) else parse_credentials
    assert parse(text) == value


@pytest.mark.parametrize("text", [RFC2617_CREDENTIALS, "Foo bar=baz"])
def test_canonical_credentials_round_trip_byte_for_byte(text: str) -> None:
    assert parse_credentials(text).to_header_value() == text


def test_canonical_challenge_round_trip_after_normalizing() -> None:
    # stale=FALSE stays as written; quoted-ness follows RFC 7616, not the input.
    text = 'Digest realm=r, algorithm="MD5", qop="auth"'
    assert parse_challenge(text).to_header_value() == 'Digest realm="r", algorithm=MD5, qop="auth"'


@pytest.mark.parametrize(
    "build",
    [
        lambda: Challenge("Dig est"),
        lambda: Challenge(""),
        lambda: Challenge("Digest", (("realm", "a\r\nX: y"),)),
        lambda: Challenge("Digest", (("bad name", "v"),)),
        lambda: Challenge("Digest", (("realm", "a"), ("Realm", "b"))),
        lambda: Credentials("Foo", (("a", "b"),), raw="c"),
        lambda: Credentials("Foo", raw="a\nb"),
    ],
)
def test_values_we_cannot_write_are_our_misuse(build: object) -> None:
    assert callable(build)
    with pytest.raises(ProtocolMisuse):
        build()


def test_challenge_and_credentials_are_different_types() -> None:
    challenge: object = Challenge("Digest", (("realm", "r"),))
    assert challenge != Credentials("Digest", (("realm", "r"),))


# --- properties --------------------------------------------------------------------------

_STRUCTURED = st.text(alphabet=' \t\r\n",=\\<>abDigstr;:/@é\x00', max_size=60)


@given(st.one_of(st.text(max_size=200), _STRUCTURED.map(lambda s: "Digest " + s), _STRUCTURED))
def test_arbitrary_text_parses_or_raises_parse_error(text: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        outcome = _outcome(parse, text)
        if isinstance(outcome, ParseError):
            assert outcome.status == 400
        else:
            assert parse(outcome.to_header_value()) == outcome


def _outcome(
    parse: Callable[[str], Challenge | Credentials], text: str
) -> Challenge | Credentials | ParseError:
    try:
        return parse(text)
    except ParseError as exc:
        return exc


_TOKENS = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,12}", fullmatch=True)
_VALUES = st.text(st.characters(blacklist_characters="\r\n"), max_size=20)


@given(
    scheme=_TOKENS,
    params=st.lists(st.tuples(_TOKENS, _VALUES), max_size=8, unique_by=lambda p: p[0].lower()),
)
def test_written_values_parse_back(scheme: str, params: list[tuple[str, str]]) -> None:
    if not params and scheme.lower() == "digest":
        return  # "Digest" alone is not a valid value
    for kind, parse in ((Challenge, parse_challenge), (Credentials, parse_credentials)):
        value = kind(scheme, tuple(params))
        assert parse(value.to_header_value()) == value
