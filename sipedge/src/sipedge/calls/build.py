"""The messages a B2BUA writes (pure): B-leg INVITEs, CANCELs, 2xx ACKs, in-dialog
requests and the A-leg responses relayed from the B leg.

RFC 3261 §8.1.1 (a new request), §9.1 (CANCEL), §12.2.1.1 and §13.2.2.4 (requests
and the ACK within a dialog), §8.2.6 (responses). Only what belongs end to end is
copied across legs: the body with its Content-Type, and the session timer, Allow,
Supported and Accept fields; everything that names one leg's dialog is written anew.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipedge.dialogs import Leg
from sipedge.sip.message import Message, Request, Response, make_response

#: Header fields a B2BUA carries from one leg's message to the other's.
END_TO_END = (
    "Content-Type",
    "Session-Expires",
    "Min-SE",
    "Allow",
    "Accept",
    "Supported",
    "Content-Disposition",
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this edge is on a leg: the Via to use and the Contact to give."""

    via: str
    contact: str
    user_agent: str


def copy_end_to_end(source: Message, target: Message) -> None:
    for name in END_TO_END:
        for value in source.headers.lines(name):
            target.headers.add(name, value)
    target.body = source.body


def b_leg_invite(
    a_invite: Request,
    *,
    target: str,
    from_value: str,
    to_value: str,
    call_id: str,
    max_forwards: int,
    me: Identity,
) -> Request:
    """A new INVITE towards one registered contact of the callee (§8.1.1)."""
    invite = Request(
        "INVITE",
        target,
        [
            ("Via", me.via),
            ("Max-Forwards", str(max_forwards)),
            ("From", from_value),
            ("To", to_value),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", me.contact),
            ("User-Agent", me.user_agent),
        ],
    )
    copy_end_to_end(a_invite, invite)
    return invite


def cancel_for(invite: Request) -> Request:
    """The CANCEL of a client INVITE (§9.1): same Request-URI, Call-ID, From, To, top Via,
    Route and CSeq number; method CANCEL."""
    cancel = Request("CANCEL", invite.uri_text)
    for name in ("Via", "From", "To", "Call-ID", "Route"):
        lines = invite.headers.lines(name)
        if name == "Via":
            lines = lines[:1]
        for value in lines:
            cancel.headers.add(name, value)
    cancel.headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    cancel.headers.add("Max-Forwards", "70")
    return cancel


def ack_for_2xx(leg: Leg, cseq: int, me: Identity) -> Request:
    """The ACK of a 2xx, sent by the TU itself in the dialog (§13.2.2.4)."""
    return in_dialog_request("ACK", leg, cseq, me)


def in_dialog_request(method: str, leg: Leg, cseq: int, me: Identity) -> Request:
    """A request within ``leg``'s dialog (§12.2.1.1): remote target, route set, tags."""
    request = Request(
        method,
        leg.remote_target,
        [
            ("Via", me.via),
            ("Max-Forwards", "70"),
            ("From", f"<{leg.local_uri}>;tag={leg.local_tag}"),
            ("To", f"<{leg.remote_uri}>;tag={leg.remote_tag}"),
            ("Call-ID", leg.call_id),
            ("CSeq", f"{cseq} {method}"),
        ],
    )
    for route in leg.route_set:
        request.headers.add("Route", route)
    if method not in ("ACK", "BYE", "CANCEL"):
        request.headers.add("Contact", me.contact)
    return request


def relayed_response(
    a_request: Request, b_response: Response, to_tag: str, contact: str
) -> Response:
    """The A-leg answer mirroring a B-leg response: status, reason and end-to-end fields,
    and our ``contact`` where a dialog is made or refreshed. A response that makes a
    dialog carries the INVITE's Record-Route in order (§12.1.1): the proxies the caller's
    INVITE came through (a provider's) stay in the dialog's path."""
    response = make_response(a_request, b_response.status, b_response.reason, to_tag=to_tag)
    if 100 < b_response.status < 300 and a_request.method in ("INVITE", "UPDATE"):
        if a_request.method == "INVITE":
            for value in a_request.headers.lines("Record-Route"):
                response.headers.add("Record-Route", value)
        response.headers.add("Contact", contact)
    copy_end_to_end(b_response, response)
    return response


def unavailable(request: Request, to_tag: str | None, host: str, why: str) -> Response:
    """503 for a request we cannot serve for want of media (issue 4: never a call without
    audio), saying why in a Warning (RFC 3261 §20.43: code 399, "miscellaneous")."""
    response = make_response(request, 503, "Service Unavailable", to_tag=to_tag)
    text = why.replace("\\", "\\\\").replace('"', '\\"')
    response.headers.add("Warning", f'399 {host} "media relay: {text}"')
    return response
