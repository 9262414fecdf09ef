"""``python -m cloudpbx_operator``: runs the operator (kopf) with its settings from the
environment (:mod:`.config`) and the API server's credentials from the pod's service
account or the usual kubeconfig."""

from __future__ import annotations

import os
import sys

import kopf

from cloudpbx_operator import handlers
from cloudpbx_operator.config import ConfigError, from_env


def main() -> None:
    try:
        config = from_env(os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"cloudpbx-operator: {exc}\n")
        raise SystemExit(2) from None
    registry = kopf.OperatorRegistry()
    handlers.register(config, registry)
    kopf.configure(verbose=bool(os.environ.get("CLOUDPBX_OPERATOR_VERBOSE")))
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=config.namespace is None,
        namespaces=[config.namespace] if config.namespace else (),
        liveness_endpoint=config.liveness,
    )


if __name__ == "__main__":
    main()
