"""More than one operator replica, as the chart runs them: kopf's peering through the
chart's ClusterKopfPeering (the operator watches every namespace), a priority from each
pod's name. One replica reconciles, the other is paused; SIGKILLed (a lost node: it cannot
say it goes), the active one is taken for dead after its keep-alive's lifetime and the
other takes over; stopped, it says so and the other takes over at once.
"""

from __future__ import annotations

import time
from typing import Any

import yaml

from cloudpbx_operator.config import pod_priority

from .conftest import ROOT, Lab, Operator, tenant_yaml

PEERING = "r1-cloudpbx-operator"
PEERING_CRD = ROOT / "charts" / "cloudpbx" / "files" / "kopf" / "clusterkopfpeerings.kopf.dev.yaml"
LIFETIME_S = 5
PAUSED = "Pausing operations in favour of"
RESUMED = "Resuming operations after the pause"


def peers(lab: Lab) -> set[str]:
    """The replicas the peering object lists (kopf keeps one entry per live replica)."""
    peering = lab.cluster.get_object("clusterkopfpeerings", None, PEERING, "kopf.dev") or {}
    status: dict[str, Any] = peering.get("status") or {}
    return set(status)


def test_one_replica_reconciles_and_another_takes_over_when_it_is_killed(lab: Lab) -> None:
    lab.use_platform()
    crd = yaml.safe_load(PEERING_CRD.read_text(encoding="utf-8"))
    lab.cluster.call(lambda: lab.cluster.create_object(crd))
    lab.operator.env |= {
        "CLOUDPBX_PEERING": PEERING,
        "CLOUDPBX_PEERING_LIFETIME_S": str(LIFETIME_S),
    }
    # two pods of the Deployment; kopf favours the higher priority
    low, high = sorted(("r1-cloudpbx-operator-7c9d-a", "r1-cloudpbx-operator-7c9d-b"),
                       key=pod_priority)  # fmt: skip
    standby, active = lab.replica(low), lab.replica(high)

    # alone, the first one works (it created the peering object, missing until then)
    standby.start()
    wait(lab, "the first replica resumed", lambda: RESUMED in standby.output(), standby)
    assert f"created kopf's peering object {PEERING}" in standby.output()
    assert peers(lab) == {low}

    # the second one, of higher priority, makes it pause
    active.start()
    wait(lab, "the first replica paused", lambda: PAUSED in standby.output(), standby)
    assert peers(lab) == {low, high}
    paused_at = len(standby.output())

    lab.apply(tenant_yaml(lab.tenant, lab.domain))
    wait(lab, "Ready from the active replica", lambda: lab.ready(1), active)
    assert f"Tenant {lab.namespace}/{lab.tenant}: published" in active.output()
    assert lab.tenant not in standby.output()[paused_at:]  # paused: no handler ran

    # the active one dies without a word; the other takes over once its entry is stale
    active.kill()
    killed = time.monotonic()
    tenant, domain = lab.another_tenant()
    lab.apply(tenant_yaml(tenant, domain))
    wait(lab, "Ready after the takeover", lambda: lab.ready(1, tenant), standby, LIFETIME_S + 15)
    takeover_s = time.monotonic() - killed
    assert RESUMED in standby.output()[paused_at:]
    assert f"Tenant {lab.namespace}/{tenant}: published" in standby.output()
    assert LIFETIME_S - 1 < takeover_s < LIFETIME_S + 10, takeover_s
    print(f"\ntakeover: a new Tenant Ready {takeover_s:.2f} s after SIGKILL")  # noqa: T201 (-s)
    wait(lab, "the dead replica cleaned from the peering", lambda: peers(lab) == {low}, standby)

    # back (its pod restarted), it takes over again; stopped (SIGTERM), it takes its entry
    # out on the way, and the other resumes without waiting for a lifetime
    active.start()
    wait(lab, "paused again", lambda: standby.output().count(PAUSED) == 2, standby)
    stopped = time.monotonic()
    active.stop()
    wait(lab, "resumed at once", lambda: standby.output().count(RESUMED) == 3, standby)
    handover_s = time.monotonic() - stopped
    assert handover_s < LIFETIME_S - 1, handover_s
    print(f"handover: resumed {handover_s:.2f} s after SIGTERM")  # noqa: T201 (pytest -s)


def wait(lab: Lab, what: str, probe: Any, operator: Operator, timeout_s: float = 15) -> Any:
    """:meth:`Lab.wait_for` with ``operator``'s log in the failure."""
    try:
        return lab.wait_for(what, probe, timeout_s)
    except AssertionError as exc:
        log = operator.output()[-6000:]
        raise AssertionError(f"{exc}\n--- {operator.log.name}:\n{log}") from None


def test_watching_one_namespace_a_replica_peers_in_that_namespace(lab: Lab) -> None:
    """Without a platform the operator watches its own namespace, and kopf peers through a
    KopfPeering there, which the operator creates as well."""
    crd = yaml.safe_load(PEERING_CRD.read_text(encoding="utf-8"))
    names = {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"}
    crd["metadata"]["name"] = "kopfpeerings.kopf.dev"
    crd["spec"] |= {"scope": "Namespaced", "names": names}
    lab.cluster.call(lambda: lab.cluster.create_object(crd))
    lab.operator.env |= {"CLOUDPBX_PEERING": "cloudpbx", "CLOUDPBX_POD_NAME": "operator-0"}
    lab.operator.start()
    lab.apply(tenant_yaml(lab.tenant, lab.domain))
    lab.wait_for("Ready", lambda: lab.ready(1))
    peering = lab.cluster.get_object("kopfpeerings", lab.namespace, "cloudpbx", "kopf.dev")
    assert peering is not None
    assert set(peering["status"]) == {"operator-0"}
    assert peering["status"]["operator-0"]["priority"] == pod_priority("operator-0")
