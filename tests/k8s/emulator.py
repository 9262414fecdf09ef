"""A Kubernetes API server for tests: kmock's emulator, with what kopf and kubectl need fixed.

kmock 0.8 serves discovery well (its bundled built-in resources, plus the kinds declared),
but its object store falls short of the API's contract in ways kopf and kubectl notice
(``../shared/TESTING.md`` lists them). :class:`Cluster` keeps kmock's discovery and
HTTP server and answers every object request itself:

* the bundled built-in resources are loaded (without the deprecated call kmock makes);
* paths are parsed here (kmock's parser fails on ``/api/v1/namespaces``), the namespace
  comes from the URL, and a created object gets ``uid``, ``resourceVersion``,
  ``generation`` and ``creationTimestamp`` (``generateName`` too);
* one resourceVersion sequence over all objects; a watch from ``?resourceVersion=N``
  replays the events after N, so nothing between a LIST and its WATCH is lost; lists say
  their ``kind``, ``apiVersion`` and ``resourceVersion``; watches are JSON lines of the
  right content type and end at ``?timeoutSeconds``;
* PATCH as JSON patch (RFC 6902; a failed ``test`` is 422), merge patch (RFC 7386) and
  strategic merge patch (taken as a merge patch; :mod:`.patches`); PUT; ``?dryRun``; label and field
  selectors (equality); a ``metadata.resourceVersion`` in a write is a precondition (409);
* the ``status`` subresource: writes to an object leave its status alone and writes to
  ``/status`` change nothing else; ``generation`` grows when anything but metadata and
  status changes; a write that changes nothing changes no version and sends no event;
* deletion with finalizers sets ``deletionTimestamp``; the object goes when its last
  finalizer does, and so do the objects it owns (ownerReferences, as the garbage
  collector would);
* a created CustomResourceDefinition makes its kind servable (and discoverable), and is
  ``Established`` at once; core discovery says ``groupVersion: v1``.

No schema validation, defaulting or controllers. :func:`running_cluster` runs it on a
loopback port in a thread with its own event loop, apart from the test's and kopf's, and
:meth:`Cluster.hold` lets a test freeze chosen requests (to kill an operator mid-step).
Past ~400 lines on purpose: one API server's object semantics read best in one place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import gzip
import importlib.resources
import json
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering

from .patches import PatchError, json_patch, merge_patch, strip_directives

Json = dict[str, Any]
ResourceKey = tuple[str, str, str]  # group, version, plural
ObjectKey = tuple[str | None, str]  # namespace, name

MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH = "application/json-patch+json"
#: What a client cannot change by writing an object.
IMMUTABLE_METADATA = (
    "name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
    "resourceVersion", "deletionGracePeriodSeconds",
)  # fmt: skip
CRDS: ResourceKey = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def response(self) -> aiohttp.web.Response:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": self.code}  # fmt: skip
        return aiohttp.web.json_response(status, status=self.code)


@dataclass(frozen=True, slots=True)
class Route:
    """An object request's target: ``/apis/<g>/<v>[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]``."""

    resource: ResourceKey
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_route(path: str) -> Route | None:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, "/".join(rest[2:]) or None
    return Route((group, version, plural), namespace, name, sub)


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """kmock's emulator with a store that keeps the API's contract (module docstring)."""

    _kstore: dict[ResourceKey, dict[ObjectKey, Json]] = attrs.field(factory=dict, init=False)
    _klog: list[tuple[int, ResourceKey, str, Json]] = attrs.field(factory=list, init=False)
    _krv: int = attrs.field(default=1000, init=False)
    _ktick: asyncio.Event | None = attrs.field(default=None, init=False)
    _kholds: list[tuple[Callable[[str, Route], bool], threading.Event]] = attrs.field(
        factory=list, init=False
    )
    loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # load_bundled() itself calls the deprecated importlib.resources.read_binary().
        bundled = importlib.resources.files("kmock._internal") / "resources.json.gz"
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))

    # --- the HTTP entry point ---

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        route = parse_route(raw.path)
        if route is None or not self._known(route.resource):
            return await super().__call__(raw)
        await raw.read()
        try:
            await self._wait_for_holds(raw.method, route)
            return await self._serve(raw, route)
        except ApiError as exc:
            return exc.response()

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        answer = await super()._serve_version(request)
        if isinstance(answer, dict) and str(answer.get("groupVersion", "")).startswith("/"):
            answer["groupVersion"] = answer["groupVersion"][1:]  # the core group is "v1"
        return answer

    def _known(self, key: ResourceKey) -> bool:
        return kmock.resource(*key) in self.resources

    def _info(self, key: ResourceKey) -> kmock.ResourceInfo:
        return self.resources[kmock.resource(*key)]

    async def _serve(
        self, raw: aiohttp.web.BaseRequest, route: Route
    ) -> aiohttp.web.StreamResponse:
        query = raw.query
        method = raw.method
        if method == "GET" and query.get("watch") in ("true", "1"):
            return await self._watch(raw, route)
        if method == "GET" and route.name is None:
            return aiohttp.web.json_response(self._list(route, query))
        if route.name is None and method == "POST":
            created = self._create(route, _body(await raw.text()), dry="dryRun" in query)
            return aiohttp.web.json_response(created, status=201)
        if route.name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        if method == "GET":
            return aiohttp.web.json_response(self._get(route))
        if method == "DELETE":
            return aiohttp.web.json_response(self._delete(route))
        text = await raw.text()
        if method == "PUT":
            return aiohttp.web.json_response(self._update(route, _body(text), None, query))
        if method == "PATCH":
            kind = raw.content_type
            return aiohttp.web.json_response(self._update(route, json.loads(text), kind, query))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not served")

    # --- reading ---

    def _bucket(self, key: ResourceKey) -> dict[ObjectKey, Json]:
        return self._kstore.setdefault(key, {})

    def _namespace(self, route: Route) -> str | None:
        return route.namespace if self._info(route.resource).namespaced else None

    def _get(self, route: Route) -> Json:
        assert route.name is not None
        found = self._bucket(route.resource).get((self._namespace(route), route.name))
        if found is None:
            plural = route.resource[2]
            raise ApiError(404, "NotFound", f'{plural} "{route.name}" not found')
        return found

    def _list(self, route: Route, query: Any) -> Json:
        group, version, _ = route.resource
        items = [
            obj for obj in self._bucket(route.resource).values() if _selected(obj, route, query)
        ]
        return {
            "kind": f"{self._info(route.resource).kind}List",
            "apiVersion": f"{group}/{version}" if group else version,
            "metadata": {"resourceVersion": str(self._krv)},
            "items": sorted(
                items, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])
            ),
        }

    async def _watch(
        self, raw: aiohttp.web.BaseRequest, route: Route
    ) -> aiohttp.web.StreamResponse:
        query = raw.query
        since = query.get("resourceVersion", "")
        deadline = None
        if query.get("timeoutSeconds"):
            deadline = asyncio.get_running_loop().time() + float(query["timeoutSeconds"])
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        if since in ("", "0"):
            position = len(self._klog)
            backlog = [("ADDED", obj) for obj in self._list(route, query)["items"]]
        else:
            position = next(
                (i for i, e in enumerate(self._klog) if e[0] > int(since)), len(self._klog)
            )
            backlog = []
        try:
            for kind, obj in backlog:
                await response.write(_line(kind, obj))
            while True:
                while position < len(self._klog):
                    _, key, kind, obj = self._klog[position]
                    position += 1
                    if key == route.resource and _selected(obj, route, query):
                        await response.write(_line(kind, obj))
                tick = self._changed()
                timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if timeout is not None and timeout <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tick.wait(), timeout)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    def _changed(self) -> asyncio.Event:
        if self._ktick is None:
            self._ktick = asyncio.Event()
        return self._ktick

    def _record(self, key: ResourceKey, kind: str, obj: Json) -> None:
        self._klog.append((self._krv, key, kind, copy.deepcopy(obj)))
        tick, self._ktick = self._changed(), asyncio.Event()
        tick.set()

    def _next_version(self) -> str:
        self._krv += 1
        return str(self._krv)

    # --- writing ---

    def _create(self, route: Route, body: Json, *, dry: bool) -> Json:
        info = self._info(route.resource)
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or (meta.get("generateName", "") + secrets.token_hex(3))
        namespace = (
            (route.namespace or meta.get("namespace") or "default") if info.namespaced else None
        )
        objects = self._bucket(route.resource)
        if (namespace, name) in objects:
            raise ApiError(409, "AlreadyExists", f'{route.resource[2]} "{name}" already exists')
        group, version, _ = route.resource
        body.setdefault("apiVersion", f"{group}/{version}" if group else version)
        body.setdefault("kind", info.kind)
        if "status" in info.subresources:
            body.pop("status", None)
        _secret_data(route.resource, body)
        meta.update(name=name, uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
        meta.pop("generateName", None)
        if namespace is not None:
            meta["namespace"] = namespace
        if dry:
            return body
        meta["resourceVersion"] = self._next_version()
        objects[(namespace, name)] = body
        self._record(route.resource, "ADDED", body)
        if route.resource == CRDS:
            self._serve_crd(body)
        return body

    def _update(self, route: Route, change: Any, content_type: str | None, query: Any) -> Json:
        old = self._get(route)
        if content_type is None:  # PUT: the whole object
            new = change
        elif content_type == JSON_PATCH:
            new = _patched(json_patch, old, change)
        elif content_type in MERGE_TYPES:
            new = _patched(merge_patch, old, strip_directives(change))
        else:
            raise ApiError(415, "UnsupportedMediaType", f"{content_type} is not served")
        wanted = (
            (change.get("metadata") or {}).get("resourceVersion")
            if isinstance(change, dict)
            else None
        )
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; apply your changes to the latest version",
            )
        new = self._kept(route, old, new)
        _secret_data(route.resource, new)
        if new == old or "dryRun" in query:
            return old
        return self._commit(route, old, new)

    def _kept(self, route: Route, old: Json, new: Json) -> Json:
        """What a write may not change: identity, the other half of the status split."""
        new = copy.deepcopy(new)
        has_status = "status" in self._info(route.resource).subresources
        if route.subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif has_status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta = new.setdefault("metadata", {})
        for field in IMMUTABLE_METADATA:
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        return new

    def _commit(self, route: Route, old: Json, new: Json) -> Json:
        key = (self._namespace(route), old["metadata"]["name"])
        if _essence(old) != _essence(new):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = self._next_version()
        objects = self._bucket(route.resource)
        objects[key] = new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(route.resource, key)
        self._record(route.resource, "MODIFIED", new)
        return new

    def _delete(self, route: Route) -> Json:
        obj = self._get(route)
        key = (self._namespace(route), obj["metadata"]["name"])
        if not obj["metadata"].get("finalizers"):
            return self._remove(route.resource, key)
        if not obj["metadata"].get("deletionTimestamp"):
            obj = copy.deepcopy(obj)
            obj["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            obj["metadata"]["resourceVersion"] = self._next_version()
            self._bucket(route.resource)[key] = obj
            self._record(route.resource, "MODIFIED", obj)
        return obj

    def _remove(self, resource: ResourceKey, key: ObjectKey) -> Json:
        obj = self._bucket(resource).pop(key)
        obj["metadata"]["resourceVersion"] = self._next_version()
        self._record(resource, "DELETED", obj)
        self._collect_garbage(obj["metadata"]["uid"])
        return obj

    def _collect_garbage(self, owner_uid: str) -> None:
        for resource, objects in list(self._kstore.items()):
            for key, obj in list(objects.items()):
                owners = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in owners):
                    name = obj["metadata"]["name"]
                    self._delete(Route(resource, key[0], name, None))

    def _serve_crd(self, crd: Json) -> None:
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        for entry in spec.get("versions", []):
            if entry.get("served", True):
                self.resources[kmock.resource(spec["group"], entry["name"], names["plural"])] = (
                    kmock.ResourceInfo(
                        kind=names.get("kind"),
                        singular=names.get("singular"),
                        namespaced=spec.get("scope") == "Namespaced",
                        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                        shortnames=set(names.get("shortNames", [])),
                        subresources={"status"}
                        if "status" in entry.get("subresources", {})
                        else set(),
                    )
                )
        established = {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}
        crd["status"] = {"conditions": [established], "acceptedNames": names}

    # --- holding requests (tests) ---

    def hold(self, matches: Callable[[str, Route], bool]) -> threading.Event:
        """Requests for which ``matches(method, route)`` wait until the returned event is
        set, then fail (503), as if the client had gone; later ones pass. The event's
        ``held`` attribute tells that one arrived."""
        release = threading.Event()
        self._kholds.append((matches, release))
        return release

    async def _wait_for_holds(self, method: str, route: Route) -> None:
        for matches, release in list(self._kholds):
            if not release.is_set() and matches(method, route):
                release.held = True  # type: ignore[attr-defined]
                while not release.is_set():
                    await asyncio.sleep(0.05)
                raise ApiError(503, "ServiceUnavailable", "held, then dropped by the test")

    # --- for tests, from any thread ---

    def call(self, function: Callable[[], Any]) -> Any:
        """``function()`` on the emulator's loop (the store is not thread-safe)."""
        assert self.loop is not None

        async def call() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def list_objects(self, plural: str, namespace: str | None) -> list[Json]:
        """Copies of the objects of every resource named ``plural`` in ``namespace`` (call it
        on the emulator's loop: :meth:`call`)."""
        return [
            copy.deepcopy(obj)
            for (_, _, p), objects in self._kstore.items()
            if p == plural
            for (ns, _), obj in objects.items()
            if ns == namespace
        ]

    def create_object(self, body: Json) -> Json:
        """Creates ``body`` (call it on the emulator's loop: :meth:`call`)."""
        api_version, kind = body["apiVersion"], body["kind"]
        group, _, version = api_version.rpartition("/")
        for resource in self.resources:
            info = self.resources[resource]
            if (resource.group, resource.version, info.kind) == (group, version, kind):
                key = (group, version, str(resource.plural))
                namespace = body.get("metadata", {}).get("namespace")
                return self._create(
                    Route(key, namespace, None, None), copy.deepcopy(body), dry=False
                )
        raise LookupError(f"no resource serves {api_version} {kind}")

    def get_object(
        self, plural: str, namespace: str | None, name: str, group: str = ""
    ) -> Json | None:
        def find() -> Json | None:
            for (g, _, p), objects in self._kstore.items():
                if p == plural and (not group or g == group) and (namespace, name) in objects:
                    return copy.deepcopy(objects[(namespace, name)])
            return None

        found: Json | None = self.call(find)
        return found


# --- selectors and helpers -------------------------------------------------------------------


def _selected(obj: Json, route: Route, query: Any) -> bool:
    meta = obj.get("metadata", {})
    if route.namespace is not None and meta.get("namespace") not in (None, route.namespace):
        return False
    if route.name is not None and meta.get("name") != route.name:
        return False
    fields = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        field, negated, value = _term(term)
        if (fields.get(field) == value) == negated:
            return False
    labels = meta.get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        label, negated, value = _term(term)
        if value is None:
            if (label.lstrip("!") in labels) == label.startswith("!"):
                return False
        elif (labels.get(label) == value) == negated:
            return False
    return True


def _term(term: str) -> tuple[str, bool, str | None]:
    if "!=" in term:
        key, value = term.split("!=", 1)
        return key.strip(), True, value.strip()
    if "=" in term:
        key, value = term.replace("==", "=").split("=", 1)
        return key.strip(), False, value.strip()
    return term.strip(), False, None


def _patched(patch: Callable[[Json, Any], Json], old: Json, change: Any) -> Json:
    try:
        return patch(old, change)
    except PatchError as exc:
        reason = "Invalid" if exc.status == 422 else "BadRequest"
        raise ApiError(exc.status, reason, exc.message) from None


def _essence(body: Json) -> Json:
    """What ``generation`` counts changes of: all but metadata and status."""
    return {key: value for key, value in body.items() if key not in ("metadata", "status")}


def _secret_data(resource: ResourceKey, body: Json) -> None:
    """A Secret's ``stringData`` goes into its ``data`` (base64), as the API server does."""
    if resource == ("", "v1", "secrets") and isinstance(body.get("stringData"), dict):
        data = body.setdefault("data", {})
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _body(text: str) -> Json:
    try:
        body = json.loads(text)
    except ValueError:
        raise ApiError(400, "BadRequest", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body is not an object")
    return body


def _line(kind: str, obj: Json) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- running it ------------------------------------------------------------------------------


@contextlib.contextmanager
def running_cluster() -> Iterator[tuple[Cluster, str]]:
    """A :class:`Cluster` served on 127.0.0.1 (a free port) from its own thread and event
    loop; yields it and its URL."""
    cluster = Cluster()
    started = threading.Event()
    url: list[str] = []
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        cluster.loop = asyncio.get_running_loop()
        stop.append(asyncio.Event())
        async with cluster, kmock.Server(cluster) as server:
            url.append(str(server.url).rstrip("/"))
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the Kubernetes emulator did not start")
    try:
        yield cluster, url[0]
    finally:
        assert cluster.loop is not None
        cluster.loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
