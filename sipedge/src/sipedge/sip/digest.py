"""Digest authentication for SIP: the arithmetic, the server's challenge and verdict, the client.

Owns RFC 3261 §22.4 (the Digest scheme in SIP), RFC 7616 §3.4.1–3.4.3 (response, A1, A2),
§3.3 and §3.7 (challenges, several algorithms) and RFC 8760 (SHA-256 and SHA-512-256 in
SIP, §2.4 multiple challenges). RFC 2617 / RFC 2069 peers are answered too (client side).
The header text itself is :mod:`sipedge.sip.auth`.

What we store is HA1 = H(username ":" realm ":" password), never a password; the server
verifies from the stored HA1 alone.

Nonces are stateless, so that any edge process holding the shared secret can verify them::

    nonce = base64url( issued_ms (8 octets) | entropy (0..16 octets) | tag (16 octets) )
    tag   = HMAC-SHA256(secret, issued_ms | entropy | client address | realm)[:16]

A forged or altered nonce, or one issued to another client address or realm, fails the
tag; a genuine nonce older than ``nonce_ttl_s`` earns a *stale* verdict when the response
is right (RFC 7616 §3.3 ``stale``), so the caller re-challenges with ``stale=true``. Replays
of a nonce-count are caught by :class:`NonceCounter`, fed from the verification.

Time comes in as ``now`` (seconds); the secret, the nonce entropy and the client's cnonce
are injected. Responses are compared with :func:`hmac.compare_digest`.

Past the usual ~400 lines on purpose: the arithmetic, the server and the client share one
algorithm table and read best side by side; split server and client apart when either grows.
Written by hand: the digest code of HTTP libraries (requests, httpx) is client-only and
bound to their transports, and none offers stateless nonces or RFC 8760.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import struct
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sipedge.sip.auth import DIGEST, Challenge, Credentials
from sipedge.sip.errors import ProtocolMisuse
from sipedge.sip.grammar import WSP

#: Kamailio's default nonce lifetime (auth module ``nonce_expire``).
DEFAULT_NONCE_TTL_S = 300.0
#: How far in the future a nonce may claim to be issued (clocks of two edge pods differ).
DEFAULT_CLOCK_SKEW_S = 5.0
#: Nonces remembered by :class:`NonceCounter` before the oldest are forgotten.
DEFAULT_MAX_TRACKED_NONCES = 10_000
#: The shortest shared secret we accept.
MIN_SECRET_BYTES = 16
MAX_ENTROPY_BYTES = 16

_TAG_BYTES = 16
_ISSUED = struct.Struct(">Q")
_MAX_NONCE_CHARS = 4 * (_ISSUED.size + MAX_ENTROPY_BYTES + _TAG_BYTES) // 3 + 4
_NONCE_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_NC = re.compile(r"[0-9A-Fa-f]{8}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_MAX_NC = 0xFFFFFFFF
_MAX_NOW_S = 2.0**63 / 1000


@dataclass(frozen=True, slots=True)
class _Algorithm:
    name: str  # as RFC 7616 §6.1 / RFC 8760 §2.1 spell it
    hash_name: str  # hashlib's name
    strength: int  # higher is preferred when several challenges come
    session: bool  # the "-sess" variant: A1 also covers nonce and cnonce

    def h(self, text: str) -> str:
        data = text.encode("utf-8", "surrogateescape")
        return hashlib.new(
            self.hash_name, data, usedforsecurity=self.hash_name != "md5"
        ).hexdigest()

    @property
    def hex_chars(self) -> int:
        return hashlib.new(self.hash_name, usedforsecurity=False).digest_size * 2


# RFC 7616 §6.1 registry; RFC 8760 §2.1 brings SHA-256 and SHA-512-256 to SIP.
_ALGORITHMS: dict[str, _Algorithm] = {
    alg.name.lower(): alg
    for alg in (
        _Algorithm("MD5", "md5", 1, session=False),
        _Algorithm("MD5-sess", "md5", 1, session=True),
        _Algorithm("SHA-256", "sha256", 2, session=False),
        _Algorithm("SHA-256-sess", "sha256", 2, session=True),
        _Algorithm("SHA-512-256", "sha512_256", 3, session=False),
        _Algorithm("SHA-512-256-sess", "sha512_256", 3, session=True),
    )
}

#: Every algorithm name this module computes, in the spelling of RFC 7616 §6.1.
ALGORITHMS = tuple(alg.name for alg in _ALGORITHMS.values())


def _algorithm(name: str | None) -> _Algorithm | None:
    """The algorithm ``name`` (absent means MD5, RFC 7616 §3.3), or None when unknown."""
    return _ALGORITHMS.get("md5" if name is None else name.lower())


def _require_algorithm(name: str) -> _Algorithm:
    alg = _algorithm(name)
    if alg is None:
        raise ProtocolMisuse(f"unsupported digest algorithm {name!r}")
    return alg


# --- the arithmetic (RFC 7616 §3.4.1–3.4.3) ----------------------------------------------


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username ":" realm ":" password), lower-case hex: what a credential store keeps.

    For a ``-sess`` algorithm this is still the stored value; the session A1 is derived
    from it per request by :func:`compute_response`.
    """
    return _require_algorithm(algorithm).h(f"{username}:{realm}:{password}")


def compute_response(
    stored_ha1: str,
    *,
    algorithm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The ``response`` value: KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" HA2).

    Without ``qop`` this is the RFC 2069 form KD(HA1, nonce ":" HA2). ``body`` is hashed
    into A2 only for ``qop=auth-int``.
    """
    alg = _require_algorithm(algorithm)
    key = stored_ha1.lower()
    if alg.session:
        key = alg.h(f"{key}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop is not None and qop.lower() == "auth-int":
        a2 += ":" + hashlib.new(alg.hash_name, body, usedforsecurity=False).hexdigest()
    ha2 = alg.h(a2)
    if qop is None:
        return alg.h(f"{key}:{nonce}:{ha2}")
    return alg.h(f"{key}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def qop_options(challenge: Challenge) -> tuple[str, ...]:
    """The qop values a challenge offers (``qop="auth,auth-int"``), lower-cased."""
    raw = challenge.get("qop")
    if raw is None:
        return ()
    return tuple(opt.strip(WSP).lower() for opt in raw.split(",") if opt.strip(WSP))


# --- server side: challenges and verdicts -----------------------------------------------


class Verdict(enum.Enum):
    """What the server concludes from one set of credentials, and what it answers.

    ====================== ================================================================
    OK                     authenticated (then ask :class:`NonceCounter` about replays)
    STALE                  right password, expired nonce: re-challenge with ``stale=true``
    WRONG_RESPONSE         wrong password or unknown user: 401/407 with a fresh challenge
    BAD_NONCE              forged, altered, foreign (other client or realm) nonce: challenge
    WRONG_REALM            credentials for another realm: challenge
    UNSUPPORTED_ALGORITHM  a scheme or algorithm we did not offer: challenge
    UNSUPPORTED_QOP        a qop we did not offer (auth-int): challenge
    MISSING_FIELD          a required Digest field is absent (or qop, RFC 2069 style): 400
    MALFORMED_FIELD        nc or response not hex of the right length: 400
    URI_MISMATCH           ``uri`` is not the Request-URI (RFC 7616 §3.4.6): 400
    ====================== ================================================================
    """

    OK = "ok"
    STALE = "stale"
    WRONG_RESPONSE = "wrong-response"
    BAD_NONCE = "bad-nonce"
    WRONG_REALM = "wrong-realm"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    UNSUPPORTED_QOP = "unsupported-qop"
    MISSING_FIELD = "missing-field"
    MALFORMED_FIELD = "malformed-field"
    URI_MISMATCH = "uri-mismatch"


@dataclass(frozen=True, slots=True)
class Verification:
    """A verdict with what the caller needs next: the nonce and nc for replay detection.

    ``nonce``, ``nc`` and ``nonce_issued_s`` are set once the nonce proved genuine.
    ``detail`` names the offending field, for logs (never for the wire).
    """

    verdict: Verdict
    detail: str = ""
    username: str | None = None
    nonce: str | None = None
    nc: int | None = None
    nonce_issued_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


@dataclass(frozen=True, slots=True)
class NonceCheck:
    """The outcome of checking a nonce alone: ``genuine`` with its issue time and age."""

    genuine: bool
    issued_s: float = 0.0
    expired: bool = False


_REQUIRED_FIELDS = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")


@dataclass(frozen=True, slots=True)
class DigestServer:
    """Builds challenges for one realm and verifies the answers, with stateless nonces.

    ``secret`` signs new nonces; ``old_secrets`` still verify (rotation). ``algorithms``
    are offered in order of preference, one challenge each (RFC 8760 §2.4).
    """

    realm: str
    secret: bytes = field(repr=False)
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    nonce_ttl_s: float = DEFAULT_NONCE_TTL_S
    clock_skew_s: float = DEFAULT_CLOCK_SKEW_S
    old_secrets: tuple[bytes, ...] = field(default=(), repr=False)
    _offered: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if any(len(s) < MIN_SECRET_BYTES for s in (self.secret, *self.old_secrets)):
            raise ProtocolMisuse(f"digest secrets need at least {MIN_SECRET_BYTES} bytes")
        if not self.algorithms or self.nonce_ttl_s <= 0:
            raise ProtocolMisuse("a digest server needs an algorithm and a positive nonce TTL")
        names = frozenset(_require_algorithm(name).name.lower() for name in self.algorithms)
        object.__setattr__(self, "_offered", names)

    def challenges(
        self, *, client_addr: str, now: float, stale: bool = False, entropy: bytes = b""
    ) -> tuple[Challenge, ...]:
        """One Digest challenge per offered algorithm, most preferred first, one nonce.

        ``client_addr`` is what the nonce is bound to (normally the source IP, without the
        port, so NAT rebinding does not invalidate it). ``entropy`` makes nonces issued in
        the same millisecond differ.
        """
        nonce = self.make_nonce(client_addr=client_addr, now=now, entropy=entropy)
        tail: tuple[tuple[str, str], ...] = (("stale", "true"),) if stale else ()
        return tuple(
            Challenge(
                DIGEST,
                (
                    ("realm", self.realm),
                    ("nonce", nonce),
                    ("algorithm", _require_algorithm(name).name),
                    ("qop", "auth"),
                    *tail,
                ),
            )
            for name in self.algorithms
        )

    def make_nonce(self, *, client_addr: str, now: float, entropy: bytes = b"") -> str:
        """A nonce bound to ``client_addr``, this realm and ``now``."""
        if len(entropy) > MAX_ENTROPY_BYTES or not 0 <= now < _MAX_NOW_S:
            raise ProtocolMisuse("nonce: entropy too long or time before the epoch")
        issued = _ISSUED.pack(int(now * 1000))
        tag = self._tag(self.secret, issued, entropy, client_addr)
        return base64.urlsafe_b64encode(issued + entropy + tag).rstrip(b"=").decode("ascii")

    def check_nonce(self, nonce: str, *, client_addr: str, now: float) -> NonceCheck:
        """Is ``nonce`` one of ours, for this client and realm, and is it still fresh?

        Cheap enough to run before fetching the user's HA1.
        """
        raw = _decode_nonce(nonce)
        if raw is None or len(raw) < _ISSUED.size + _TAG_BYTES:
            return NonceCheck(genuine=False)
        issued, entropy = raw[: _ISSUED.size], raw[_ISSUED.size : -_TAG_BYTES]
        tag = raw[-_TAG_BYTES:]
        secrets = (self.secret, *self.old_secrets)
        if not any(
            hmac.compare_digest(tag, self._tag(s, issued, entropy, client_addr)) for s in secrets
        ):
            return NonceCheck(genuine=False)
        issued_s = _ISSUED.unpack(issued)[0] / 1000
        if issued_s > now + self.clock_skew_s:
            return NonceCheck(genuine=False)
        return NonceCheck(True, issued_s, expired=now - issued_s > self.nonce_ttl_s)

    def _tag(self, secret: bytes, issued: bytes, entropy: bytes, client_addr: str) -> bytes:
        """HMAC-SHA256 over the length-prefixed parts (one-shot: the C path, no object)."""
        parts = (issued, entropy, client_addr.encode(), self.realm.encode())
        message = b"".join(_ISSUED.pack(len(part)) + part for part in parts)
        return hmac.digest(secret, message, "sha256")[:_TAG_BYTES]

    def verify(
        self,
        credentials: Credentials,
        *,
        method: str,
        stored_ha1: str | None,
        client_addr: str,
        now: float,
        request_uri: str | None = None,
    ) -> Verification:
        """Judge ``credentials`` for a request with ``method`` from ``client_addr``.

        ``stored_ha1`` is the user's HA1 for the credentials' algorithm (:func:`ha1_key`
        says which to fetch); None for an unknown user, which fails like a wrong password.
        ``request_uri``, when given, must equal the ``uri`` field exactly.
        """
        refusal = self._check_fields(credentials, request_uri)
        if refusal is not None:
            return refusal
        username, nonce = credentials.get("username"), str(credentials.get("nonce"))
        check = self.check_nonce(nonce, client_addr=client_addr, now=now)
        if not check.genuine:
            return Verification(Verdict.BAD_NONCE, "nonce", username)
        nc = int(str(credentials.get("nc")), 16)
        seen = Verification(Verdict.OK, "", username, nonce, nc, check.issued_s)
        if stored_ha1 is None or not _response_matches(credentials, method, stored_ha1):
            return _with(seen, Verdict.WRONG_RESPONSE, "response")
        if check.expired:
            return _with(seen, Verdict.STALE, "nonce")
        return seen

    def _check_fields(
        self, credentials: Credentials, request_uri: str | None
    ) -> Verification | None:
        """Everything decidable without the nonce's secret or the user's HA1."""
        username = credentials.get("username")
        if not credentials.is_digest:
            return Verification(Verdict.UNSUPPORTED_ALGORITHM, "scheme", username)
        missing = [name for name in _REQUIRED_FIELDS if credentials.get(name) is None]
        if missing:
            return Verification(Verdict.MISSING_FIELD, missing[0], username)
        alg = _algorithm(credentials.get("algorithm"))
        if alg is None or alg.name.lower() not in self._offered:
            return Verification(Verdict.UNSUPPORTED_ALGORITHM, "algorithm", username)
        if str(credentials.get("qop")).lower() != "auth":
            return Verification(Verdict.UNSUPPORTED_QOP, "qop", username)
        if credentials.get("realm") != self.realm:
            return Verification(Verdict.WRONG_REALM, "realm", username)
        if _NC.fullmatch(str(credentials.get("nc"))) is None:
            return Verification(Verdict.MALFORMED_FIELD, "nc", username)
        response = str(credentials.get("response"))
        if len(response) != alg.hex_chars or _HEX.fullmatch(response) is None:
            return Verification(Verdict.MALFORMED_FIELD, "response", username)
        if request_uri is not None and credentials.get("uri") != request_uri:
            return Verification(Verdict.URI_MISMATCH, "uri", username)
        return None


def ha1_key(credentials: Credentials) -> tuple[str | None, str | None, str]:
    """(username, realm, algorithm) naming the stored HA1 that verifies ``credentials``.

    The algorithm is the base one (``SHA-256`` for ``SHA-256-sess``): a session A1 is
    derived from the stored HA1 of its base algorithm.
    """
    given = credentials.get("algorithm") or "MD5"
    alg = _algorithm(given)
    name = given if alg is None else alg.name.removesuffix("-sess")
    return credentials.get("username"), credentials.get("realm"), name


def _response_matches(credentials: Credentials, method: str, stored_ha1: str) -> bool:
    """Recompute the response (qop=auth, fields already checked) in constant time."""
    expected = compute_response(
        stored_ha1,
        algorithm=credentials.get("algorithm") or "MD5",
        method=method,
        uri=str(credentials.get("uri")),
        nonce=str(credentials.get("nonce")),
        qop=str(credentials.get("qop")),
        nc=str(credentials.get("nc")),
        cnonce=str(credentials.get("cnonce")),
    )
    given = str(credentials.get("response")).lower()
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))


def _with(verification: Verification, verdict: Verdict, detail: str) -> Verification:
    v = verification
    return Verification(verdict, detail, v.username, v.nonce, v.nc, v.nonce_issued_s)


def _decode_nonce(nonce: str) -> bytes | None:
    """The octets of a nonce in canonical unpadded base64url, else None."""
    if len(nonce) > _MAX_NONCE_CHARS or _NONCE_CHARS.fullmatch(nonce) is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except ValueError:
        return None
    canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return raw if canonical == nonce else None


# --- replay detection --------------------------------------------------------------------


class NonceCounter:
    """Remembers the highest nonce-count seen per nonce; a count not above it is a replay.

    Bounded: at most ``max_nonces`` entries, each forgotten ``nonce_ttl_s`` after its
    nonce was issued (an expired nonce is refused as stale anyway). When the bound forces
    an entry out early, every unknown nonce issued no later than it counts as a replay:
    the client is re-challenged instead of an attacker replaying a forgotten nonce.
    Feed it only verifications whose verdict is OK, so wrong guesses cannot burn counts.
    """

    def __init__(
        self, nonce_ttl_s: float = DEFAULT_NONCE_TTL_S, max_nonces: int = DEFAULT_MAX_TRACKED_NONCES
    ) -> None:
        if max_nonces < 1 or nonce_ttl_s <= 0:
            raise ProtocolMisuse("NonceCounter needs room for a nonce and a positive TTL")
        self._ttl_s = nonce_ttl_s
        self._max = max_nonces
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()  # nc, issued_s
        self._forgotten_until_s = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def is_replay(self, nonce: str, nc: int, issued_s: float, now: float) -> bool:
        """True when ``nc`` was already used with ``nonce``; otherwise remember it."""
        self._expire(now)
        known = self._seen.get(nonce)
        if known is None:
            if issued_s <= self._forgotten_until_s:
                return True
            self._seen[nonce] = (nc, issued_s)
            self._evict()
            return False
        if nc <= known[0]:
            return True
        self._seen[nonce] = (nc, known[1])
        return False

    def _expire(self, now: float) -> None:
        """Forget expired nonces from the oldest end (amortized constant time)."""
        while self._seen:
            _, issued_s = next(iter(self._seen.values()))
            if now - issued_s <= self._ttl_s:
                return
            self._seen.popitem(last=False)

    def _evict(self) -> None:
        while len(self._seen) > self._max:
            _, (_, issued_s) = self._seen.popitem(last=False)
            self._forgotten_until_s = max(self._forgotten_until_s, issued_s)


# --- client side (trunks answering a provider's 401/407) ----------------------------------


def is_answerable(challenge: Challenge) -> bool:
    """A Digest challenge with realm and nonce, an algorithm and a qop we can compute."""
    if not challenge.is_digest or challenge.get("realm") is None:
        return False
    if challenge.get("nonce") is None or _algorithm(challenge.get("algorithm")) is None:
        return False
    options = qop_options(challenge)
    return not options or "auth" in options or "auth-int" in options


def choose_challenge(challenges: Iterable[Challenge], realm: str | None = None) -> Challenge | None:
    """The answerable challenge with the strongest algorithm; the topmost among equals.

    RFC 8760 §2.4 and RFC 7616 §3.7: a server offers one challenge per algorithm, most
    preferred first, and a client ignores those it cannot compute. The RFCs let a client
    take the first one it supports "unless a local policy dictates otherwise": ours is
    the strongest, so a server (or a middlebox) listing MD5 first cannot downgrade a trunk
    that both ends could run on SHA-256. ``realm`` restricts the choice to one realm.
    """
    best: Challenge | None = None
    best_strength = 0
    for challenge in challenges:
        if not is_answerable(challenge):
            continue
        if realm is not None and challenge.get("realm") != realm:
            continue
        alg = _algorithm(challenge.get("algorithm"))
        if alg is not None and alg.strength > best_strength:
            best, best_strength = challenge, alg.strength
    return best


def answer_challenge(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    cnonce: str,
    nc: int = 1,
    password: str | None = None,
    stored_ha1: str | None = None,
    body: bytes = b"",
) -> Credentials:
    """Credentials answering ``challenge`` (RFC 7616 §3.4, RFC 3261 §22.4).

    Give exactly one of ``password`` and ``stored_ha1`` (the HA1 of the challenge's base
    algorithm). ``cnonce`` comes from the caller's randomness; ``nc`` counts the requests
    sent with this nonce, from 1. Prefers qop=auth; auth-int covers ``body``; with no qop
    offered the answer is RFC 2069 style (no cnonce, no nc). ``opaque`` is echoed.
    """
    if not is_answerable(challenge) or (password is None) == (stored_ha1 is None):
        raise ProtocolMisuse("answer_challenge: unanswerable challenge or credentials")
    if not 1 <= nc <= _MAX_NC:
        raise ProtocolMisuse(f"nonce-count {nc} out of range")
    realm, nonce = str(challenge.get("realm")), str(challenge.get("nonce"))
    alg = _require_algorithm(challenge.get("algorithm") or "MD5")
    if stored_ha1 is None:
        stored_ha1 = ha1(username, realm, str(password), alg.name.removesuffix("-sess"))
    qop = _client_qop(challenge)
    nc_text = f"{nc:08x}" if qop else ""
    cnonce = cnonce if qop or alg.session else ""
    response = compute_response(
        stored_ha1, algorithm=alg.name, method=method, uri=uri, nonce=nonce, qop=qop,
        nc=nc_text, cnonce=cnonce, body=body,
    )  # fmt: skip
    return _credentials(challenge, username, uri, response, cnonce, qop, nc_text)


def _credentials(
    challenge: Challenge, username: str, uri: str, response: str, cnonce: str,
    qop: str | None, nc_text: str,
) -> Credentials:  # fmt: skip
    """The parameters of RFC 7616 §3.4 in the usual order; opaque echoed unchanged."""
    params = [("username", username)]
    params += [(name, str(challenge.get(name))) for name in ("realm", "nonce")]
    params += [("uri", uri), ("response", response)]
    algorithm = challenge.get("algorithm")
    if algorithm is not None:
        params.append(("algorithm", _require_algorithm(algorithm).name))
    if cnonce:
        params.append(("cnonce", cnonce))
    opaque = challenge.get("opaque")
    if opaque is not None:
        params.append(("opaque", opaque))
    if qop:
        params += [("qop", qop), ("nc", nc_text)]
    return Credentials(DIGEST, tuple(params))


def _client_qop(challenge: Challenge) -> str | None:
    options = qop_options(challenge)
    if "auth" in options:
        return "auth"
    return "auth-int" if "auth-int" in options else None
