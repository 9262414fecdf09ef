"""``Trunk`` manifests (issue 6.1): how a tenant reaches its SIP provider, checked and
compiled into a :class:`Trunk` value. Pure: no I/O.

::

    apiVersion: cloudpbx.io/v1
    kind: Trunk
    metadata: {name: carrier-a}
    spec:
      tenant: acme
      host: sip.carrier.example        # the provider's registrar and proxy
      port: 5060                       # none: SRV _sip._udp.HOST (RFC 3263), else 5060
      transport: udp                   # udp (default) or tcp
      outboundProxy: sip:edge.carrier.example:5070   # optional: every request goes there
      username: "4930555"
      authUsername: "acme-4930555"     # optional: when the digest user differs
      password:                        # exactly one of:
        secretRef: {name: carrier-a, key: password}  # a Secret (in a cluster)
        # file: carrier-a.password                   # beside the manifest (cloudpbx dev)
      register: {enabled: true, expires: 3600}      # default: enabled, 3600 s
      from: {user: "4930555", domain: sip.carrier.example}  # default: username, host
      callerId: {policy: trunk}        # trunk (default), passthrough, or fixed with number
      dids: ["+4930555100", "+4930555101"]   # numbers the provider routes to us
      maxChannels: 10                  # concurrent calls; 0: no limit (default)
      codecs: [PCMA, PCMU]             # offered to the provider, in order (default: any)
      inboundSources: [203.0.113.0/24] # where else its calls come from (default: none)

A request is the trunk's when it comes from the trunk's own address (its host and
outbound proxy, resolved: the IP and, over UDP, the port). A provider that sends calls
from other addresses (a pool of signalling servers) lists them in ``inboundSources``
(addresses or networks, at most a /16 of IPv4 or a /32 of IPv6): an INVITE from there is
the trunk's when it calls one of the trunk's DIDs (any other request from there is a
phone's as usual, so that a network shared with phones stays theirs).

The password stays a reference here (:class:`SecretRef` or :class:`PasswordFile`): who
loads trunks resolves it, and it never appears in an error message. Problems raise
:class:`ManifestError` naming the trunk and the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from contracts.resources import DNS_LABEL, ManifestError, count, mapping, named_spec, sequence

KIND = "Trunk"
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*|\d{1,3}(\.\d{1,3}){3}"
)
#: A SIP user part we write into From and REGISTER (RFC 3261 unreserved, escaped, and
#: the user-unreserved marks), without the characters that would need escaping.
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,64}")
_E164ISH = re.compile(r"\+?[0-9]{2,20}")
_SIP_URI = re.compile(r"sips?:[^\s<>\"]+")
_CODECS = frozenset({"PCMU", "PCMA", "G722", "G729", "OPUS", "TELEPHONE-EVENT"})
#: What a provider accepts as an expiry, here: a minute to a day.
_EXPIRES = range(60, 86_401)

CallerIdPolicy = Literal["trunk", "passthrough", "fixed"]
Transport = Literal["udp", "tcp"]


@dataclass(frozen=True, slots=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class PasswordFile:
    """A file beside the manifest (its name only: no path may climb out)."""

    name: str


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    tenant: str
    host: str
    port: int
    transport: Transport
    username: str
    auth_username: str
    password: SecretRef | PasswordFile
    register: bool
    expires_s: int
    from_user: str
    from_domain: str
    caller_id: CallerIdPolicy
    caller_id_number: str = ""
    outbound_proxy: str = ""
    dids: tuple[str, ...] = ()
    max_channels: int = 0
    codecs: tuple[str, ...] = ()
    #: Networks (``203.0.113.0/24``, ``2001:db8::5/128``) its calls also come from.
    inbound_sources: tuple[str, ...] = ()
    #: The host is a name given without a port: it is located by its SRV records
    #: (``_sip._udp.HOST``, RFC 3263 §4.2), and by its A records on 5060 when it has none.
    srv: bool = False

    @property
    def registrar(self) -> str:
        """The Request-URI of its REGISTERs (RFC 3261 §10.2: the domain, no user)."""
        port = "" if self.port == 5060 else f":{self.port}"
        tcp = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.host}{port}{tcp}"

    @property
    def aor(self) -> str:
        """The address of record it registers (To and From of its REGISTERs): the account,
        ``username``, at the From domain. ``from.user`` is what calls show, not this."""
        return f"sip:{self.username}@{self.from_domain}"


def compile_trunks(manifests: Iterable[Mapping[str, Any]], *, tenant: str) -> tuple[Trunk, ...]:
    """The tenant's ``Trunk`` manifests, checked; a DID on two trunks is refused."""
    trunks: dict[str, Trunk] = {}
    owners: dict[str, str] = {}
    for manifest in manifests:
        trunk = compile_trunk(manifest, tenant=tenant)
        if trunk.name in trunks:
            raise ManifestError(f"Trunk {trunk.name}", "defined twice")
        for did in trunk.dids:
            if did in owners:
                raise ManifestError(
                    f"Trunk {trunk.name} spec.dids",
                    f"{did} is already routed by trunk {owners[did]}",
                )
            owners[did] = trunk.name
        trunks[trunk.name] = trunk
    return tuple(trunks[name] for name in sorted(trunks))


def compile_trunk(manifest: Mapping[str, Any], *, tenant: str) -> Trunk:
    name, spec = named_spec(manifest, KIND, tenant)
    where = f"Trunk {name} spec"
    mapping(spec, where, _SPEC_KEYS)
    host = _string(spec, "host", where)
    if not _HOST.fullmatch(host):
        raise ManifestError(f"{where}.host", f"must be a host name or IPv4 address, not {host!r}")
    port = spec.get("port", 5060)
    if type(port) is not int or not 1 <= port <= 65_535:
        raise ManifestError(f"{where}.port", f"must be 1..65535, not {port!r}")
    transport = spec.get("transport", "udp")
    if transport not in ("udp", "tcp"):
        raise ManifestError(f"{where}.transport", f"must be udp or tcp, not {transport!r}")
    proxy = spec.get("outboundProxy", "")
    if proxy and (not isinstance(proxy, str) or not _SIP_URI.fullmatch(proxy)):
        raise ManifestError(f"{where}.outboundProxy", f"must be a sip: URI, not {proxy!r}")
    username = _user(spec, "username", where)
    auth_username = _user(spec, "authUsername", where) if "authUsername" in spec else username
    register, expires_s = _register(spec.get("register", {}), f"{where}.register")
    sender = mapping(spec.get("from", {}), f"{where}.from", {"user", "domain"})
    from_user = _user(sender, "user", f"{where}.from") if "user" in sender else username
    from_domain = sender.get("domain", host)
    if not isinstance(from_domain, str) or not _HOST.fullmatch(from_domain):
        raise ManifestError(f"{where}.from.domain", f"must be a host name, not {from_domain!r}")
    policy, number = _caller_id(spec.get("callerId", {}), f"{where}.callerId")
    return Trunk(
        name=name,
        tenant=tenant,
        host=host,
        port=port,
        transport=transport,
        username=username,
        auth_username=auth_username,
        password=_password(spec.get("password"), f"{where}.password"),
        register=register,
        expires_s=expires_s,
        from_user=from_user,
        from_domain=from_domain,
        caller_id=policy,
        caller_id_number=number,
        outbound_proxy=proxy,
        dids=_dids(spec.get("dids", []), f"{where}.dids"),
        max_channels=count(spec.get("maxChannels", 0), f"{where}.maxChannels"),
        codecs=_codecs(spec.get("codecs", []), f"{where}.codecs"),
        inbound_sources=_networks(spec.get("inboundSources", []), f"{where}.inboundSources"),
        srv="port" not in spec and not is_address(host),
    )


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address (IPv4 or IPv6, no brackets), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_SPEC_KEYS = {
    "tenant", "host", "port", "transport", "outboundProxy", "username", "authUsername",
    "password", "register", "from", "callerId", "dids", "maxChannels", "codecs",
    "inboundSources",
}  # fmt: skip
#: How many networks a trunk may list in ``inboundSources``.
MAX_INBOUND_SOURCES = 32
#: The shortest prefix of an inbound network, by IP version: a request from it skips
#: the challenge when it calls a DID, so a trunk may not claim the whole Internet.
SHORTEST_PREFIX = {4: 16, 6: 32}


def _networks(value: object, where: str) -> tuple[str, ...]:
    """Addresses and networks, in their normal form (``192.0.2.7/32``); a network with
    host bits set (``203.0.113.5/24``) is refused as the typo it most likely is."""
    entries = sequence(value, where)
    if len(entries) > MAX_INBOUND_SOURCES:
        raise ManifestError(where, f"lists at most {MAX_INBOUND_SOURCES} networks")
    networks: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ManifestError(where, f"an address or network like 203.0.113.0/24, not {entry!r}")
        try:
            network = ipaddress.ip_network(entry)
        except ValueError as exc:
            raise ManifestError(where, f"{entry!r} is not an address or network: {exc}") from None
        shortest = SHORTEST_PREFIX[network.version]
        if network.prefixlen < shortest:
            raise ManifestError(
                where, f"{entry} is wider than a /{shortest}: too many addresses to trust"
            )
        if str(network) in networks:
            raise ManifestError(where, f"{entry} is listed twice")
        networks.append(str(network))
    return tuple(networks)


def _password(value: object, where: str) -> SecretRef | PasswordFile:
    """Never quotes the value: a password written inline would land in logs."""
    if not isinstance(value, Mapping) or len(value) != 1 or not {"secretRef", "file"} & set(value):
        raise ManifestError(
            where, "must be {secretRef: {name, key}} or {file: NAME} (never inline)"
        )
    if "file" in value:
        name = value["file"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", name):
            raise ManifestError(
                f"{where}.file", "must be a file name beside the manifest (no path)"
            )
        return PasswordFile(name)
    ref = mapping(value["secretRef"], f"{where}.secretRef", {"name", "key"})
    secret, key = ref.get("name"), ref.get("key")
    if not isinstance(secret, str) or not DNS_LABEL.fullmatch(secret):
        raise ManifestError(f"{where}.secretRef.name", f"must name a Secret, not {secret!r}")
    if not isinstance(key, str) or not re.fullmatch(r"[-._A-Za-z0-9]{1,253}", key):
        raise ManifestError(f"{where}.secretRef.key", f"must be a Secret key, not {key!r}")
    return SecretRef(secret, key)


def _register(value: object, where: str) -> tuple[bool, int]:
    register = mapping(value, where, {"enabled", "expires"})
    enabled = register.get("enabled", True)
    if type(enabled) is not bool:
        raise ManifestError(f"{where}.enabled", f"must be true or false, not {enabled!r}")
    expires = register.get("expires", 3600)
    if type(expires) is not int or expires not in _EXPIRES:
        raise ManifestError(f"{where}.expires", f"must be 60..86400 seconds, not {expires!r}")
    return enabled, expires


def _caller_id(value: object, where: str) -> tuple[CallerIdPolicy, str]:
    caller_id = mapping(value, where, {"policy", "number"})
    policy = caller_id.get("policy", "trunk")
    if policy not in ("trunk", "passthrough", "fixed"):
        raise ManifestError(
            f"{where}.policy", f"must be trunk, passthrough or fixed, not {policy!r}"
        )
    number = caller_id.get("number", "")
    if policy == "fixed":
        if not isinstance(number, str) or not _E164ISH.fullmatch(number):
            raise ManifestError(
                f"{where}.number", f"a fixed caller ID needs a number, not {number!r}"
            )
    elif number:
        raise ManifestError(f"{where}.number", "only a fixed caller ID takes a number")
    return policy, number


def _dids(value: object, where: str) -> tuple[str, ...]:
    dids = sequence(value, where)
    for did in dids:
        if not isinstance(did, str) or not _E164ISH.fullmatch(did):
            raise ManifestError(where, f"a DID is a number like +4930555100, not {did!r}")
    if len(set(dids)) != len(dids):
        raise ManifestError(where, "a DID is listed twice")
    return tuple(dids)


def _codecs(value: object, where: str) -> tuple[str, ...]:
    codecs = tuple(str(codec).upper() for codec in sequence(value, where))
    unknown = [codec for codec in codecs if codec not in _CODECS]
    if unknown:
        raise ManifestError(where, f"unknown codec {unknown[0]!r} (known: {sorted(_CODECS)})")
    if len(set(codecs)) != len(codecs):
        raise ManifestError(where, "a codec is listed twice")
    return codecs


def _user(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = _string(spec, key, where)
    if not _USER.fullmatch(value):
        raise ManifestError(f"{where}.{key}", f"must be a SIP user name, not {value!r}")
    return value


def _string(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}.{key}", f"is required (a string), not {value!r}")
    return value
