"""The operator's API client logs in again on a 401: a pod's service-account token is
rotated by the kubelet, so the one read at start runs out while the operator runs."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
from aiohttp import web

from cloudpbx_operator.kube import Kube

from ..k8s.tools import write_kubeconfig


@pytest.mark.asyncio
async def test_a_401_logs_in_again_and_retries_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def tenant(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        seen.append(token)
        if token != "Bearer rotated":
            return web.Response(status=401, text="token expired")
        return web.json_response({"kind": "Tenant", "metadata": {"name": "acme"}})

    app = web.Application()
    app.router.add_get("/apis/cloudpbx.io/v1/namespaces/pbx/tenants/acme", tenant)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}", "pbx")
    stale = kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token="expired")
    config.write_text(config.read_text().replace("token: test", "token: rotated"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    kube = Kube(stale, kopf.OperatorSettings())
    try:
        assert await kube.get("pbx", "tenants", "acme") == {
            "kind": "Tenant", "metadata": {"name": "acme"},
        }  # fmt: skip
    finally:
        await kube.close()
        await runner.cleanup()
    assert seen == ["Bearer expired", "Bearer rotated"]
