"""Call control: a B2BUA between extensions of one tenant (RFC 3261 §13–15, RFC 4028).

A call is an A-leg dialog with the caller and a B-leg dialog with the callee. Setting
it up (:mod:`.control`) forks the INVITE to every registered contact of the callee,
relays provisional responses and early media, lets the first 2xx win and CANCELs the
rest, and maps failures to one answer. Once answered, the call is stored in the dialog
store before the caller gets the 2xx, so that any edge process can route its in-dialog
requests: BYE from either side, re-INVITE and UPDATE (hold, resume, session refresh)
passed through. The messages themselves are written by :mod:`.build`; with media
relays configured, :mod:`.anchor` puts each offer and answer (RFC 3264) through one.
Where a dialled number goes (the tenant's dial plans) and calls in from and out
through the tenant's SIP trunks are :mod:`.trunks`.
"""

from __future__ import annotations

from sipedge.calls.control import CallControl, Caller

__all__ = ["CallControl", "Caller"]
