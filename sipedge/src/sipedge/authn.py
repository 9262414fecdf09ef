"""Digest authentication of requests at the edge (RFC 3261 §22; RFC 7616, 8760).

The realm is the tenant's SIP domain; the user is an extension number; what is checked
against is the extension's stored HA1 (MD5 or SHA-256), never a password. REGISTER is
challenged with 401 / WWW-Authenticate, calls with 407 / Proxy-Authenticate (§22.3).

A request for a domain we do not serve, or from a user we do not know, is challenged
and then refused exactly like a wrong password (403), so that probing tools such as
svwar and svmap cannot tell which tenants and extensions exist.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from contracts.snapshot import Extension, TenantSnapshot
from sipedge.sip.auth import Credentials, parse_credentials
from sipedge.sip.digest import DigestServer, NonceCounter, Verdict, ha1_key
from sipedge.sip.message import Headers, Request, Response, make_response

#: What is offered by default: MD5 only. The snapshot stores MD5 and SHA-256 HA1s and
#: both can be offered (RFC 8760, ``--digest-algorithms SHA-256,MD5``), but deployed
#: clients break on a second challenge: sipsak and SIPp 3.6 read only the first and give
#: up on SHA-256, and baresip 1.0 (libre) fails the whole REGISTER with ENOSYS when any
#: challenge names an algorithm it lacks (seen in tests/e2e/test_baresip_calls.py).
DEFAULT_ALGORITHMS = ("MD5",)
SUPPORTED_ALGORITHMS = ("SHA-256", "MD5")


class Outcome(Enum):
    OK = "ok"
    CHALLENGE = "challenge"
    STALE = "stale"
    FORBIDDEN = "forbidden"
    BAD_REQUEST = "bad-request"


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: Outcome
    extension: Extension | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Scheme:
    """Which header pair a method uses: 401 for REGISTER, 407 for the rest (§22.3)."""

    status: int
    reason: str
    challenge_header: str
    credentials_header: str

    @classmethod
    def for_method(cls, method: str) -> Scheme:
        return _REGISTRAR_SCHEME if method == "REGISTER" else _PROXY_SCHEME


_REGISTRAR_SCHEME = Scheme(401, "Unauthorized", "WWW-Authenticate", "Authorization")
_PROXY_SCHEME = Scheme(
    407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization"
)


class Authenticator:
    """Verifies digest credentials for any tenant; one per edge process."""

    def __init__(
        self, secret: bytes, nonce_ttl_s: float, algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    ) -> None:
        unknown = set(algorithms) - set(SUPPORTED_ALGORITHMS)
        if not algorithms or unknown:
            raise ValueError(f"digest algorithms must be among {SUPPORTED_ALGORITHMS}")
        self._algorithms = algorithms
        self._secret = secret
        self._ttl_s = nonce_ttl_s
        self._servers: dict[str, DigestServer] = {}
        self._replays = NonceCounter(nonce_ttl_s)

    def server(self, realm: str) -> DigestServer:
        found = self._servers.get(realm)
        if found is None:
            found = DigestServer(realm, self._secret, self._algorithms, self._ttl_s)
            self._servers[realm] = found
        return found

    def check(
        self,
        request: Request,
        tenant: TenantSnapshot | None,
        realm: str,
        client_ip: str,
        now: float,
    ) -> AuthResult:
        """Judge the request's credentials for ``realm`` (``tenant`` None: unknown domain)."""
        scheme = Scheme.for_method(request.method)
        credentials = _credentials_for(request, scheme.credentials_header, realm)
        if credentials is None:
            return AuthResult(Outcome.CHALLENGE)
        username, _, algorithm = ha1_key(credentials)
        extension = tenant.extension(username or "") if tenant is not None else None
        stored = _stored_ha1(extension, algorithm)
        verification = self.server(realm).verify(
            credentials,
            method=request.method,
            stored_ha1=stored,
            client_addr=client_ip,
            now=now,
            request_uri=request.uri_text,
        )
        verdict = verification.verdict
        if verdict is Verdict.OK:
            assert verification.nonce is not None
            assert verification.nc is not None
            issued = verification.nonce_issued_s or now
            if self._replays.is_replay(verification.nonce, verification.nc, issued, now):
                return AuthResult(Outcome.STALE, detail="nonce-count replay")
            return AuthResult(Outcome.OK, extension)
        if verdict is Verdict.STALE:
            return AuthResult(Outcome.STALE)
        if verdict is Verdict.WRONG_RESPONSE:
            return AuthResult(Outcome.FORBIDDEN, detail=verification.detail)
        if verdict in (Verdict.MISSING_FIELD, Verdict.MALFORMED_FIELD, Verdict.URI_MISMATCH):
            return AuthResult(Outcome.BAD_REQUEST, detail=verification.detail)
        return AuthResult(Outcome.CHALLENGE, detail=verdict.value)

    def has_credentials(self, request: Request, realm: str) -> bool:
        """Does the request carry digest credentials for ``realm``? (Malformed ones: a
        ParseError, as :meth:`check` would raise.)"""
        scheme = Scheme.for_method(request.method)
        if not request.headers.lines(scheme.credentials_header):
            return False
        return _credentials_for(request, scheme.credentials_header, realm) is not None

    def challenge(
        self,
        request: Request,
        realm: str,
        client_ip: str,
        now: float,
        *,
        stale: bool,
        to_tag: str,
    ) -> Response:
        """The 401/407 carrying one challenge per algorithm, with a fresh nonce."""
        scheme = Scheme.for_method(request.method)
        response = make_response(request, scheme.status, scheme.reason, to_tag=to_tag)
        # Entropy: two challenges to one address in the same millisecond must differ, or
        # the second answer (nc=1 again) would look like a replay of the first.
        challenges = self.server(realm).challenges(
            client_addr=client_ip, now=now, stale=stale, entropy=secrets.token_bytes(6)
        )
        for challenge in challenges:
            response.headers.add(scheme.challenge_header, challenge.to_header_value())
        return response


def _credentials_for(request: Request, header: str, realm: str) -> Credentials | None:
    """The request's Digest credentials for ``realm`` (parsed once per message: the
    stateless screen and the handler both ask)."""
    for credentials in request.headers.typed(header, _PARSERS[header]):
        if credentials.is_digest and (credentials.get("realm") or "").lower() == realm:
            return credentials
    return None


def _parse_all(header: str) -> Callable[[Headers], tuple[Credentials, ...]]:
    def parse(headers: Headers) -> tuple[Credentials, ...]:
        return tuple(parse_credentials(value, header) for value in headers.lines(header))

    return parse


_PARSERS = {name: _parse_all(name) for name in ("Authorization", "Proxy-Authorization")}


def _stored_ha1(extension: Extension | None, algorithm: str) -> str | None:
    if extension is None:
        return None
    if algorithm.upper() == "MD5":
        return extension.ha1_md5
    if algorithm.upper() == "SHA-256":
        return extension.ha1_sha256
    return None
