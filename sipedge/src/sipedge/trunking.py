"""A SIP trunk's registration to its provider (issue 6.2), as a state machine without
I/O, clock or randomness: the caller sends the REGISTERs it asks for, feeds back what
came (a response, or a timeout), and waits as long as it says; its randomness (the
jitter, the cnonce) comes in as values.

* A 401 or 407 is answered with the trunk's credentials (:func:`sipedge.sip.digest.
  answer_challenge`: MD5 or SHA-256, qop=auth), the strongest challenge first. A new
  challenge to an answered one means the password was refused, unless it says
  ``stale=true`` (RFC 7616 §3.3): the nonce had only expired, so it is answered again.
* A 423 Interval Too Brief raises the expiry to its Min-Expires and registers at once.
* A 200 registers the trunk for what the registrar granted (our Contact's ``expires``,
  else the Expires header, else what was asked), refreshed ahead of time: at half the
  time for short grants, 60 s before the end for long ones.
* Disabling sends the REGISTER that removes the binding (Expires 0), answering its one
  challenge: a provider challenges every REGISTER, the unregister too.
* Anything else (a 403, a 5xx, a timeout, two challenges in a row) leaves the trunk
  Failed with the status and reason, tried again after an exponential back-off with
  jitter (``base * 2**(failures-1)`` capped at ``most``, then scaled by 0.5-1.0), so a
  wrong password makes no retry storm.

Its :class:`Status` (Registered, Failed with the last status and reason, Disabled) is what
metrics and the Trunk's status show. The pure pieces of its driver
(:mod:`sipedge.registrations`) are here too: which trunks register, the REGISTER the
machine asks for, and where it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import NamedTuple

from contracts.snapshot import TenantSnapshot
from contracts.trunk import Trunk, is_address
from sipedge.sip.auth import (
    AUTHORIZATION,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
    Challenge,
    parse_challenge,
)
from sipedge.sip.digest import answer_challenge, choose_challenge, is_answerable
from sipedge.sip.errors import ParseError
from sipedge.sip.message import Request, Response
from sipedge.sip.uri import SipUri, parse_uri

#: Back-off after failures: the first wait, and the longest.
BACKOFF_BASE_S = 2.0
BACKOFF_MOST_S = 300.0
#: A long registration is refreshed this long before it ends; a short one at half-time.
REFRESH_AHEAD_S = 60
#: Starts the user part of a trunk registration's Contact (:func:`contact_user`).
CONTACT_PREFIX = "trunk-"
MAX_FORWARDS = "70"


def contact_user(tenant: str, trunk: str) -> str:
    """The user part of the Contact a trunk registers: the provider sends the trunk's
    inbound calls to it, so it names the tenant and the trunk (a trunk name is a DNS
    label: no dot; a tenant name is a DNS name).

    >>> contact_user("acme.example", "carrier-a")
    'trunk-carrier-a.acme.example'
    """
    return f"{CONTACT_PREFIX}{trunk}.{tenant}"


def trunk_of_contact_user(user: str) -> tuple[str, str] | None:
    """(tenant, trunk) from a :func:`contact_user`, or None for any other user part."""
    if not user.startswith(CONTACT_PREFIX):
        return None
    trunk, dot, tenant = user[len(CONTACT_PREFIX) :].partition(".")
    return (tenant, trunk) if dot and trunk and tenant else None


class State(Enum):
    """As metrics and the Trunk's status show it (the value)."""

    REGISTERING = "Registering"
    REGISTERED = "Registered"
    FAILED = "Failed"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    #: The last final status and reason (0 and "" before any).
    status: int = 0
    reason: str = ""
    #: Consecutive failures (0 once registered).
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Account:
    """What a trunk registers with: the registrar, the address of record, the contact,
    the credentials and the expiry it asks for."""

    registrar: str
    aor: str
    contact: str
    username: str
    password: str
    expires_s: int = 3600


@dataclass(frozen=True, slots=True)
class Register:
    """Send a REGISTER: this CSeq and Expires, with this credentials header (if any)."""

    cseq: int
    expires_s: int
    authorization: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send: call :meth:`Registration.wait_over` in ``seconds``."""

    seconds: float


class Registration:
    def __init__(
        self,
        account: Account,
        *,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_most_s: float = BACKOFF_MOST_S,
    ) -> None:
        self.account = account
        self.status = Status(State.REGISTERING)
        self._base_s, self._most_s = backoff_base_s, backoff_most_s
        self._cseq = 0
        self._expires_s = account.expires_s
        #: The challenge answered in the REGISTER under way, its header and its use count.
        self._answered: tuple[Challenge, str] | None = None
        self._nc = 0

    def start(self) -> Register:
        """The first REGISTER (also after :meth:`wait_over`)."""
        self._answered = None
        return self._register("")

    def wait_over(self) -> Register:
        """A wait ended: refresh, or try again after a failure."""
        if self.status.state is State.DISABLED:
            raise RuntimeError("a disabled trunk registers no more")
        return self.start()

    def disable(self) -> Register:
        """Stop: the REGISTER that removes the binding (Expires 0); the trunk is Disabled.
        Its challenge is answered once (:meth:`answer`); nothing else about it is."""
        self.status = Status(State.DISABLED)
        self._expires_s, self._answered = 0, None
        return Register(self._next_cseq(), 0)

    def answer(self, response: Response, *, cnonce: str, jitter: float) -> Register | Wait:
        """What to do about the final response to the REGISTER under way. ``cnonce``: a
        fresh random token; ``jitter``: a random number in [0, 1)."""
        status, reason = response.status, response.reason
        if self.status.state is State.DISABLED:
            return self._unregister_challenged(response, cnonce)
        if status in (401, 407):
            return self._challenged(response, cnonce=cnonce, jitter=jitter)
        if status == 423:
            return self._too_brief(response, cnonce=cnonce, jitter=jitter)
        if 200 <= status < 300:
            granted = self._granted(response)
            self.status = Status(State.REGISTERED, status, reason)
            return Wait(self._refresh_after(granted))
        return self._failed(status, reason, jitter)

    def timed_out(self, *, jitter: float) -> Wait:
        """The REGISTER got no final response (its transaction timed out)."""
        return self._failed(408, "Request Timeout", jitter)

    def unreachable(self, reason: str, *, jitter: float) -> Wait:
        """The REGISTER could not be sent (the registrar's name did not resolve, no
        connection): a 503, as RFC 3261 §8.1.3.1 treats a transport error."""
        return self._failed(503, reason, jitter)

    # -- the cases ---------------------------------------------------------------------
    def _challenged(self, response: Response, *, cnonce: str, jitter: float) -> Register | Wait:
        chosen, header = chosen_challenge(response)
        if chosen is None:
            return self._failed(
                response.status, f"{response.reason} (no challenge we answer)", jitter
            )
        stale = (chosen.get("stale") or "").lower() == "true"
        if self._answered is not None and not stale:  # our credentials were refused
            return self._failed(response.status, response.reason, jitter)
        self._answered, self._nc = (chosen, header), 0
        return self._register(cnonce)

    def _unregister_challenged(self, response: Response, cnonce: str) -> Register | Wait:
        """The unregister (Expires 0) answers its first challenge; anything else ends it."""
        if response.status not in (401, 407) or self._answered is not None:
            return Wait(0.0)
        chosen, header = chosen_challenge(response)
        if chosen is None:
            return Wait(0.0)
        self._answered, self._nc = (chosen, header), 0
        return self._register(cnonce)

    def _too_brief(self, response: Response, *, cnonce: str, jitter: float) -> Register | Wait:
        least = _uint(response.headers.get("Min-Expires"))
        if least is None or least <= self._expires_s:
            return self._failed(423, f"{response.reason} (no usable Min-Expires)", jitter)
        self._expires_s = least
        # The same challenge is answered again (the next nonce-count).
        return self._register(cnonce)

    def _failed(self, status: int, reason: str, jitter: float) -> Wait:
        if self.status.state is State.DISABLED:  # the unregister failed: nothing to retry
            return Wait(0.0)
        failures = self.status.failures + 1
        self.status = Status(State.FAILED, status, reason, failures)
        self._answered = None
        delay = min(self._most_s, self._base_s * 2 ** (failures - 1))
        return Wait(delay * (0.5 + min(max(jitter, 0.0), 1.0) / 2))

    def _register(self, cnonce: str) -> Register:
        """The next REGISTER, with credentials when a challenge is being answered."""
        authorization = None
        if self._answered is not None:
            challenge, header = self._answered
            self._nc += 1
            credentials = answer_challenge(
                challenge,
                method="REGISTER",
                uri=self.account.registrar,
                username=self.account.username,
                cnonce=cnonce,
                nc=self._nc,
                password=self.account.password,
            )
            name = AUTHORIZATION if header == WWW_AUTHENTICATE else PROXY_AUTHORIZATION
            authorization = (name, credentials.to_header_value())
        if self.status.state not in (State.REGISTERED, State.DISABLED):
            self.status = replace(self.status, state=State.REGISTERING)
        return Register(self._next_cseq(), self._expires_s, authorization)

    def _next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def _granted(self, response: Response) -> int:
        """What the registrar granted: our Contact's expires, else Expires, else asked."""
        try:
            contacts = response.contacts
        except ParseError:
            contacts = ()
        if isinstance(contacts, tuple):
            for contact in contacts:
                if _same_contact(contact.uri, self.account.contact):
                    expires = _uint(contact.params.get("expires"))
                    if expires is not None:
                        return expires
        header = _uint(response.headers.get("Expires"))
        return header if header is not None else self._expires_s

    def _refresh_after(self, granted_s: int) -> float:
        if granted_s <= 2 * REFRESH_AHEAD_S:
            return granted_s / 2
        return float(granted_s - REFRESH_AHEAD_S)


# -- for the driver --------------------------------------------------------------------
def register_request(
    trunk: Trunk,
    register: Register,
    *,
    via: str,
    contact: str,
    call_id: str,
    from_tag: str,
    user_agent: str,
) -> Request:
    """The REGISTER ``register`` asks for (RFC 3261 §10.2): to the trunk's registrar, its
    address of record in To and From, our ``contact``."""
    headers = [
        ("Via", via),
        ("Max-Forwards", MAX_FORWARDS),
        ("From", f"<{trunk.aor}>;tag={from_tag}"),
        ("To", f"<{trunk.aor}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{register.cseq} REGISTER"),
        ("Contact", contact),
        ("Expires", str(register.expires_s)),
        ("User-Agent", user_agent),
    ]
    if register.authorization is not None:
        headers.append(register.authorization)
    return Request("REGISTER", trunk.registrar, headers)


class Hop(NamedTuple):
    """Where a trunk's requests go: a host, its port, ``UDP`` or ``TCP``; ``srv``: the
    host was named without a port, so its SRV records say where (RFC 3263 §4.2)."""

    host: str
    port: int
    transport: str
    srv: bool = False


def next_hop(trunk: Trunk) -> Hop:
    """Where the trunk's requests go: its outbound proxy (whose ``transport`` parameter,
    if any, wins), else its host and port."""
    if trunk.outbound_proxy:
        try:
            proxy = parse_uri(trunk.outbound_proxy, "outbound proxy")
        except ParseError:
            proxy = None
        if isinstance(proxy, SipUri):
            transport = (proxy.transport or trunk.transport).upper()
            srv = proxy.port is None and not is_address(proxy.host_address)
            return Hop(proxy.host_address, proxy.effective_port, transport, srv)
    return Hop(trunk.host, trunk.port, trunk.transport.upper(), trunk.srv)


def account(tenant: str, trunk: Trunk, password: str, contact: str) -> Account:
    """What the machine registers with; ``contact``: our Contact header value."""
    return Account(
        registrar=trunk.registrar,
        aor=trunk.aor,
        contact=contact.strip("<>"),
        username=trunk.auth_username,
        password=password,
        expires_s=trunk.expires_s,
    )


def wanted_trunks(tenants: Iterable[TenantSnapshot]) -> Mapping[tuple[str, str], tuple[Trunk, str]]:
    """Every trunk to register, with its password: ``register`` on, tenant enabled."""
    return {
        (tenant.name, trunk.name): (trunk, tenant.trunk_password(trunk.name))
        for tenant in tenants
        if tenant.enabled
        for trunk in tenant.trunks
        if trunk.register
    }


def server_failed(status: int | None) -> bool:
    """Whether a provider's server failed a request, so that its next server (by SRV) is
    tried (RFC 3263 §4.3): it answered 503, or ``None``: nothing at all (a timeout, or
    the request could not be sent). Any other answer is the provider's."""
    return status is None or status == 503


def chosen_challenge(response: Response) -> tuple[Challenge | None, str]:
    """The challenge of a 401 or 407 we answer (the strongest), and its header's name."""
    header = WWW_AUTHENTICATE if response.status == 401 else PROXY_AUTHENTICATE
    challenges: list[Challenge] = []
    for value in response.headers.lines(header):
        try:
            challenges.append(parse_challenge(value, header))
        except ParseError:
            continue
    chosen = choose_challenge(challenges)
    return (chosen if chosen is not None and is_answerable(chosen) else None), header


def _same_contact(uri: object, contact: str) -> bool:
    if not isinstance(uri, SipUri):
        return False
    text = str(uri)
    return text == contact or text.split(";", 1)[0] == contact.split(";", 1)[0]


def _uint(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None
