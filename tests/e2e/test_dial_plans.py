"""Dial plans on a running edge (issue 6.5): a DialPlan written into the manifest folder is
served without a restart; a broken one is refused with a message naming the plan, the
rule and the field, and the edge keeps serving the last good plans."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

from .conftest import EdgeFactory, EdgeProc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench.scripted import ScriptedPhone

PASSWORD_2001 = "pw-2001-test"


def plan(tenant: str, match: str) -> str:
    return textwrap.dedent(f"""
        apiVersion: cloudpbx.io/v1
        kind: DialPlan
        metadata: {{name: barring}}
        spec:
          tenant: {tenant}
          rules:
            - name: premium
              match: {match}
              route: {{reject: {{status: 403, reason: Premium Numbers Barred}}}}
            - name: short
              match: {{pattern: "9XXXX"}}
              strip: 1
              route: {{extension: true}}
    """)


def call(edge: EdgeProc, number: str) -> tuple[int, str]:
    phone = ScriptedPhone("2001", edge.domain, PASSWORD_2001)
    try:
        phone.invite(edge.port, number)
        final = phone.final()
        return final.status, final.reason
    finally:
        phone.close()


def wait_for(edge: EdgeProc, number: str, expected: tuple[int, str]) -> None:
    deadline = time.monotonic() + 10
    seen = call(edge, number)
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        seen = call(edge, number)
    assert seen == expected


def test_plans_edited_in_the_folder_are_served_and_a_broken_one_changes_nothing(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    edge = edge_factory()
    folder = tmp_path / "manifests" / edge.tenant
    assert call(edge, "09001234") == (404, "Not Found")  # no plan: no such extension

    (folder / "plans.yaml").write_text(plan(edge.tenant, '{prefix: "0900"}'), encoding="utf-8")
    wait_for(edge, "09001234", (403, "Premium Numbers Barred"))
    # 9XXXX strips the 9: 92002 → extension 2002, registered nowhere (480, not 404)
    assert call(edge, "92002") == (480, "Temporarily Unavailable")

    (folder / "plans.yaml").write_text(plan(edge.tenant, '{regex: "09(00"}'), encoding="utf-8")
    deadline = time.monotonic() + 10
    errors: list[str] = []
    while not errors and time.monotonic() < deadline:
        time.sleep(0.2)
        errors = [
            entry["msg"]
            for line in edge.log.read_text().splitlines()
            if (entry := json.loads(line))["level"] == "error"
        ]
    assert errors, "the broken plan was not reported"
    assert "DialPlan barring, rule 'premium'" in errors[0]
    assert "regex" in errors[0]
    assert edge.alive()
    assert call(edge, "09001234") == (403, "Premium Numbers Barred")  # the last good plan
