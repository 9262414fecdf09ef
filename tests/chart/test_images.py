"""The images and the development loop: docker/*.Dockerfile pass hadolint, run as a
non-root user from pinned (never ``latest``) bases and install the wheel without dev
extras; skaffold.yaml builds exactly those images and hands them to the chart through
values the chart declares. Nothing is built here (no Docker daemon, no registry).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .k8s_tools import CHART, ROOT, helm, kubectl, run

DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
COMPONENTS = ["edge", "operator", "portal", "relay"]


def test_one_dockerfile_per_component() -> None:
    assert [path.name.removesuffix(".Dockerfile") for path in DOCKERFILES] == COMPONENTS


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = run([hadolint, "--failure-threshold", "info", "--no-color", dockerfile])
    assert result.returncode == 0, result.stdout + result.stderr


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_runs_as_a_non_root_user_from_pinned_bases(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    users = [rest for word, rest in instructions if word == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    stages = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    for image in stages:
        assert re.fullmatch(r"python:3\.11(-[a-z]+)*", image), image  # a tag, never latest
    assert stages[-1] == "python:3.11-slim-bookworm"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_installs_the_wheel_without_dev_extras(dockerfile: Path) -> None:
    runs = " ".join(rest for word, rest in _instructions(dockerfile) if word == "RUN")
    assert "pip wheel" in runs
    assert "pip install --no-cache-dir /wheels/cloudpbx-*.whl" in runs
    assert "[dev]" not in runs
    assert " -e " not in runs


def test_the_edge_and_relay_ship_the_compiled_wheel() -> None:
    for name in ("edge", "relay"):
        text = (ROOT / "docker" / f"{name}.Dockerfile").read_text(encoding="utf-8")
        assert "HATCH_BUILD_HOOKS_ENABLE=1 pip wheel" in text


def test_the_build_context_holds_what_the_wheel_needs() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {
        source
        for path in DOCKERFILES
        for word, rest in _instructions(path)
        if word == "COPY" and "--from" not in rest
        for source in rest.split()[:-1]
    }
    assert copied <= allowed


# --- skaffold.yaml -------------------------------------------------------------------------------


def _skaffold() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    return config


def _has_value(path: str) -> bool:
    node: Any = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def test_skaffold_builds_the_four_images() -> None:
    config = _skaffold()
    assert (config["apiVersion"], config["kind"]) == ("skaffold/v4beta11", "Config")
    artifacts = config["build"]["artifacts"]
    assert sorted(artifact["image"] for artifact in artifacts) == [
        f"cloudpbx/{name}" for name in COMPONENTS
    ]
    for artifact in artifacts:
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()


def test_skaffold_deploys_the_chart_with_the_built_images() -> None:
    config = _skaffold()
    [release] = config["manifests"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    templates = release["setValueTemplates"]
    for name in COMPONENTS:
        key = name.replace("-", "_")
        assert templates[f"{name}.image.repository"] == f"{{{{.IMAGE_REPO_cloudpbx_{key}}}}}"
        assert templates[f"{name}.image.tag"] == f"{{{{.IMAGE_TAG_cloudpbx_{key}}}}}"
    for path in [*templates, *release.get("setValues", {})]:
        assert _has_value(path), f"{path} is not a value of the chart"
    assert "helm" in config["deploy"]


def test_skaffold_values_render() -> None:
    release = _skaffold()["manifests"]["helm"]["releases"][0]
    sets = [f"{key}={value}" for key, value in release["setValues"].items()]
    sets += [f"{name}.image.repository=example.test/cloudpbx/{name}" for name in COMPONENTS]
    sets += [f"{name}.image.tag=v1-dirty" for name in COMPONENTS]
    result = run([helm(), "template", "cloudpbx", CHART, *(f"--set={item}" for item in sets)])
    assert result.returncode == 0, result.stderr
    assert "image: example.test/cloudpbx/edge:v1-dirty" in result.stdout  # platform.yaml


# --- the tools ---------------------------------------------------------------------------------


def test_the_tools_are_the_pinned_versions() -> None:
    assert run([helm(), "version", "--short"]).stdout.startswith("v4.1.4")
    assert "v1.34.5" in run([kubectl(), "version", "--client"]).stdout
