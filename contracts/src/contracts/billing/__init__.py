"""Billing shared by the edge (credit control), the operator (accounts) and the portal:
rating (:mod:`.rating`), credit control's arithmetic (:mod:`.credit`), the billing store's
types and interface (:mod:`.store`) and its schema (:mod:`.migrations`). All pure; the
stores themselves are ``contracts.stores``."""
