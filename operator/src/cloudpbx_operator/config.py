"""The operator's settings, from its environment (what the chart sets on its pod).

``CLOUDPBX_REDIS_URL`` (the edges' Redis) and ``CLOUDPBX_BILLING_URL`` (the billing
store, ``postgresql://…``) are required; ``CLOUDPBX_NAMESPACE`` limits the operator to one
namespace (default: all); ``CLOUDPBX_TRUNK_STATUS_INTERVAL_S`` is how often Trunk
statuses are refreshed from what the edges report (default 10 s);
``CLOUDPBX_OPERATOR_LIVENESS`` an optional kopf liveness endpoint
(``http://0.0.0.0:8080/healthz``). Pure: the environment comes in as a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TRUNK_STATUS_INTERVAL_S = 10.0


class ConfigError(ValueError):
    """A setting the operator cannot start with; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Config:
    redis_url: str
    billing_url: str
    namespace: str | None = None
    trunk_status_interval_s: float = DEFAULT_TRUNK_STATUS_INTERVAL_S
    liveness: str | None = None


def from_env(env: Mapping[str, str]) -> Config:
    def required(name: str) -> str:
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name} is required")
        return value

    interval_text = env.get("CLOUDPBX_TRUNK_STATUS_INTERVAL_S", "").strip()
    try:
        interval = float(interval_text) if interval_text else DEFAULT_TRUNK_STATUS_INTERVAL_S
    except ValueError:
        raise ConfigError(
            f"CLOUDPBX_TRUNK_STATUS_INTERVAL_S must be seconds, not {interval_text!r}"
        ) from None
    if not 0 < interval <= 3600:
        raise ConfigError("CLOUDPBX_TRUNK_STATUS_INTERVAL_S must be between 0 and 3600")
    return Config(
        redis_url=required("CLOUDPBX_REDIS_URL"),
        billing_url=required("CLOUDPBX_BILLING_URL"),
        namespace=env.get("CLOUDPBX_NAMESPACE", "").strip() or None,
        trunk_status_interval_s=interval,
        liveness=env.get("CLOUDPBX_OPERATOR_LIVENESS", "").strip() or None,
    )
