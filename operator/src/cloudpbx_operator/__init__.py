"""The cloudpbx Kubernetes operator (kopf).

Lives in the folder ``operator/`` but is imported as ``cloudpbx_operator``: a
top-level package called ``operator`` would shadow the standard library module of
that name. Reconciles ``Tenant``, ``Trunk`` and ``DialPlan`` (``cloudpbx.io/v1``).
"""
