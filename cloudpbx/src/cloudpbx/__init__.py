"""The ``cloudpbx`` command: runs the platform's parts as one process tree on a laptop.

It starts each service by module name (``python -m sipedge ...``) and imports none of
them, so the services stay independent (an import-linter contract checks that).
"""
