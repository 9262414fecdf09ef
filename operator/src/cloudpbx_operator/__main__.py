"""``python -m cloudpbx_operator``: runs the operator (kopf) with its settings from the
environment (:mod:`.config`) and the API server's credentials from the pod's service
account or the usual kubeconfig."""

from __future__ import annotations

import logging
import os
import sys

import kopf

from cloudpbx_operator import handlers
from cloudpbx_operator.config import Config, ConfigError, from_env


def main() -> None:
    try:
        config = _config()
    except ConfigError as exc:
        sys.stderr.write(f"cloudpbx-operator: {exc}\n")
        raise SystemExit(2) from None
    registry = kopf.OperatorRegistry()
    handlers.register(config, registry)
    kopf.configure(
        debug=config.log_level == "debug", quiet=config.log_level in ("warning", "error")
    )
    if config.log_level == "error":
        logging.getLogger().setLevel(logging.ERROR)
    port = config.health_port
    peering = config.peering
    if peering is not None and peering.identity:
        # kopf names this replica in the peering object after $POD_ID when it is set.
        os.environ.setdefault("POD_ID", peering.identity)
    kopf.run(
        registry=registry,
        # Without peering the operator must be alone; with it, the replicas take turns
        # (kopf peers through a ClusterKopfPeering when it watches every namespace, else a
        # KopfPeering in the namespace it watches).
        standalone=peering is None,
        peering_name=peering.name if peering is not None else None,
        priority=peering.priority if peering is not None else None,
        clusterwide=not config.watched_namespaces,
        namespaces=config.watched_namespaces,
        # The kubelet probes the pod's address: all interfaces, inside the pod.
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz" if port else None,
    )


def _config() -> Config:
    path = os.environ.get("CLOUDPBX_PLATFORM", "").strip()
    text = None
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise ConfigError(f"CLOUDPBX_PLATFORM: cannot read {path}: {exc.strerror}") from None
    return from_env(os.environ, text)


if __name__ == "__main__":
    main()
