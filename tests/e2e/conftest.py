"""Fixtures that run a real edge process (``python -m sipedge serve``) on free ports.

The edge is started exactly as a pod starts it, with a folder of Tenant manifests
written for the test, and stopped with SIGTERM (graceful shutdown). With
``redis=True`` it shares the test Redis (``CLOUDPBX_TEST_REDIS_URL``) under a key
prefix no other test uses... bindings and calls of different test runs never meet
because each run has its own tenant name.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REDIS_URL = os.environ.get("CLOUDPBX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORDS = {"2001": "pw-2001-test", "2002": "pw-2002-test", "2003": "pw-2003-test"}


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def write_tenant(folder: Path, name: str, domain: str) -> None:
    extensions = "\n".join(
        f'    - number: "{number}"\n      displayName: User {number}\n'
        f"      passwordSecretRef: {{name: {name}-pw, key: u{number}}}"
        for number in PASSWORDS
    )
    secrets_text = "\n".join(f"  u{number}: {password}" for number, password in PASSWORDS.items())
    (folder / f"{name}.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-pw\nstringData:\n"
        f"{secrets_text}\n---\napiVersion: cloudpbx.io/v1\nkind: Tenant\nmetadata:\n"
        f"  name: {name}\nspec:\n  domain: {domain}\n  aliases: [127.0.0.1]\n"
        f"  limits: {{ringTimeoutSeconds: 3}}\n  extensions:\n{extensions}\n"
    )


@dataclass
class EdgeProc:
    """A running edge: its ports, tenant and process."""

    port: int
    domain: str
    tenant: str
    process: subprocess.Popen[str]
    log: Path
    metrics_port: int
    redis_url: str = REDIS_URL
    extra: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The labels and value of each ``name`` sample on the edge's /metrics now."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url) as page:
            text = page.read().decode()
        return [
            (dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]


def start_edge(
    tmp: Path,
    *,
    redis: bool = False,
    port: int | None = None,
    tenant: str | None = None,
    workers: int = 1,
    domain: str | None = None,
    manifest: Callable[[Path], None] | None = None,
    extra_args: Sequence[str] = (),
    snapshots: bool = False,
) -> EdgeProc:
    """Start an edge; ``manifest(folder)`` writes the tenant instead of the default one
    (then ``tenant`` and ``domain`` must name what it writes). ``snapshots``: no folder,
    the tenants are the snapshots published in Redis (``redis`` is implied)."""
    name = tenant or f"t{secrets.token_hex(4)}"
    domain = domain or f"{name}.pbx.test"
    manifests = tmp / "manifests" / name  # edges of one tenant share its folder
    manifests.mkdir(parents=True, exist_ok=True)
    if not any(manifests.iterdir()):
        if manifest is not None:
            manifest(manifests)
        else:
            write_tenant(manifests, name, domain)
    port = port or free_port()
    metrics_port = free_port()
    log = tmp / f"edge-{port}-{secrets.token_hex(2)}.log"
    command = [
        sys.executable,
        "-m",
        "sipedge",
        "serve",
        "--listen",
        f"udp:127.0.0.1:{port}",
        "--listen",
        f"tcp:127.0.0.1:{port}",
        *(() if snapshots else ("--manifests", str(manifests))),
        "--metrics-port",
        str(metrics_port),
        "--workers",
        str(workers),
        *extra_args,
    ]
    if redis or snapshots:
        command += ["--redis", REDIS_URL]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sink, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 15
    ready, seen = 0, b""
    fd = process.stdout.fileno()
    while time.monotonic() < deadline:
        # Wait for output at most until the deadline (read from the descriptor, so no
        # line hides in a buffer): a worker that died at start, its port taken meanwhile
        # by another process, leaves the supervisor up but silent.
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if readable else b""
        if not chunk:
            if not readable or process.poll() is not None:
                break
            continue
        seen += chunk
        ready = seen.split(b"\n").count(b"READY")
        if ready >= workers:  # every worker shares the port
            return EdgeProc(port, domain, name, process, log, metrics_port)
    process.kill()
    raise AssertionError(f"edge did not start:\n{log.read_text()[-3000:]}")


def stop_edge(edge: EdgeProc) -> int:
    if edge.process.stdout is not None:
        edge.process.stdout.close()
    if edge.alive():
        edge.process.send_signal(signal.SIGTERM)
        try:
            return edge.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            edge.process.kill()
            raise AssertionError("edge did not stop on SIGTERM") from None
    return edge.process.returncode


EdgeFactory = Callable[..., EdgeProc]


@pytest.fixture
def edge_factory(tmp_path: Path) -> Iterator[EdgeFactory]:
    """Start edges with ``edge_factory(redis=..., port=..., tenant=...)``; all stop after."""
    started: list[EdgeProc] = []

    def make(**kwargs: object) -> EdgeProc:
        running = start_edge(tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            stop_edge(running)


@pytest.fixture
def edge(edge_factory: EdgeFactory) -> EdgeProc:
    return edge_factory()


@pytest.fixture(scope="module")
def module_edge_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeFactory]:
    """Like ``edge_factory``, for edges shared by a module's tests."""
    started: list[EdgeProc] = []
    folder = tmp_path_factory.mktemp("edges")

    def make(**kwargs: object) -> EdgeProc:
        running = start_edge(folder, **kwargs)  # type: ignore[arg-type]
        started.append(running)
        return running

    try:
        yield make
    finally:
        for running in started:
            stop_edge(running)


def _module_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProc]:
    running = start_edge(tmp_path_factory.mktemp("edge"))
    try:
        yield running
    finally:
        stop_edge(running)


@pytest.fixture(scope="module")
def module_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProc]:
    """One edge for a module of tests that each send it different messages."""
    yield from _module_edge(tmp_path_factory)


@pytest.fixture(scope="module")
def module_edge_tcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProc]:
    """A second one, so the same message over TCP is not a retransmission of the UDP one."""
    yield from _module_edge(tmp_path_factory)


@pytest.fixture
def port_factory() -> Callable[[], int]:
    return free_port
