"""The cloudpbx edge as a benchmark target: how it is started and the tenant it serves."""

from __future__ import annotations

import shlex
from pathlib import Path

from .sipp import BENCH_SECRET, make_users, tenant_documents

#: How the edge is started; {port}, {manifests} (a folder) and {redis} (a URL) are filled in.
#: Relative paths are relative to the repository root (the command's working directory).
CLOUDPBX_CMD = (
    ".venv/bin/python -m sipedge serve --listen udp:127.0.0.1:{port}"
    " --manifests {manifests} --redis {redis} --workers 2"
)
#: The benches' Redis database (not the tests' /15): cleared of the bench tenant per run.
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def cloudpbx_command(template: str, *, port: int, manifests: Path, redis: str) -> list[str]:
    """The edge's argument vector: ``template`` with its placeholders filled in."""
    return shlex.split(
        template.format(port=port, manifests=shlex.quote(str(manifests)), redis=redis)
    )


def check_manifest(users_count: int, first: int) -> None:
    """Compiles the generated tenant with the platform's own compiler (fails early, clearly)."""
    from contracts.manifest import compile_tenant

    secret, tenant = tenant_documents(make_users(users_count, first=first))
    compile_tenant(tenant, {BENCH_SECRET: secret["stringData"]})
