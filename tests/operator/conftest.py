"""The operator as it runs in a pod: ``python -m cloudpbx_operator`` in a process of its
own, against the Kubernetes API emulator (:mod:`tests.k8s.emulator`), the real Redis
(``CLOUDPBX_TEST_REDIS_URL``) and the real Postgres (``CLOUDPBX_TEST_POSTGRES_DSN``, a
schema per test, dropped afterwards). Objects arrive by ``kubectl apply``.

Each test gets its own emulator, namespace, tenant name and hosts, so tests share nothing
through Redis's global domain index. A process can be SIGKILLed and started again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis
import yaml

from ..k8s.emulator import Cluster, running_cluster
from ..k8s.tools import kubectl_path, write_kubeconfig

POSTGRES_DSN = os.environ.get(
    "CLOUDPBX_TEST_POSTGRES_DSN", "postgresql://cloudpbx:cloudpbx@127.0.0.1:5432/cloudpbx_test"
)
REDIS_URL = os.environ.get("CLOUDPBX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def crd(kind: str, plural: str) -> dict[str, Any]:
    """The least CRD that makes ``kind`` servable (the chart's CRDs are the real ones)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.cloudpbx.io"},
        "spec": {
            "group": "cloudpbx.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


CRDS = [crd("Tenant", "tenants"), crd("Trunk", "trunks"), crd("DialPlan", "dialplans")]
#: The chart's platform configuration (default values, release r1) and its ConfigMap's name.
PLATFORM_FILE = Path(__file__).parent / "data" / "platform.yaml"
PLATFORM_CONFIGMAP = "r1-cloudpbx-platform"


class Operator:
    """One operator process; its output goes to ``log``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloudpbx_operator"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connections_to(self, port: int) -> int:
        """The process's established TCP connections to ``port`` (from /proc: its socket
        descriptors, found in the kernel's TCP tables)."""
        assert self.process is not None
        proc = Path(f"/proc/{self.process.pid}")
        sockets = set()
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    sockets.add(target[len("socket:[") : -1])
        count = 0
        for table in ("tcp", "tcp6"):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                established = fields[3] == "01"
                count += remote_port == port and established and fields[9] in sockets
        return count


#: Extension 1001's password, in the Secret :func:`tenant_yaml` writes.
ALICE_PASSWORD = "alice-secret-1001"
#: A prepaid plan in euros, the billing :func:`tenant_yaml` writes unless told otherwise.
PREPAID = "{plan: prepaid, currency: EUR}"


def tenant_yaml(
    name: str,
    domain: str,
    *,
    billing: str | None = PREPAID,
    limits: str = "",
    carol: bool = False,
) -> str:
    """A Secret and a Tenant: 1001's password in the Secret (beside the trunk
    ``carrier``'s), 1002 (and with ``carol`` 1003) with none, for the operator to
    generate. ``billing`` None: the default plan (postpaid)."""
    lines = [
        "apiVersion: v1",
        "kind: Secret",
        "metadata: {name: acme-secrets}",
        f"stringData: {{alice: {ALICE_PASSWORD}, carrier: carrier-secret}}",
        "---",
        "apiVersion: cloudpbx.io/v1",
        "kind: Tenant",
        f"metadata: {{name: {name}}}",
        "spec:",
        f"  domain: {domain}",
        *([f"  billing: {billing}"] if billing is not None else []),
        *([f"  limits: {limits}"] if limits else []),
        "  extensions:",
        '    - {number: "1001", passwordSecretRef: {name: acme-secrets, key: alice}}',
        '    - {number: "1002", displayName: Bob}',
        *(['    - {number: "1003", displayName: Carol}'] if carol else []),
    ]
    return "\n".join(lines) + "\n"


class Lab:
    """The emulator, kubectl, the stores and the operator of one test."""

    def __init__(self, cluster: Cluster, url: str, tmp_path: Path, schema: str) -> None:
        self.cluster = cluster
        self.namespace = f"t{uuid.uuid4().hex[:8]}"
        self.tenant = f"acme-{uuid.uuid4().hex[:6]}"
        self.domain = f"{self.tenant}.cloudpbx.test"
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, self.namespace)
        self.schema = schema
        self.billing_url = f"{POSTGRES_DSN}?search_path={schema}"
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.tmp_path = tmp_path
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            CLOUDPBX_REDIS_URL=REDIS_URL,
            CLOUDPBX_BILLING_URL=self.billing_url,
            CLOUDPBX_NAMESPACE=self.namespace,
            CLOUDPBX_TRUNK_STATUS_INTERVAL_S="0.5",
        )
        self.operator = Operator(env, tmp_path / "operator.log")
        #: Further operator processes (:meth:`replica`), stopped at the end as well.
        self.replicas: list[Operator] = []
        #: Tenant names and domains whose keys Redis is cleaned of at the end.
        self.tenants = [(self.tenant, self.domain)]

    def replica(self, pod: str) -> Operator:
        """Another operator process with :attr:`operator`'s environment as it is now, as
        the pod ``pod`` of the chart's Deployment."""
        replica = Operator(
            dict(self.operator.env, CLOUDPBX_POD_NAME=pod), self.tmp_path / f"{pod}.log"
        )
        self.replicas.append(replica)
        return replica

    def another_tenant(self) -> tuple[str, str]:
        """A further tenant's name and domain, for this test only."""
        tenant = f"acme-{uuid.uuid4().hex[:6]}"
        self.tenants.append((tenant, f"{tenant}.cloudpbx.test"))
        return self.tenants[-1]

    def use_platform(self, namespace: str | None = None) -> dict[str, Any]:
        """Gives the operator the chart's platform configuration, for ``namespace`` (the
        test's by default; its Tenants are served), as the chart does: the file, and the
        ConfigMap it is mounted from (returned: it owns the workloads)."""
        namespace = namespace or self.namespace
        platform = yaml.safe_load(PLATFORM_FILE.read_text(encoding="utf-8"))
        platform |= {"namespace": namespace, "tenantNamespaces": [namespace]}
        text = yaml.safe_dump(platform)
        (self.tmp_path / "platform.yaml").write_text(text, encoding="utf-8")
        self.operator.env["CLOUDPBX_PLATFORM"] = str(self.tmp_path / "platform.yaml")
        self.operator.env["CLOUDPBX_PLATFORM_CONFIGMAP"] = PLATFORM_CONFIGMAP
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"platform.yaml": text},
                "metadata": {"name": PLATFORM_CONFIGMAP, "namespace": namespace}}  # fmt: skip
        created: dict[str, Any] = self.cluster.call(lambda: self.cluster.create_object(body))
        return created

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(kubectl_path()), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, KUBECONFIG=str(self.kubeconfig)),
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def apply(self, yaml_text: str) -> str:
        return self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml_text)

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        group = "" if plural == "secrets" else "cloudpbx.io"
        return self.cluster.get_object(plural, namespace or self.namespace, name, group)

    def get_workload(self, plural: str, name: str) -> dict[str, Any] | None:
        """A Deployment, DaemonSet, Service or PodDisruptionBudget in the test's namespace."""
        group = {"services": ""}.get(
            plural, "policy" if plural == "poddisruptionbudgets" else "apps"
        )
        return self.cluster.get_object(plural, self.namespace, name, group)

    def events(self, reason: str) -> list[dict[str, Any]]:
        """The Events with ``reason`` in the test's namespace."""
        found: list[dict[str, Any]] = self.cluster.call(
            lambda: [e for e in self.cluster.list_objects("events", self.namespace)
                     if e.get("reason") == reason]
        )  # fmt: skip
        return found

    def secret_values(self, name: str) -> dict[str, str]:
        secret = self.get("secrets", name) or {}
        data = secret.get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def snapshot(self) -> dict[str, Any] | None:
        from contracts.keys import snapshot_key

        raw = self.redis.get(snapshot_key(self.tenant))
        return None if raw is None else dict(json.loads(raw))

    def query(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            connection = await asyncpg.connect(
                POSTGRES_DSN, server_settings={"search_path": self.schema}
            )
            try:
                return list(await connection.fetch(sql, *args))
            finally:
                await connection.close()

        return asyncio.run(run())

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout_s: float = 15) -> T:
        """Polls ``probe`` until it gives something (not None, False or empty: the
        operator works in its own process, there is nothing to await), failing with the
        operator's log."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout_s} s\n{self.operator.output()[-6000:]}"
                )
            time.sleep(0.1)

    def ready(self, generation: int, name: str | None = None) -> dict[str, Any] | None:
        """The Tenant's (the test's, or ``name``) status once Ready=True for ``generation``."""
        tenant = self.get("tenants", name or self.tenant) or {}
        status = tenant.get("status") or {}
        ready = [c for c in status.get("conditions", []) if c.get("type") == "Ready"]
        if (
            status.get("observedGeneration") == generation
            and ready
            and ready[0]["status"] == "True"
        ):
            return dict(status)
        return None


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    schema = f"operator_test_{uuid.uuid4().hex}"

    async def schema_sql(sql: str) -> None:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(schema_sql(f"CREATE SCHEMA {schema}"))
    with running_cluster() as (cluster, url):
        for body in CRDS:
            cluster.call(functools.partial(cluster.create_object, body))
        made = Lab(cluster, url, tmp_path, schema)
        cluster.call(
            lambda: cluster.create_object(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": made.namespace}}
            )
        )
        try:
            yield made
        finally:
            for operator in (made.operator, *made.replicas):
                operator.stop()
            from contracts.keys import domain_index_key, snapshot_key

            for tenant, domain in made.tenants:
                made.redis.delete(snapshot_key(tenant))
                made.redis.hdel(domain_index_key(), domain)
            made.redis.close()
            asyncio.run(schema_sql(f"DROP SCHEMA {schema} CASCADE"))
