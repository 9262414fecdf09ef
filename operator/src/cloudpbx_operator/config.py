"""The operator's settings, from its environment (what the chart sets on its pod).

* ``CLOUDPBX_REDIS_URL`` (the edges' Redis) and ``CLOUDPBX_BILLING_URL`` (the billing
  store, ``postgresql://…``): required.
* ``CLOUDPBX_PLATFORM``: the platform configuration's file (the chart's ConfigMap, shape
  pinned by the chart's ``tests/chart/data/platform.yaml``). With it the operator watches
  every namespace and serves the Tenants of its ``tenantNamespaces`` (where it may read
  their Secrets); a Tenant elsewhere is told so in its status.
* ``CLOUDPBX_PLATFORM_CONFIGMAP``: the name of that ConfigMap (in the platform's namespace),
  required with ``CLOUDPBX_PLATFORM``: it owns the workloads rendered from it.
* ``CLOUDPBX_NAMESPACE``: the operator's own namespace. Without a platform file it is the
  one namespace watched (none: all).
* ``CLOUDPBX_HEALTH_PORT``: serve kopf's liveness endpoint at ``/healthz`` on this port.
* ``CLOUDPBX_LOG_LEVEL``: debug, info (default), warning or error.
* ``CLOUDPBX_TRUNK_STATUS_INTERVAL_S``: how often Trunk statuses are refreshed from what the
  edges report (default 10 s).
* ``CLOUDPBX_PEERING``: the name of kopf's peering object, for more than one replica
  (:class:`Peering`); without it the operator runs standalone and must be alone.
  ``CLOUDPBX_PEERING_PRIORITY`` sets the replica's priority, else it comes from
  ``CLOUDPBX_POD_NAME`` (one of the two is required), and
  ``CLOUDPBX_PEERING_LIFETIME_S`` how long a replica's keep-alive holds (default 60 s).

Pure: the environment comes in as a mapping and the platform file as its text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

DEFAULT_TRUNK_STATUS_INTERVAL_S = 10.0
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The platform configuration's format this operator reads.
PLATFORM_VERSION = 1
#: kopf's own lifetime of a peer's keep-alive.
DEFAULT_PEERING_LIFETIME_S = 60


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Platform:
    """What the operator takes from the platform configuration."""

    namespace: str
    #: Where Tenants are served (the operator may read Secrets there).
    tenant_namespaces: tuple[str, ...]
    #: The ConfigMap it comes from, in ``namespace``: the owner of the workloads.
    config_map: str
    #: The whole document, for what renders workloads from it.
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Peering:
    """kopf's peering of the operator's replicas: each keeps its entry (priority, last seen)
    in the peering object ``name`` fresh, and any replica that sees a live one of higher
    priority pauses (no watching, no handlers, no timers) until that one has gone; a replica
    that stops says so, one that dies is taken for dead ``lifetime_s`` after its last
    keep-alive. Replicas of equal priority would all pause, so each pod's differs."""

    name: str
    priority: int
    lifetime_s: int = DEFAULT_PEERING_LIFETIME_S
    #: The replica's name in the peering object (kopf's default when None).
    identity: str | None = None


def pod_priority(pod: str) -> int:
    """A replica's priority from its pod's name: distinct for distinct pods (31 bits of a
    hash, so two replicas agree on one by a chance of one in two thousand million)."""
    return int.from_bytes(hashlib.sha256(pod.encode()).digest()[:4], "big") >> 1


@dataclass(frozen=True, slots=True)
class Config:
    redis_url: str
    billing_url: str
    namespace: str | None = None
    platform: Platform | None = None
    trunk_status_interval_s: float = DEFAULT_TRUNK_STATUS_INTERVAL_S
    health_port: int | None = None
    log_level: str = "info"
    peering: Peering | None = None

    @property
    def watched_namespaces(self) -> tuple[str, ...]:
        """The namespaces to watch; empty: all of them."""
        if self.platform is None and self.namespace is not None:
            return (self.namespace,)
        return ()

    @property
    def served_namespaces(self) -> frozenset[str] | None:
        """The namespaces whose Tenants are served; None: any watched one."""
        if self.platform is None:
            return None
        return frozenset(self.platform.tenant_namespaces)


def from_env(env: Mapping[str, str], platform_text: str | None = None) -> Config:
    """The settings; ``platform_text``: the contents of ``CLOUDPBX_PLATFORM``'s file."""

    def required(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name} is required")
        return value

    level = env.get("CLOUDPBX_LOG_LEVEL", "").strip().lower() or "info"
    if level not in LOG_LEVELS:
        raise ConfigError(f"CLOUDPBX_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    platform = None
    if platform_text is not None:
        config_map = env.get("CLOUDPBX_PLATFORM_CONFIGMAP", "").strip()
        if not config_map:
            raise ConfigError(
                "CLOUDPBX_PLATFORM_CONFIGMAP is required with CLOUDPBX_PLATFORM "
                "(the ConfigMap owns the workloads)"
            )
        platform = parse_platform(platform_text, config_map)
    return Config(
        redis_url=required("CLOUDPBX_REDIS_URL"),
        billing_url=required("CLOUDPBX_BILLING_URL"),
        namespace=env.get("CLOUDPBX_NAMESPACE", "").strip() or None,
        platform=platform,
        trunk_status_interval_s=_number(env, "CLOUDPBX_TRUNK_STATUS_INTERVAL_S", 0, 3600)
        or DEFAULT_TRUNK_STATUS_INTERVAL_S,
        health_port=int(_number(env, "CLOUDPBX_HEALTH_PORT", 0, 65535) or 0) or None,
        log_level=level,
        peering=_peering(env),
    )


def _peering(env: Mapping[str, str]) -> Peering | None:
    name = env.get("CLOUDPBX_PEERING", "").strip()
    if not name:
        return None
    pod = env.get("CLOUDPBX_POD_NAME", "").strip() or None
    priority = _integer(env, "CLOUDPBX_PEERING_PRIORITY")
    if priority is None:
        if pod is None:
            raise ConfigError(
                "CLOUDPBX_PEERING needs CLOUDPBX_PEERING_PRIORITY or CLOUDPBX_POD_NAME "
                "(replicas of equal priority all pause)"
            )
        priority = pod_priority(pod)
    lifetime = _number(env, "CLOUDPBX_PEERING_LIFETIME_S", 1, 3600)
    if lifetime is not None and lifetime != int(lifetime):
        raise ConfigError("CLOUDPBX_PEERING_LIFETIME_S must be a whole number of seconds")
    return Peering(name, priority, int(lifetime or DEFAULT_PEERING_LIFETIME_S), pod)


def _integer(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None


def _number(env: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if not low < value <= high:
        raise ConfigError(f"{name} must be above {low} and at most {high}")
    return value


def parse_platform(text: str, config_map: str) -> Platform:
    """The platform configuration (YAML) from ConfigMap ``config_map``; ConfigError naming
    the field at fault."""
    where = "CLOUDPBX_PLATFORM"
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{where}: not valid YAML") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: must be a mapping")
    if document.get("version") != PLATFORM_VERSION:
        raise ConfigError(f"{where}: version must be {PLATFORM_VERSION}")
    namespace = document.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ConfigError(f"{where}: namespace must be a namespace's name")
    namespaces = document.get("tenantNamespaces")
    if not isinstance(namespaces, list) or not all(
        isinstance(name, str) and name for name in namespaces
    ):
        raise ConfigError(f"{where}: tenantNamespaces must be a list of namespaces")
    return Platform(namespace, tuple(namespaces), config_map, document)
