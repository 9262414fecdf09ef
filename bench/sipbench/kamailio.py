"""SIP servers under test as child processes: Kamailio (the yardstick) and any other command.

* :func:`free_udp_port` picks a free loopback UDP port (optionally with ``port + 2`` free too,
  for SIPp's RTP echo sockets).
* :func:`options_ping` sends one OPTIONS over UDP and returns the status code of the answer;
  :func:`wait_for_sip` repeats it until a server answers (any status means "up").
* :class:`SipServer` starts a command in its own process group, waits until it answers
  OPTIONS on its port, and on exit stops that process group (SIGTERM, then SIGKILL), so no
  worker is left behind. It keeps the output in a log file for the error message.
* :func:`kamailio` is a :class:`SipServer` for ``bench/kamailio/<cfg>`` in the foreground:
  ``kamailio -DD -E -f CFG -l udp:HOST:PORT -m SHM -M PKG -Y RUNDIR`` (``-l`` replaces the
  file's ``listen=``; the configs set ``children=2``). :func:`check_config` runs
  ``kamailio -c``.
* :func:`command_server` is a :class:`SipServer` for any other command (the cloudpbx edge).
* :func:`clear_tenant_keys` deletes one tenant's keys from a Redis database before and after
  an edge benchmark, so that every run starts from the same empty registrar.

Traffic goes to loopback only: every helper refuses other addresses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

KAMAILIO_DIR = Path(__file__).resolve().parents[1] / "kamailio"
REGISTRAR_CFG = KAMAILIO_DIR / "registrar.cfg"
PROXY_CFG = KAMAILIO_DIR / "proxy.cfg"
KAMAILIO = "kamailio"


class SipServerError(Exception):
    """A server that did not start, did not answer, or died."""


def require_loopback(host: str) -> str:
    """``host`` itself when it is 127.0.0.0/8 or ::1; the benches never send anywhere else."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"{host} is not a loopback address: SIP traffic stays on this machine")
    return host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def udp_port_bound(host: str, port: int) -> bool:
    """Somebody holds UDP ``port`` on ``host`` (or on every address): a server listens there.

    Reads ``/proc/net/udp{,6}`` rather than trying to bind, which could steal the port from
    a server that is just starting.
    """
    require_loopback(host)
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except FileNotFoundError:
            continue
        if any(line.split()[1].endswith(wanted) for line in lines if len(line.split()) > 1):
            return True
    return False


def free_udp_port(host: str = "127.0.0.1", *, with_plus_two: bool = False) -> int:
    """A UDP port nobody holds on ``host`` right now (and ``port + 2``, if asked)."""
    require_loopback(host)
    for _ in range(200):
        with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port > 65000:
            continue
        if not with_plus_two or _udp_free(host, port + 2):
            return port
    raise SipServerError("no free UDP port found")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def options_ping(host: str, port: int, timeout_s: float = 0.5) -> int | None:
    """Sends one OPTIONS to ``host:port`` over UDP; the response's status code, or ``None``."""
    require_loopback(host)
    token = secrets.token_hex(8)
    with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout_s)
        local_port = int(sock.getsockname()[1])
        target = f"{_bracket(host)}:{port}"
        request = (
            f"OPTIONS sip:{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {_bracket(host)}:{local_port};branch=z9hG4bK{token};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{_bracket(host)}>;tag={token}\r\n"
            f"To: <sip:{target}>\r\n"
            f"Call-ID: {token}@{_bracket(host)}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(request, (host, port))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            first = data.split(b"\r\n", 1)[0].split()
            if len(first) >= 2 and first[0] == b"SIP/2.0" and first[1].isdigit():
                return int(first[1])
    return None


def wait_for_sip(
    host: str,
    port: int,
    timeout_s: float = 20.0,
    process: subprocess.Popen[bytes] | None = None,
) -> int:
    """Pings until ``host:port`` answers; the status code. Raises if it never does or dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise SipServerError(f"exited with status {process.returncode} before answering")
        status = options_ping(host, port, timeout_s=0.2)
        if status is not None:
            return status
        if time.monotonic() > deadline:
            raise SipServerError(f"no answer to OPTIONS on {host}:{port} in {timeout_s:.0f} s")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class SipServer:
    """A SIP server command run as a child in its own process group, for a ``with`` block.

    Entering starts it (output into ``log``) and waits until it answers OPTIONS on
    ``host:port``; leaving stops it. :attr:`returncode` is known after :meth:`stop`.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        host: str,
        port: int,
        *,
        log: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 20.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.host = require_loopback(host)
        self.port = port
        self.log = log
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def address(self) -> str:
        """``host:port`` as SIPp takes it as its remote party."""
        return f"{_bracket(self.host)}:{self.port}"

    def start(self) -> SipServer:
        """Launches the command and returns once it answers OPTIONS (or raises)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        try:
            wait_for_sip(self.host, self.port, self.start_timeout_s, self.process)
        except SipServerError as error:
            self.stop()
            raise SipServerError(
                f"{self.name} ({' '.join(self.command)}): {error}\n{_tail(self.log)}"
            ) from error
        return self

    def alive(self) -> bool:
        """Still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace_s`` (default: the
        ``stop_grace_s`` given at creation); the exit status."""
        grace_s = self.stop_grace_s if grace_s is None else grace_s
        process = self.process
        if process is None:
            return self.returncode
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            if process.poll() is None:
                # The group is the one start_new_session made for this child: its id is ours.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers that outlived their parent (a crash) are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.returncode = process.returncode
        self.process = None
        return self.returncode

    def __enter__(self) -> SipServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def kamailio_command(
    cfg: Path,
    host: str,
    port: int,
    *,
    run_dir: Path,
    shm_mb: int = 128,
    pkg_mb: int = 16,
) -> list[str]:
    """``kamailio`` in the foreground (-DD), logging to stderr (-E), listening on host:port."""
    return [
        KAMAILIO,
        "-DD",
        "-E",
        "-f",
        str(cfg),
        "-l",
        f"udp:{_bracket(require_loopback(host))}:{port}",
        "-m",
        str(shm_mb),
        "-M",
        str(pkg_mb),
        "-Y",
        str(run_dir),
    ]


def kamailio(
    cfg: Path,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    workdir: Path | None = None,
    shm_mb: int = 128,
    pkg_mb: int = 16,
) -> SipServer:
    """A :class:`SipServer` running Kamailio with ``cfg`` on ``host:port`` (free port if None).

    ``shm_mb`` is shared memory (usrloc, transactions: 10,000 bindings need a few MB),
    ``pkg_mb`` private memory per process. Its log and runtime folder go in ``workdir``.
    """
    if shutil.which(KAMAILIO) is None:
        raise SipServerError("kamailio is not installed (Debian package: kamailio)")
    port = port if port is not None else free_udp_port(host)
    workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="kamailio-"))
    run_dir = workdir / f"kamailio-{cfg.stem}-{port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = kamailio_command(cfg, host, port, run_dir=run_dir, shm_mb=shm_mb, pkg_mb=pkg_mb)
    return SipServer(
        f"kamailio {cfg.name}", command, host, port, log=run_dir / "kamailio.log", cwd=run_dir
    )


def check_config(cfg: Path) -> str:
    """``kamailio -c -f cfg``: its output when the file is valid; raises otherwise."""
    done = subprocess.run(
        [KAMAILIO, "-c", "-f", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SipServerError(f"kamailio -c -f {cfg} failed ({done.returncode}):\n{output}")
    return output


def command_server(
    name: str,
    command: Sequence[str],
    port: int,
    *,
    host: str = "127.0.0.1",
    workdir: Path,
    cwd: Path | None = None,
    start_timeout_s: float = 120.0,
    stop_grace_s: float = 10.0,
) -> SipServer:
    """A :class:`SipServer` for any command that serves SIP on ``host:port`` (the edge).

    Its output goes to ``workdir/<name>.log``; ``PYTHONUNBUFFERED`` is set so that a
    Python server's last words reach the log when it dies. The generous start timeout
    covers loading a large tenant; the stop grace covers the edge's drain period.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return SipServer(
        name,
        command,
        host,
        port,
        log=workdir / f"{name}.log",
        cwd=cwd,
        env=env,
        start_timeout_s=start_timeout_s,
        stop_grace_s=stop_grace_s,
    )


def clear_tenant_keys(redis_url: str, tenant: str) -> int:
    """Deletes every key of ``tenant`` (contracts.keys layout) in ``redis_url``'s database.

    The benches use a database of their own (``/14`` by default), never the tests' one.
    Returns how many keys were deleted.
    """
    import redis

    from contracts.keys import tenant_key_pattern

    client = redis.Redis.from_url(redis_url)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=tenant_key_pattern(tenant), count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
        return deleted
    finally:
        client.close()
