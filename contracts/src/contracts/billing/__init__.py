"""Billing shared by the edge (credit control), the operator (accounts) and the portal:
rating (:mod:`.rating`, pure)."""
