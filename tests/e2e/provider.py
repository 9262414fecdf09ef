"""A SIP provider stand-in for trunk tests: Kamailio as the carrier, SIPp as the PSTN.

:class:`Provider` runs Kamailio with ``tests/e2e/provider/provider.cfg`` (its header says
what the provider answers) on a free loopback UDP port, for one trunk account: a username,
a password and a realm. The trunk's customer (the cloudpbx edge, or SIPp standing for it)
registers there with digest auth (401, then 200; 403 for a wrong password; 423 with
Min-Expires below ``min_expires_s``) and places calls through it (407, then relayed to the
PSTN; with ``fail_invites`` every authenticated INVITE gets 503).

The PSTN is two SIPp processes on two fixed loopback ports that the provider is told at
start: the UAS that outbound calls reach (:func:`pstn_uas`, on ``pstn_uas_port``) and the
UAC that places inbound calls to DIDs (:func:`pstn_call`, from ``pstn_uac_port``). The
provider recognises the PSTN by source address alone: a request from ``127.0.0.1`` with
source port ``pstn_uas_port`` or ``pstn_uac_port`` is the PSTN (an inbound INVITE goes,
unchallenged, to the trunk's registered Contact with the DID in the To header); any
other source is the customer and must authenticate. Two ports, because a SIPp UAS and a
SIPp UAC cannot share one, and both may run during one test.

What the provider saw is read back from its log (one ``PROVIDER ...`` line per REGISTER
or INVITE outcome, see :func:`parse_outcomes`) and from usrloc through ``kamcmd``
(:meth:`Provider.registered_contacts`). Every address is loopback.

One trunk account per provider: a test with two trunks starts two providers. The PSTN
ports are free when the provider starts and stay unbound until a SIPp process takes them;
a customer that happened to bind one meanwhile would pass for the PSTN.

Needs the Debian packages kamailio (kamailio, kamcmd) and sip-tester (sipp).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench import (
    SippOptions,
    SippProcess,
    SippResult,
    SipServer,
    User,
    free_udp_port,
    run_sipp,
    scenario,
    write_users_csv,
)

from .conftest import free_port

PROVIDER_DIR = Path(__file__).resolve().parent / "provider"
PROVIDER_CFG = PROVIDER_DIR / "provider.cfg"
HOST = "127.0.0.1"
#: Longest path a Unix socket may have (sun_path is 108 bytes with its NUL).
_UNIX_PATH_MAX = 100


def provider_scenario(name: str) -> Path:
    """``tests/e2e/provider/<name>.xml``."""
    path = PROVIDER_DIR / f"{name}.xml"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


# --- what the provider logged ----------------------------------------------------------------

_LINE = re.compile(r"PROVIDER (?P<method>[A-Z-]+) (?P<rest>.*)$")
_FIELD = re.compile(r"(\w+)=(\S*)")
_SOURCE = re.compile(r"from (\S+)")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One ``PROVIDER`` log line: what the stand-in did with a request, or a reply it relayed.

    ``method`` is ``REGISTER``, ``INVITE`` or ``INVITE-REPLY`` (the final response to a
    relayed INVITE). ``status`` is the code answered (401, 403, 423, 200, 407, 503, 480,
    ...) or, for INVITE-REPLY, relayed back; ``None`` means the INVITE was relayed (its
    answer follows as INVITE-REPLY). ``seen_s`` is the provider's wall clock
    (``time.time()`` scale) when it handled the message.
    """

    method: str
    status: int | None
    seen_s: float
    call_id: str
    cseq: int
    #: ``ip:port`` the request came from (``None`` for INVITE-REPLY).
    source: str | None = None
    #: The transport it came over, ``udp`` or ``tcp`` (``None`` for INVITE-REPLY).
    transport: str | None = None
    #: The digest username in the request's credentials (``None``: it had none).
    user: str | None = None
    #: REGISTER: the expiry asked for (Contact ``expires=`` or Expires; ``None``: neither).
    expires_s: int | None = None
    #: INVITE: the Request-URI after routing (the registered Contact for inbound calls).
    ruri: str | None = None


def _optional_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def parse_outcome(line: str) -> Outcome | None:
    """The :class:`Outcome` of one log line, or ``None`` for any other line."""
    match = _LINE.search(line)
    if match is None:
        return None
    rest = match["rest"]
    fields = dict(_FIELD.findall(rest))
    source = _SOURCE.match(rest)
    user = fields.get("user")
    return Outcome(
        method=match["method"],
        status=_optional_int(fields["status"]),
        seen_s=float(fields["t"]),
        call_id=fields["callid"],
        cseq=int(fields["cseq"]),
        source=source[1] if source else None,
        transport=fields.get("proto"),
        user=None if user in (None, "-", "<null>") else user,
        expires_s=_optional_int(fields.get("expires")),
        ruri=fields.get("ruri"),
    )


def parse_outcomes(text: str) -> list[Outcome]:
    """Every ``PROVIDER`` line of a Kamailio log, in log order."""
    return [outcome for line in text.splitlines() if (outcome := parse_outcome(line))]


# --- registered contacts ---------------------------------------------------------------------

_CONTACT = re.compile(r"^\s*Address:\s*(\S+)", re.MULTILINE)
_EXPIRES = re.compile(r"^\s*Expires:\s*(\d+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact registered for the trunk, as usrloc holds it."""

    contact: str
    #: Seconds left before it expires.
    expires_s: int


def parse_bindings(text: str) -> list[Binding]:
    """The contacts in ``kamcmd ul.lookup location <user>`` output (empty: none)."""
    bindings = []
    for block in text.split("Contact:")[1:]:
        contact, expires = _CONTACT.search(block), _EXPIRES.search(block)
        if contact is not None and expires is not None:
            bindings.append(Binding(contact[1], int(expires[1])))
    return bindings


# --- the provider ----------------------------------------------------------------------------


def _quoted(value: str) -> str:
    if '"' in value or "\\" in value or "\n" in value:
        raise ValueError(f"{value!r}: no quotes, backslashes or line ends in a define")
    return f'"{value}"'


class Provider:
    """Kamailio as a SIP provider for one trunk, for a ``with`` block.

    ``workdir`` holds its log and runtime folder. ``username``/``password``/``realm`` are
    the trunk account (the digest realm, and the host of the trunk's AOR). The PSTN ports
    are free ones unless given (see the module docstring). ``fail_invites``: every
    authenticated INVITE from the customer is answered 503 (failover tests).
    ``did_in_request_uri``: inbound calls carry the DID as Request-URI user too (the
    registered Contact's host and port are kept). ``algorithm``: the digest algorithm
    ``"MD5"`` or ``"SHA-256"`` (SIPp 3.6 answers MD5 only). ``min_expires_s``: shorter
    registrations get 423; ``max_expires_s``: longer ones are granted this (a few seconds
    make a customer's refreshes countable in a test). ``challenge_in_dialog``: the
    customer's BYEs and re-INVITEs are challenged (407) too, as some carriers do.
    ``out_of_service``: the customer's REGISTERs and INVITEs get 503 unchallenged (one
    server of a provider's pool in maintenance). ``tcp``: it listens on TCP too, at the
    same port (TCP trunks; the PSTN stays on UDP).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        username: str = "trunk",
        password: str = "trunk-secret",
        realm: str = "provider.test",
        pstn_uas_port: int | None = None,
        pstn_uac_port: int | None = None,
        fail_invites: bool = False,
        did_in_request_uri: bool = False,
        challenge_in_dialog: bool = False,
        out_of_service: bool = False,
        tcp: bool = False,
        algorithm: str = "MD5",
        min_expires_s: int = 60,
        max_expires_s: int = 3600,
        port: int | None = None,
    ) -> None:
        if algorithm not in ("MD5", "SHA-256"):
            raise ValueError(f"unknown digest algorithm {algorithm!r}")
        self.username, self.password, self.realm = username, password, realm
        self.host = HOST
        self.port = port or (free_port() if tcp else free_udp_port(HOST))
        self.pstn_uas_port = pstn_uas_port or free_udp_port(HOST)
        self.pstn_uac_port = pstn_uac_port or free_udp_port(HOST)
        if len({self.port, self.pstn_uas_port, self.pstn_uac_port}) != 3:
            raise ValueError("the provider and the two PSTN ports must differ")
        self.fail_invites, self.did_in_request_uri = fail_invites, did_in_request_uri
        self.challenge_in_dialog = challenge_in_dialog
        self.out_of_service, self.tcp = out_of_service, tcp
        self.algorithm, self.min_expires_s = algorithm, min_expires_s
        self.max_expires_s = max_expires_s
        self.run_dir = workdir / f"provider-{self.port}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / "kamailio.log"
        self._socket_dir: Path | None = None
        self.ctl_socket = self.run_dir / "ctl"
        if len(str(self.ctl_socket)) > _UNIX_PATH_MAX:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="provider-"))
            self.ctl_socket = self._socket_dir / "ctl"
        self.command = provider_command(
            self.port, self.run_dir, self._defines(), self._flags(), tcp=tcp
        )
        self.server = SipServer(
            f"provider {realm}", self.command, HOST, self.port, log=self.log, cwd=self.run_dir
        )

    def _defines(self) -> dict[str, str]:
        """provider.cfg's ``#!define`` values (strings in double quotes)."""
        return {
            "TRUNK_USER": _quoted(self.username),
            "TRUNK_PASSWORD": _quoted(self.password),
            "REALM": _quoted(self.realm),
            "PSTN_IP": _quoted(HOST),
            "PSTN_UAS_PORT": str(self.pstn_uas_port),
            "PSTN_UAC_PORT": str(self.pstn_uac_port),
            "MIN_EXPIRES": str(self.min_expires_s),
            "MAX_EXPIRES": str(self.max_expires_s),
            "DIGEST_ALGORITHM": _quoted(self.algorithm),
            "CTL_SOCKET": _quoted(f"unix:{self.ctl_socket}"),
        }

    def _flags(self) -> list[str]:
        """provider.cfg's modes, defined without a value."""
        modes = (
            ("FAIL_INVITES", self.fail_invites),
            ("DID_IN_RURI", self.did_in_request_uri),
            ("CHALLENGE_IN_DIALOG", self.challenge_in_dialog),
            ("OUT_OF_SERVICE", self.out_of_service),
            ("WITH_TCP", self.tcp),
        )
        return [name for name, on in modes if on]

    @property
    def address(self) -> str:
        """``host:port``, as SIPp and the edge's trunk config take it."""
        return f"{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        """The trunk's address of record, ``sip:<username>@<realm>``."""
        return f"sip:{self.username}@{self.realm}"

    @property
    def user(self) -> User:
        """The trunk account as a SIPp CSV user (``[field0..2]`` = user, password, realm)."""
        return User(self.username, self.password, self.realm)

    def start(self) -> Provider:
        """Starts Kamailio; returns once it answers OPTIONS."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stops Kamailio and its workers."""
        self.server.stop()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def outcomes(self) -> list[Outcome]:
        """Everything logged so far (see :func:`parse_outcomes`)."""
        return parse_outcomes(self.log.read_text(encoding="utf-8", errors="replace"))

    def registers(self) -> list[Outcome]:
        """The REGISTER outcomes so far, in the order the provider handled them."""
        return [outcome for outcome in self.outcomes() if outcome.method == "REGISTER"]

    def invites(self) -> list[Outcome]:
        """The initial INVITE outcomes so far (challenged, refused or relayed)."""
        return [outcome for outcome in self.outcomes() if outcome.method == "INVITE"]

    def registered_contacts(self) -> list[Binding]:
        """The trunk's bindings in usrloc now (``kamcmd ul.lookup location <username>``)."""
        done = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl_socket}", "ul.lookup", "location", self.username],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0:
            if "AOR not found" in done.stdout + done.stderr:
                return []
            raise RuntimeError(f"kamcmd ul.lookup failed: {done.stdout}{done.stderr}")
        return parse_bindings(done.stdout)

    def __enter__(self) -> Provider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def provider_command(
    port: int, run_dir: Path, defines: Mapping[str, str], flags: list[str], *, tcp: bool = False
) -> list[str]:
    """``kamailio`` in the foreground with provider.cfg, ``-A NAME=value`` per define;
    ``tcp``: listening on TCP at ``port`` too."""
    command = ["kamailio", "-DD", "-E", "-f", str(PROVIDER_CFG), "-l", f"udp:{HOST}:{port}"]
    if tcp:
        command += ["-l", f"tcp:{HOST}:{port}"]
    command += ["-m", "32", "-M", "8", "-Y", str(run_dir)]
    for name, value in defines.items():
        command += ["-A", f"{name}={value}"]
    for name in flags:
        command += ["-A", name]
    return command


# --- the PSTN --------------------------------------------------------------------------------


def pstn_uas(
    provider: Provider,
    workdir: Path,
    *,
    reject: tuple[int, str] | None = None,
    server_scenario: Path | None = None,
    calls: int = 1,
    recv_timeout_ms: int = 10_000,
    name: str = "pstn-uas",
) -> SippProcess:
    """A SIPp UAS on the provider's PSTN UAS port, listening when this returns.

    It answers ``calls`` outbound calls: 180 then 200, holding each until the caller's BYE
    (``tests/e2e/sipp/uas.xml``; at most ``recv_timeout_ms`` between messages), or with
    ``reject=(486, "Busy Here")`` refuses them (``pstn_reject.xml``), or runs any other
    SIPp server scenario given as ``server_scenario`` (``uas_cancel.xml``). Use it as a
    context manager; ``wait()``/``stop()`` give the :class:`SippResult`. Every message is
    traced in ``workdir/<name>.messages.log``.
    """
    chosen = server_scenario or scenario("uas")
    if reject is not None:
        chosen = reject_scenario(workdir, *reject)
    options = SippOptions(
        scenario=chosen,
        local_port=provider.pstn_uas_port,
        calls=calls,
        recv_timeout_ms=recv_timeout_ms,
        trace_messages=True,
        name=name,
    )
    uas = SippProcess(options, workdir)
    uas.wait_listening()
    return uas


def reject_scenario(workdir: Path, status: int, reason: str) -> Path:
    """``pstn_reject.xml`` answering ``status reason`` instead of 503 (SIPp checks status
    codes when it loads a scenario: no keyword can stand for one), written in ``workdir``."""
    if not 300 <= status <= 699 or not reason.isprintable() or "]]>" in reason:
        raise ValueError(f"not a refusal: {status} {reason!r}")
    template = provider_scenario("pstn_reject").read_text(encoding="utf-8")
    line = "SIP/2.0 503 Service Unavailable"
    if template.count(line) != 1:
        raise RuntimeError(f"pstn_reject.xml must hold exactly one {line!r}")
    path = workdir / f"pstn_reject_{status}.xml"
    path.write_text(template.replace(line, f"SIP/2.0 {status} {reason}"), encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class PstnCall:
    """An inbound PSTN call's SIPp run and the final status its INVITE got."""

    result: SippResult
    status: int | None


_STATUS_LINE = re.compile(r"^SIP/2\.0 (\d{3}) .*\n(?:.+\n)*?CSeq:\s*\d+ INVITE", re.MULTILINE)


def final_invite_status(messages: str) -> int | None:
    """The last final (>= 200) status of an INVITE in a SIPp message trace (``None``: none)."""
    finals = [int(code) for code in _STATUS_LINE.findall(messages) if int(code) >= 200]
    return finals[-1] if finals else None


def traced_messages(result: SippResult) -> str:
    """The message trace (``-trace_msg``) of a SIPp run, empty when it kept none."""
    try:
        return result.files.messages.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def pstn_call(
    provider: Provider,
    did: str,
    workdir: Path,
    *,
    answered: bool = True,
    caller: str = "4930123456",
    hold_ms: int = 200,
    timeout_s: float = 20.0,
    name: str = "pstn-call",
) -> PstnCall:
    """One inbound call from the PSTN to ``did``, run to its end from the PSTN UAC port.

    INVITE ``sip:<did>@<realm>`` (To the same, From ``<caller>``) to the provider, which
    relays it to the trunk's registered Contact. ``answered``: expect 200, hold
    ``hold_ms``, then BYE (``pstn_uac.xml``); otherwise expect a failure and ACK it
    (``pstn_uac_rejected.xml``). :attr:`PstnCall.status` is the final status seen.
    """
    options = SippOptions(
        scenario=provider_scenario("pstn_uac" if answered else "pstn_uac_rejected"),
        remote=provider.address,
        local_port=provider.pstn_uac_port,
        service=did,
        keys={"realm": provider.realm, "caller": caller},
        calls=1,
        duration_ms=hold_ms,
        trace_messages=True,
        name=name,
        extra=("-default_behaviors", "all,-bye"),
    )
    result = run_sipp(options, workdir, timeout_s=timeout_s)
    return PstnCall(result, final_invite_status(traced_messages(result)))


def trunk_csv(provider: Provider, workdir: Path, *, password: str | None = None) -> Path:
    """A SIPp injection file with the trunk account (``password`` overrides its password)."""
    user = provider.user
    if password is not None:
        user = User(user.number, password, user.domain)
    return write_users_csv(workdir / f"trunk-{provider.port}-{password or 'ok'}.csv", [user])
