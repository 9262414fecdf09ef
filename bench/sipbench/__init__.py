"""Shared tooling to test and benchmark SIP servers with real peers (SIPp, Kamailio).

Used by ``bench/register.py``, ``bench/calls.py`` and ``tests/bench_support/`` (which put
``bench/`` on ``sys.path``). Modules:

* :mod:`sipbench.sipp`: the users (SIPp CSV, cloudpbx tenant manifest) and SIPp runs;
* :mod:`sipbench.kamailio`: SIP server processes (Kamailio and the edge), free ports, the
  OPTIONS readiness probe, Redis cleanup;
* :mod:`sipbench.edge`: how the benches start the cloudpbx edge and check its tenant;
* :mod:`sipbench.stats`: SIPp's statistics file and the benches' RESULT line.
"""

from .kamailio import (
    PROXY_CFG,
    REGISTRAR_CFG,
    SipServer,
    SipServerError,
    check_config,
    clear_tenant_keys,
    command_server,
    free_udp_port,
    kamailio,
    options_ping,
    wait_for_sip,
)
from .sipp import (
    BENCH_DOMAIN,
    BENCH_SECRET,
    BENCH_TENANT,
    FIRST_USER,
    SCENARIO_DIR,
    SippOptions,
    SippProcess,
    SippResult,
    User,
    call_options,
    make_users,
    password_for,
    register_options,
    run_sipp,
    scenario,
    tenant_documents,
    write_tenant_manifest,
    write_users_csv,
)
from .stats import SippStats, read_stat_file, result_line

__all__ = [
    "BENCH_DOMAIN",
    "BENCH_SECRET",
    "BENCH_TENANT",
    "FIRST_USER",
    "PROXY_CFG",
    "REGISTRAR_CFG",
    "SCENARIO_DIR",
    "SipServer",
    "SipServerError",
    "SippOptions",
    "SippProcess",
    "SippResult",
    "SippStats",
    "User",
    "call_options",
    "check_config",
    "clear_tenant_keys",
    "command_server",
    "free_udp_port",
    "kamailio",
    "make_users",
    "options_ping",
    "password_for",
    "read_stat_file",
    "register_options",
    "result_line",
    "run_sipp",
    "scenario",
    "tenant_documents",
    "wait_for_sip",
    "write_tenant_manifest",
    "write_users_csv",
]
