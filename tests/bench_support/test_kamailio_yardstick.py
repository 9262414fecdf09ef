"""The SIPp scenarios of tests/e2e/sipp/ proven against Kamailio, before the edge uses them.

Each test starts Kamailio with a yardstick config of bench/kamailio/ on a free loopback port
(registrar.cfg: REGISTER with a 401 digest challenge; proxy.cfg: a record-routing stateful
proxy that challenges REGISTER with 401 and INVITE with 407), runs the scenarios against it
and checks SIPp's exit status and statistics file: the expected number of successful calls,
no failed call, no unexpected message. Negative tests show that the checks inside the
scenarios bite (a wrong password fails a registration, a call to nobody fails).

Needs the Debian packages sip-tester (sipp) and kamailio; skipped when they are missing.
"""

from __future__ import annotations

import re
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pytest

from sipbench import (
    BENCH_DOMAIN,
    PROXY_CFG,
    REGISTRAR_CFG,
    SCENARIO_DIR,
    SippOptions,
    SippProcess,
    SippResult,
    SipServer,
    User,
    call_options,
    check_config,
    free_udp_port,
    kamailio,
    make_users,
    register_options,
    result_line,
    run_sipp,
    scenario,
    write_users_csv,
)
from sipbench.stats import parse_stat_rows, stats_from_row

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None or shutil.which("kamailio") is None,
    reason="needs the Debian packages sip-tester and kamailio",
)

CALLEE, CALLER, OTHER = make_users(3, first=200_000)


def assert_calls(result: SippResult, successful: int = 1) -> None:
    """SIPp ended with status 0 and exactly ``successful`` good calls, none failed."""
    assert result.ok, result.describe()
    assert result.stats is not None, result.describe()
    assert result.stats.successful == successful, result.describe()
    assert result.stats.failed == 0, result.describe()
    assert result.stats.out_of_call == 0, result.describe()


def csv_of(tmp_path: Path, *users: User) -> Path:
    """A one-off injection file with ``users``."""
    return write_users_csv(tmp_path / f"{'-'.join(u.number for u in users)}.csv", users)


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[SipServer]:
    """Kamailio running registrar.cfg on a free port."""
    with kamailio(REGISTRAR_CFG, workdir=tmp_path, shm_mb=32, pkg_mb=8) as server:
        yield server


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[SipServer]:
    """Kamailio running proxy.cfg on a free port."""
    with kamailio(PROXY_CFG, workdir=tmp_path, shm_mb=32, pkg_mb=8) as server:
        yield server


@contextmanager
def phone(
    server: SipServer, user: User, name: str, tmp_path: Path, *, hold_ms: int = 200
) -> Iterator[SippProcess]:
    """A registered SIPp phone running scenario ``name`` for one call.

    register.xml binds the user's contact from a port, then the UAS scenario listens on that
    same port (SIPp server mode answers new INVITEs; it cannot also send the REGISTER).
    """
    port = free_udp_port()
    registered = run_sipp(
        register_options(
            server.address,
            csv_of(tmp_path, user),
            local_port=port,
            calls=1,
            trace_messages=True,
            name=f"{name}-register",
        ),
        tmp_path,
        timeout_s=20,
    )
    assert_calls(registered)
    options = SippOptions(
        scenario=scenario(name),
        local_port=port,
        calls=1,
        duration_ms=hold_ms,
        trace_messages=True,
    )
    with SippProcess(options, tmp_path) as uas:
        uas.wait_listening()
        yield uas


class FakeRegistrar:
    """A tiny UDP registrar in a thread: 401 first, then 200 with the Contact lines that
    ``contacts(our_contact_uri)`` returns. No digest check: it exists to feed register.xml
    and unregister.xml the shapes of 200 other registrars send (one Contact header per
    binding, compact ``m:``, a missing binding), which Kamailio never does."""

    def __init__(self, contacts: Callable[[str], list[str]]) -> None:
        self.contacts = contacts
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            request = data.decode()
            head = {
                name: line
                for line in request.split("\r\n")[1:]
                for name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact")
                if line.startswith(name + ":")
            }
            if "\r\nAuthorization:" not in request:
                status = ["SIP/2.0 401 Unauthorized"]
                extra = [
                    'WWW-Authenticate: Digest realm="bench.cloudpbx.test", nonce="n1", qop="auth"'
                ]
            else:
                uri = re.search(r"<(sip:[^>]+)>", head["Contact"])
                assert uri is not None
                status, extra = ["SIP/2.0 200 OK"], self.contacts(uri.group(1))
            lines = [*status, head["Via"], head["From"], head["To"] + ";tag=fake", head["Call-ID"]]
            lines += [head["CSeq"], *extra, "Content-Length: 0", "", ""]
            self.sock.sendto("\r\n".join(lines).encode(), peer)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


OTHER_BINDING = "<sip:999@127.0.0.1:9;transport=udp>;expires=100"


@pytest.mark.parametrize(
    ("name", "contacts", "succeeds"),
    [
        (
            "register",
            lambda uri: [f"Contact: {OTHER_BINDING}", f"Contact: <{uri}>;expires=3600"],
            True,
        ),
        ("register", lambda uri: [f"m: <{uri}>;Expires=60, {OTHER_BINDING}"], True),
        ("register", lambda uri: [f"Contact: <{uri.split(';')[0]}>;expires=60"], True),
        ("register", lambda uri: [f"Contact: {OTHER_BINDING}"], False),
        ("register", lambda uri: [f"Contact: <{uri}>", f"Contact: {OTHER_BINDING}"], False),
        ("unregister", lambda uri: [], True),
        ("unregister", lambda uri: [f"Contact: {OTHER_BINDING}"], True),
        (
            "unregister",
            lambda uri: [f"Contact: {OTHER_BINDING}", f"Contact: <{uri}>;expires=9"],
            False,
        ),
    ],
    ids=[
        "separate-headers",
        "compact-form",
        "uri-parameters-dropped",
        "ours-missing",
        "ours-without-expires",
        "no-binding-left",
        "other-binding-left",
        "ours-left",
    ],
)
def test_registration_checks_read_every_contact_header(
    name: str, contacts: Callable[[str], list[str]], succeeds: bool, tmp_path: Path
) -> None:
    registrar = FakeRegistrar(contacts)
    try:
        options = register_options(
            registrar.address,
            csv_of(tmp_path, CALLER),
            scenario=scenario(name),
            calls=1,
            recv_timeout_ms=3000,
            trace_messages=True,
        )
        result = run_sipp(options, tmp_path, timeout_s=20)
    finally:
        registrar.close()
    if succeeds:
        assert_calls(result)
    else:
        assert result.returncode == 1, result.describe()
        assert result.stats is not None
        assert result.stats.failed == 1, result.describe()
        assert set(result.stats.failures) <= {
            "FailedRegexpDoesntMatch",
            "FailedRegexpShouldntMatch",
        }, result.describe()


def test_lean_registration_skips_only_the_contact_check(tmp_path: Path) -> None:
    """-set lean 1 (benchmarks) accepts a 200 without our binding; the flow is unchanged."""
    registrar = FakeRegistrar(lambda uri: [f"Contact: {OTHER_BINDING}"])
    try:
        options = register_options(
            registrar.address, csv_of(tmp_path, CALLER), calls=1, lean=True, trace_messages=True
        )
        result = run_sipp(options, tmp_path, timeout_s=20)
    finally:
        registrar.close()
    assert_calls(result)
    messages = (tmp_path / "register.messages.log").read_text()
    assert messages.count("Authorization: Digest") == 1


def test_yardstick_configs_pass_kamailio_check() -> None:
    for cfg in (REGISTRAR_CFG, PROXY_CFG):
        output = check_config(cfg)
        assert "Listening on" in output


def one_registration(
    server: SipServer, users: Path, port: int, name: str = "register", label: str | None = None
) -> SippOptions:
    """register.xml or unregister.xml, once, from ``port``, every message logged."""
    return register_options(
        server.address,
        users,
        scenario=scenario(name),
        local_port=port,
        calls=1,
        trace_messages=True,
        name=label,
    )


def test_register_then_unregister(registrar: SipServer, tmp_path: Path) -> None:
    users = csv_of(tmp_path, CALLER)
    port = free_udp_port()
    assert_calls(run_sipp(one_registration(registrar, users, port), tmp_path))
    # Again from the same contact: a refresh, still one binding with an expires.
    refresh = one_registration(registrar, users, port, label="refresh")
    assert_calls(run_sipp(refresh, tmp_path))
    unregister = one_registration(registrar, users, port, "unregister")
    assert_calls(run_sipp(unregister, tmp_path))


def test_register_many_users_in_one_run(registrar: SipServer, tmp_path: Path) -> None:
    users = write_users_csv(tmp_path / "users.csv", make_users(50, first=300_000))
    options = register_options(registrar.address, users, calls=50, rate=100, limit=10)
    assert_calls(run_sipp(options, tmp_path), successful=50)


def test_register_with_a_wrong_password_fails(registrar: SipServer, tmp_path: Path) -> None:
    wrong = User(CALLER.number, "not-" + CALLER.password, BENCH_DOMAIN)
    options = register_options(
        registrar.address, csv_of(tmp_path, wrong), calls=1, recv_timeout_ms=3000
    )
    result = run_sipp(options, tmp_path)
    assert result.returncode == 1, result.describe()
    assert result.stats is not None
    assert (result.stats.successful, result.stats.failed) == (0, 1), result.describe()


def test_unregister_leaves_no_binding_then_a_call_finds_nobody(
    proxy: SipServer, tmp_path: Path
) -> None:
    callee = csv_of(tmp_path, CALLEE)
    port = free_udp_port()
    assert_calls(run_sipp(one_registration(proxy, callee, port), tmp_path))
    assert_calls(run_sipp(one_registration(proxy, callee, port, "unregister"), tmp_path))
    # The proxy answers 404 now: the caller's scenario expects a 200 and fails.
    call = call_options(
        "uac", proxy.address, csv_of(tmp_path, CALLER), CALLEE.number, calls=1, recv_timeout_ms=3000
    )
    result = run_sipp(call, tmp_path)
    assert result.returncode == 1, result.describe()
    assert result.stats is not None
    assert result.stats.failed == 1, result.describe()


def test_answered_call_caller_hangs_up(proxy: SipServer, tmp_path: Path) -> None:
    with phone(proxy, CALLEE, "uas", tmp_path) as uas:
        caller = call_options(
            "uac",
            proxy.address,
            csv_of(tmp_path, CALLER),
            CALLEE.number,
            calls=1,
            duration_ms=300,
            trace_messages=True,
        )
        assert_calls(run_sipp(caller, tmp_path, timeout_s=30))
        assert_calls(uas.wait(timeout_s=15))
    # The caller's BYE went along the route set (a Route header to the proxy).
    messages = (tmp_path / "uac.messages.log").read_text()
    assert f"Route: <sip:{proxy.address};lr>" in messages


def test_answered_call_callee_hangs_up(proxy: SipServer, tmp_path: Path) -> None:
    with phone(proxy, CALLEE, "uas_bye", tmp_path, hold_ms=300) as uas:
        caller = call_options(
            "uac_remote_bye",
            proxy.address,
            csv_of(tmp_path, CALLER),
            CALLEE.number,
            calls=1,
            trace_messages=True,
        )
        assert_calls(run_sipp(caller, tmp_path, timeout_s=30))
        assert_calls(uas.wait(timeout_s=15))
    # The callee's BYE went to the caller's Contact along the Record-Route set.
    messages = (tmp_path / "uas_bye.messages.log").read_text()
    assert "BYE sip:" + CALLER.number + "@127.0.0.1:" in messages
    assert f"Route: <sip:{proxy.address};lr>" in messages


def test_cancelled_call(proxy: SipServer, tmp_path: Path) -> None:
    with phone(proxy, CALLEE, "uas_cancel", tmp_path) as uas:
        caller = call_options(
            "uac_cancel",
            proxy.address,
            csv_of(tmp_path, CALLER),
            CALLEE.number,
            calls=1,
            duration_ms=200,
            trace_messages=True,
        )
        assert_calls(run_sipp(caller, tmp_path, timeout_s=30))
        assert_calls(uas.wait(timeout_s=15))
    messages = (tmp_path / "uac_cancel.messages.log").read_text()
    assert "SIP/2.0 487" in messages


def test_busy_call(proxy: SipServer, tmp_path: Path) -> None:
    with phone(proxy, CALLEE, "uas_busy", tmp_path) as uas:
        caller = call_options(
            "uac_busy",
            proxy.address,
            csv_of(tmp_path, OTHER),
            CALLEE.number,
            calls=1,
            trace_messages=True,
        )
        assert_calls(run_sipp(caller, tmp_path, timeout_s=30))
        assert_calls(uas.wait(timeout_s=15))


def test_several_calls_at_a_rate(proxy: SipServer, tmp_path: Path) -> None:
    callers = write_users_csv(tmp_path / "callers.csv", make_users(20, first=400_000))
    port = free_udp_port()
    assert_calls(
        run_sipp(
            register_options(proxy.address, csv_of(tmp_path, CALLEE), local_port=port, calls=1),
            tmp_path,
        )
    )
    with SippProcess(
        SippOptions(scenario=scenario("uas"), local_port=port, calls=20), tmp_path
    ) as uas:
        uas.wait_listening()
        caller = call_options(
            "uac", proxy.address, callers, CALLEE.number, calls=20, rate=20, duration_ms=200
        )
        assert_calls(run_sipp(caller, tmp_path, timeout_s=30), successful=20)
        assert_calls(uas.wait(timeout_s=15), successful=20)


def test_static_injection_files_match_the_generator(tmp_path: Path) -> None:
    """tests/e2e/sipp/*.csv are what make_users/write_users_csv produce (100000..100009)."""
    users = make_users(10)
    expected = {
        "users.csv": users,
        "callee.csv": users[:1],
        "callers.csv": users[1:],
    }
    for name, wanted in expected.items():
        fresh = write_users_csv(tmp_path / name, wanted).read_text()
        assert (SCENARIO_DIR / name).read_text() == fresh, name


def test_statistics_and_result_line() -> None:
    header = "StartTime;CurrentTime;SuccessfulCall(C);FailedCall(C);FailedMaxUDPRetrans(C);"
    header += "Retransmissions(C);OutOfCallMsgs(C);CallRate(C);ResponseTime1(C);"
    row = "2026-01-01\t00:00:00.000000\t100.0;2026-01-01\t00:00:02.500000\t102.5;"
    row += "50;2;2;7;1;20.4;00:00:00:012500;"
    rows = parse_stat_rows(header + "\n" + row + "\n")
    stats = stats_from_row(rows[-1])
    assert (stats.successful, stats.failed, stats.retransmissions, stats.out_of_call) == (
        50,
        2,
        7,
        1,
    )
    assert stats.failures == {"FailedMaxUDPRetrans": 2}
    assert stats.elapsed_s == pytest.approx(2.5)
    assert stats.successful_rate == pytest.approx(20.0)
    assert stats.response_time_ms == pytest.approx(12.5)
    assert (
        result_line("register", 500.0, 2000.0, failed=0, retrans=3)
        == "RESULT register cloudpbx=500/s kamailio=2000/s failed=0 retrans=3 ratio=0.25"
    )
    assert (
        result_line("calls", None, 800.0, failed=None, retrans=None)
        == "RESULT calls cloudpbx=n/a kamailio=800/s failed=n/a retrans=n/a ratio=n/a"
    )
