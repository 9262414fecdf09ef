"""The three PATCH formats the emulator takes: JSON patch (RFC 6902), JSON merge patch
(RFC 7386), and Kubernetes' strategic merge patch, taken as a merge patch once its
``$``-directives are dropped (kubectl sends it for built-in kinds; nothing here needs its
list merging). Pure functions on parsed JSON."""

from __future__ import annotations

import copy
from typing import Any

Json = dict[str, Any]


class PatchError(ValueError):
    """A patch that cannot apply; ``status`` is what the API server answers (422, 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strip_directives(patch: Any) -> Any:
    """A strategic merge patch's ``$patch``-style directives, dropped (merged as RFC 7386)."""
    if isinstance(patch, dict):
        return {k: strip_directives(v) for k, v in patch.items() if not k.startswith("$")}
    return patch


def json_patch(document: Json, operations: Any) -> Json:
    """RFC 6902; any failure (a ``test`` that does not hold, a missing path) is 422."""
    result: Any = copy.deepcopy(document)
    if not isinstance(operations, list):
        raise PatchError(400, "a JSON patch is a list of operations")
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        try:
            if op == "test":
                if _resolve(result, path) != operation.get("value"):
                    raise PatchError(422, f"the test of {path} failed")
            elif op in ("add", "replace"):
                result = _put(result, path, copy.deepcopy(operation.get("value")), op == "add")
            elif op == "remove":
                result = _take(result, path)[0]
            elif op in ("move", "copy"):
                value = _resolve(result, operation["from"])
                if op == "move":
                    result = _take(result, operation["from"])[0]
                result = _put(result, path, copy.deepcopy(value), True)
            else:
                raise PatchError(400, f"unknown JSON patch op {op!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise PatchError(422, f"{op} {path}: {exc!r}") from None
    if not isinstance(result, dict):
        raise PatchError(422, "a patch must leave an object")
    return result


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"not a JSON pointer: {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _resolve(document: Any, path: str) -> Any:
    for token in _tokens(path):
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def _put(document: Any, path: str, value: Any, add: bool) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _resolve(
        document, "".join(f"/{t.replace('~', '~0').replace('/', '~1')}" for t in tokens[:-1])
    )
    last = tokens[-1]
    if isinstance(parent, list):
        if add:
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[int(last)] = value
    else:
        if not add and last not in parent:
            raise KeyError(last)
        parent[last] = value
    return document


def _take(document: Any, path: str) -> tuple[Any, Any]:
    tokens = _tokens(path)
    parent = _resolve(
        document, "".join(f"/{t.replace('~', '~0').replace('/', '~1')}" for t in tokens[:-1])
    )
    last = tokens[-1]
    value = parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)
    return document, value
