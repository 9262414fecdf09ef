"""SIPp as a library: the test population it drives, and runs of its scenarios.

The population (the same on every side of a comparison):

* :func:`make_users` gives N numeric users ``100000, 100001, ...`` in one domain, each with a
  derivable password ``"pw" + number`` (what ``bench/kamailio/*.cfg`` check against, having
  no user database);
* :func:`write_users_csv` writes them as a SIPp injection file (``-inf``): a ``SEQUENTIAL``
  line, then ``user;password;domain`` per line, read in scenarios as
  ``[field0]``/``[field1]``/``[field2]``;
* :func:`write_tenant_manifest` writes them as the cloudpbx edge's tenant: one multi-document
  YAML file with a ``kind: Secret`` (stringData number → password) and a
  ``cloudpbx.io/v1`` ``Tenant`` whose extensions point at it.

:func:`register_options` and :func:`call_options` fill in what the scenarios need
(``-set expires``, ``-s CALLEE``, and ``-auth_uri`` so that the digest uri is the
Request-URI: SIPp's default is the remote address, which strict servers refuse).

Runs: :class:`SippOptions` says what to run (scenario from ``tests/e2e/sipp/``, remote
party or server mode, ``-s``, ``-inf``, ``-r``/``-rp``/``-l``/``-m``/``-d``, ``-set``,
``-key``, timeouts); :func:`run_sipp` runs it to the end and :class:`SippProcess` runs it in
the background (a UAS). Every run writes, in its work folder, the statistics file
(``-trace_stat -stf``), the unexpected-message log (``-trace_err``), the final screen
(``-trace_screen``) and optionally every message (``-trace_msg``); :class:`SippResult`
carries SIPp's exit status, the parsed :class:`~sipbench.stats.SippStats` and
:meth:`SippResult.describe` for assertion messages.

SIPp's exit status: 0 every call succeeded, 1 at least one failed, 97 stopped by an internal
command, 99 ended without processing a call, 255/254 fatal errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from .kamailio import free_udp_port, require_loopback, udp_port_bound
from .stats import SippStats, StatFileError, read_stat_file

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "tests" / "e2e" / "sipp"
SIPP = "sipp"
BENCH_DOMAIN = "bench.cloudpbx.test"
BENCH_TENANT = "bench"
BENCH_SECRET = "bench-passwords"
FIRST_USER = 100_000
#: -max_socket with ``-t un``: sockets beyond it are reused round robin by new calls.
MAX_SOCKETS = 4096

EXIT_STATUS: Mapping[int, str] = {
    0: "every call succeeded",
    1: "at least one call failed",
    97: "stopped by an internal command",
    99: "ended without processing a call",
    254: "fatal error binding a socket",
    255: "fatal error",
}


# --- the population --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """One SIP user: the user part of its AOR, its password and its domain (= realm)."""

    number: str
    password: str
    domain: str = BENCH_DOMAIN


def password_for(number: str) -> str:
    """The password every side derives for ``number``: ``"pw" + number``."""
    return f"pw{number}"


def make_users(count: int, *, first: int = FIRST_USER, domain: str = BENCH_DOMAIN) -> list[User]:
    """``count`` numeric users from ``first`` on, with derived passwords."""
    if count < 1:
        raise ValueError("count must be at least 1")
    return [User(str(n), password_for(str(n)), domain) for n in range(first, first + count)]


def write_users_csv(path: Path, users: Iterable[User], *, order: str = "SEQUENTIAL") -> Path:
    """A SIPp injection file: ``order`` then ``user;password;domain`` lines. Returns ``path``."""
    if order not in ("SEQUENTIAL", "RANDOM", "USER"):
        raise ValueError(f"unknown injection order {order!r}")
    lines = [order, *(f"{user.number};{user.password};{user.domain}" for user in users)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tenant_documents(
    users: Sequence[User],
    *,
    tenant: str = BENCH_TENANT,
    secret: str = BENCH_SECRET,
    anchor_media: bool = False,
    aliases: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The Secret and the Tenant (cloudpbx.io/v1) that make ``users`` the edge's extensions.

    Media anchoring is off by default: the call bench moves no RTP, and its Kamailio
    yardstick does not anchor media either. ``aliases`` adds ``spec.aliases`` (other hosts
    the tenant answers for) when given.
    """
    if not users:
        raise ValueError("a tenant needs at least one user")
    domains = {user.domain for user in users}
    if len(domains) != 1:
        raise ValueError(f"users span several domains: {sorted(domains)}")
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "type": "Opaque",
            "stringData": {user.number: user.password for user in users},
        },
        {
            "apiVersion": "cloudpbx.io/v1",
            "kind": "Tenant",
            "metadata": {"name": tenant},
            "spec": {
                "domain": domains.pop(),
                **({"aliases": list(aliases)} if aliases else {}),
                "enabled": True,
                "media": {"anchor": anchor_media},
                "extensions": [
                    {
                        "number": user.number,
                        "displayName": f"Bench {user.number}",
                        "passwordSecretRef": {"name": secret, "key": user.number},
                    }
                    for user in users
                ],
            },
        },
    ]


def write_tenant_manifest(path: Path, users: Sequence[User], **options: Any) -> Path:
    """:func:`tenant_documents` as one multi-document YAML file (the manifest folder format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by bench/sipbench: the benchmark tenant and its passwords.\n"
    # libyaml's emitter when present: the pure-Python one takes seconds for 10,000 users.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    body = yaml.dump_all(tenant_documents(users, **options), Dumper=dumper, sort_keys=False)
    path.write_text(header + body, encoding="utf-8")
    return path


# --- runs -------------------------------------------------------------------------------------


def scenario(name: str) -> Path:
    """The path of ``tests/e2e/sipp/<name>`` (``.xml`` added when missing)."""
    path = SCENARIO_DIR / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class SippOptions:
    """One SIPp invocation. ``remote=None`` runs a server (UAS) scenario."""

    scenario: Path
    #: ``host:port`` of the party to call; loopback only.
    remote: str | None = None
    #: Our address (Via, Contact, -i) and the port we bind (-p): a free one when None.
    local_ip: str = "127.0.0.1"
    local_port: int | None = None
    #: SIPp binds this and +2 for its RTP echo (-mp): a free pair when None.
    media_port: int | None = None
    service: str | None = None
    inf: Path | None = None
    #: -m: stop after this many calls.
    calls: int | None = None
    #: -r / -rp: ``rate`` calls every ``rate_period_ms``.
    rate: float | None = None
    rate_period_ms: int | None = None
    #: -l: at most this many calls at once.
    limit: int | None = None
    #: -d: the length of <pause/> without milliseconds (hold time, ring time).
    duration_ms: int | None = None
    #: -auth_uri: the digest uri (without "sip:"); SIPp's default is remote_ip:remote_port.
    auth_uri: str | None = None
    #: -set NAME VALUE (scenario variables [$NAME], declared in <Global>).
    variables: Mapping[str, str] = field(default_factory=dict)
    #: -key NAME VALUE (scenario keywords [NAME]).
    keys: Mapping[str, str] = field(default_factory=dict)
    #: -recv_timeout: a call waiting longer than this for a message fails.
    recv_timeout_ms: int | None = 10_000
    #: -timeout N -timeout_error: SIPp gives up (non-zero status) after N seconds.
    timeout_s: int | None = None
    #: -t: ``u1`` one UDP socket for every call; ``un`` a socket per call, as N phones
    #: would have (their flows then spread over an SO_REUSEPORT group like real phones').
    transport: str = "u1"
    #: -fd: a statistics row every N seconds.
    stat_interval_s: int = 1
    #: -trace_msg: keep every message (tests: yes; load runs: no).
    trace_messages: bool = False
    #: File name prefix in the work folder; the scenario's name when None.
    name: str | None = None
    extra: Sequence[str] = ()

    @property
    def label(self) -> str:
        """The prefix of this run's files."""
        return self.name or self.scenario.stem


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class SippFiles:
    """Where one run's outputs go."""

    stat: Path
    errors: Path
    screen: Path
    messages: Path
    output: Path

    @classmethod
    def in_folder(cls, workdir: Path, label: str) -> SippFiles:
        """The files of run ``label`` in ``workdir``; earlier ones of that name are removed."""
        workdir.mkdir(parents=True, exist_ok=True)
        files = cls(
            stat=workdir / f"{label}.stat.csv",
            errors=workdir / f"{label}.errors.log",
            screen=workdir / f"{label}.screen.log",
            messages=workdir / f"{label}.messages.log",
            output=workdir / f"{label}.out",
        )
        for path in (files.stat, files.errors, files.screen, files.messages, files.output):
            path.unlink(missing_ok=True)
        return files


def sipp_command(options: SippOptions, files: SippFiles) -> list[str]:
    """The argument vector for ``options``, writing into ``files``."""
    local_ip = require_loopback(options.local_ip)
    local_port = options.local_port or free_udp_port(local_ip)
    media_port = options.media_port or free_udp_port(local_ip, with_plus_two=True)
    command = [SIPP]
    if options.remote is not None:
        host = options.remote.rsplit(":", 1)[0].strip("[]")
        require_loopback(host)
        command.append(options.remote)
    command += ["-sf", str(options.scenario), "-i", local_ip, "-p", str(local_port)]
    command += ["-mp", str(media_port), "-ci", local_ip, "-bind_local", "-nostdin"]
    command += ["-t", options.transport]
    if options.transport == "un":  # SIPp's default (50,000) exceeds the open-file limit
        command += ["-max_socket", str(MAX_SOCKETS)]
    command += ["-trace_stat", "-stf", str(files.stat), "-fd", str(options.stat_interval_s)]
    command += ["-trace_err", "-error_file", str(files.errors)]
    command += ["-trace_screen", "-screen_file", str(files.screen)]
    if options.trace_messages:
        command += ["-trace_msg", "-message_file", str(files.messages)]
    if options.service is not None:
        command += ["-s", options.service]
    if options.inf is not None:
        command += ["-inf", str(options.inf)]
    if options.calls is not None:
        command += ["-m", str(options.calls)]
    if options.rate is not None:
        command += ["-r", _number(options.rate)]
    if options.rate_period_ms is not None:
        command += ["-rp", str(options.rate_period_ms)]
    if options.limit is not None:
        command += ["-l", str(options.limit)]
    if options.duration_ms is not None:
        command += ["-d", str(options.duration_ms)]
    if options.auth_uri is not None:
        command += ["-auth_uri", options.auth_uri]
    for name, value in options.variables.items():
        command += ["-set", name, value]
    for name, value in options.keys.items():
        command += ["-key", name, value]
    if options.recv_timeout_ms is not None:
        command += ["-recv_timeout", str(options.recv_timeout_ms)]
    if options.timeout_s is not None:
        command += ["-timeout", f"{options.timeout_s}s", "-timeout_error"]
    command += list(options.extra)
    return command


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run left: exit status, statistics, and where its logs are."""

    options: SippOptions
    command: Sequence[str]
    returncode: int
    stats: SippStats | None
    wall_s: float
    files: SippFiles

    @property
    def ok(self) -> bool:
        """Exit status 0: every call succeeded."""
        return self.returncode == 0

    def describe(self, lines: int = 30) -> str:
        """Exit status, counters and the tail of the error log, for an assertion message."""
        meaning = EXIT_STATUS.get(self.returncode, "unknown status")
        parts = [
            f"sipp {self.options.label}: exit {self.returncode} ({meaning})"
            f" after {self.wall_s:.1f}s",
            "  " + (self.stats.summary() if self.stats else "no statistics"),
            "  command: " + " ".join(self.command),
        ]
        for title, path in (("errors", self.files.errors), ("output", self.files.output)):
            try:
                text = path.read_text(encoding="utf-8", errors="replace").strip()
            except FileNotFoundError:
                continue
            if text:
                tail = "\n    ".join(text.splitlines()[-lines:])
                parts.append(f"  {title} ({path}):\n    {tail}")
        return "\n".join(parts)


def _result(
    options: SippOptions, command: Sequence[str], returncode: int, wall_s: float, files: SippFiles
) -> SippResult:
    try:
        stats: SippStats | None = read_stat_file(files.stat)
    except StatFileError:
        stats = None
    return SippResult(options, list(command), returncode, stats, wall_s, files)


class SippProcess:
    """A SIPp run in the background (a UAS waiting for calls), stopped or awaited later."""

    def __init__(self, options: SippOptions, workdir: Path) -> None:
        if shutil.which(SIPP) is None:
            raise FileNotFoundError("sipp is not installed (Debian package: sip-tester)")
        local_ip = require_loopback(options.local_ip)
        self.options = options = replace(
            options,
            local_port=options.local_port or free_udp_port(local_ip),
            media_port=options.media_port or free_udp_port(local_ip, with_plus_two=True),
        )
        self.files = SippFiles.in_folder(workdir, options.label)
        self.command = sipp_command(options, self.files)
        self.started = time.monotonic()
        with self.files.output.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def local_port(self) -> int:
        """The port SIPp binds (-p)."""
        assert self.options.local_port is not None
        return self.options.local_port

    def wait_listening(self, timeout_s: float = 5.0) -> None:
        """Returns once SIPp holds its port (a UAS is ready for INVITEs); raises otherwise."""
        deadline = time.monotonic() + timeout_s
        while not udp_port_bound(self.options.local_ip, self.local_port):
            if not self.running() or time.monotonic() > deadline:
                result = self.stop(grace_s=1.0)
                raise RuntimeError("SIPp did not start listening\n" + result.describe())
            time.sleep(0.02)

    def running(self) -> bool:
        """Not exited yet."""
        return self.process.poll() is None

    def wait(self, timeout_s: float | None = None) -> SippResult:
        """Waits for SIPp to end by itself (``-m`` reached, or its -timeout); kills it after
        ``timeout_s`` (the status is then the signal's, negative)."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill()
        return self._done()

    def stop(self, grace_s: float = 5.0) -> SippResult:
        """Asks SIPp to finish (SIGUSR1: no new calls, end when the current ones end), then
        SIGTERM/SIGKILL if it takes longer than ``grace_s``."""
        if self.process.poll() is None:
            self._signal(signal.SIGUSR1)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._kill()
        return self._done()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def _kill(self) -> None:
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=5.0)

    def _done(self) -> SippResult:
        wall_s = time.monotonic() - self.started
        returncode = self.process.returncode
        return _result(self.options, self.command, returncode, wall_s, self.files)

    def __enter__(self) -> SippProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.running():
            self.stop(grace_s=2.0)


def register_options(
    remote: str,
    inf: Path,
    domain: str = BENCH_DOMAIN,
    *,
    expires: int = 3600,
    lean: bool = False,
    **more: Any,
) -> SippOptions:
    """``register.xml`` (or ``unregister.xml`` with ``scenario=``) against ``remote``.

    The digest uri is the Request-URI, ``sip:<domain>``. ``lean`` skips register.xml's check
    of the 200's Contact (for load runs, where that regexp would make SIPp the bottleneck).
    ``more`` sets any other :class:`SippOptions` field.
    """
    more.setdefault("scenario", scenario("register"))
    # A failed registration has no dialog to end: no BYE on abort (SIPp's default sends one).
    more.setdefault("extra", ("-default_behaviors", "all,-bye"))
    variables: dict[str, str] = {}
    if more["scenario"].stem == "register":
        variables["expires"] = str(expires)
        if lean:
            variables["lean"] = "1"
    return SippOptions(remote=remote, inf=inf, auth_uri=domain, variables=variables, **more)


def call_options(
    caller_scenario: str,
    remote: str,
    inf: Path,
    callee: str,
    domain: str = BENCH_DOMAIN,
    **more: Any,
) -> SippOptions:
    """A caller scenario (``uac``, ``uac_busy``, ``uac_cancel``, ``uac_remote_bye``) calling
    ``callee@domain`` through ``remote``; the digest uri is that Request-URI."""
    return SippOptions(
        scenario=scenario(caller_scenario),
        remote=remote,
        inf=inf,
        service=callee,
        auth_uri=f"{callee}@{domain}",
        **more,
    )


def run_sipp(options: SippOptions, workdir: Path, timeout_s: float = 60.0) -> SippResult:
    """Runs ``options`` to the end (killed after ``timeout_s``) and returns the result."""
    with SippProcess(options, workdir) as run:
        return run.wait(timeout_s)
