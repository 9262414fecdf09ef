"""The cloudpbx edge as a benchmark target: how it is started and the tenant it serves."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from .sipp import BENCH_SECRET, make_users, tenant_documents

#: The build the benches measure: the wheel as it ships, the edge compiled by mypyc,
#: unpacked by ``./pbx build`` (the editable .venv runs the same source uncompiled).
COMPILED_TREE = "build/compiled"
#: How the edge is started; {port}, {manifests} (a folder) and {redis} (a URL) are filled in.
#: Relative paths are relative to the repository root (the command's working directory).
CLOUDPBX_CMD = (
    f"env PYTHONPATH={COMPILED_TREE} .venv/bin/python -m sipedge serve"
    " --listen udp:127.0.0.1:{port} --manifests {manifests} --redis {redis} --workers 2"
)
#: The benches' Redis database (not the tests' /15): cleared of the bench tenant per run.
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"


def cloudpbx_command(template: str, *, port: int, manifests: Path, redis: str) -> list[str]:
    """The edge's argument vector: ``template`` with its placeholders filled in."""
    return shlex.split(
        template.format(port=port, manifests=shlex.quote(str(manifests)), redis=redis)
    )


def prepare_build(template: str) -> str:
    """Build the compiled tree when ``template`` runs from it; what is measured, in words."""
    if COMPILED_TREE not in template:
        return "the command given"
    subprocess.run(["./pbx", "build"], check=True)
    return f"the compiled wheel ({COMPILED_TREE}, the edge and relay built by mypyc)"


def check_manifest(users_count: int, first: int) -> None:
    """Compiles the generated tenant with the platform's own compiler (fails early, clearly)."""
    from contracts.manifest import compile_tenant

    secret, tenant = tenant_documents(make_users(users_count, first=first))
    compile_tenant(tenant, {BENCH_SECRET: secret["stringData"]})
