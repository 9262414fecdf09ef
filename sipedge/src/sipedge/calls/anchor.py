"""Media anchoring of a call: the SDP of each offer and answer goes through a relay.

RFC 3264: the caller's INVITE carries the offer (§5), the callee's 18x or 2xx the answer
(§6); a re-INVITE or UPDATE in the dialog is a new offer from whichever side sends it
(§8), answered by the other. Each one is sent to the relay over ng, keyed as rtpengine
expects: call-id = the A-leg Call-ID, from-tag = the offerer's tag, to-tag = the
answerer's. The A leg's tag on the relay is the caller's From tag; the B leg's, the
callee's To tag. The SDP the relay returns (naming its own address and ports) replaces
the SDP in the message passed to the other side.

An INVITE without SDP (a late offer, RFC 3261 §13.2.1) turns it around: the callee's 2xx
offers (from-tag: the callee's tag) and the caller's ACK answers; a re-INVITE without
SDP likewise. Left for later: SDP inside a multipart body is not anchored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from contracts.ng.control import Answer, Offer
from contracts.ng.notice import TIMEOUT, Notice
from sipedge.adapters.relay import MediaRelays, RelayError
from sipedge.dialogs import Call
from sipedge.media import RelayAddress
from sipedge.sip.message import Message

log = logging.getLogger("sipedge.calls")


def has_sdp(message: Message) -> bool:
    """Whether ``message`` carries a session description (RFC 3264 §5, RFC 4566)."""
    if not message.body:
        return False
    content_type = message.headers.get("Content-Type") or ""
    return content_type.split(";", 1)[0].strip().lower() == "application/sdp"


class Anchor:
    """Offers, answers and deletes calls on the media relays of this edge process."""

    def __init__(self, relays: MediaRelays) -> None:
        self.relays = relays
        #: The tenant of each call this process last negotiated: a relay's timeout notice
        #: (contracts.ng.notice) names only the Call-ID, and comes to that process.
        self.tenants: dict[str, str] = {}
        self._on_timeout: Callable[[str, str], None] | None = None
        relays.on_notice(self._notice)

    def on_timeout(self, handler: Callable[[str, str], None]) -> None:
        """Have ``handler(tenant, call_id)`` called when a relay ends a call for silence."""
        self._on_timeout = handler

    def _notice(self, notice: Notice) -> None:
        tenant = self.tenants.pop(notice.call_id, None)
        if notice.event != TIMEOUT or tenant is None:
            log.info("relay notice %s for call-id=%s ignored", notice.event, notice.call_id)
            return
        if self._on_timeout is not None:
            self._on_timeout(tenant, notice.call_id)

    async def offer(
        self, tenant: str, call_id: str, caller_tag: str, sdp: bytes
    ) -> tuple[RelayAddress, bytes]:
        """The caller's initial offer: the relay that took it, and the SDP for the callee."""
        self.tenants[call_id] = tenant
        return await self.relays.offer(Offer(call_id=call_id, from_tag=caller_tag, sdp=sdp))

    async def answer(
        self, relay: RelayAddress, call_id: str, caller_tag: str, callee_tag: str, sdp: bytes
    ) -> bytes:
        """The callee's answer (an 18x or 2xx with SDP): the SDP for the caller."""
        answer = Answer(call_id=call_id, from_tag=caller_tag, to_tag=callee_tag, sdp=sdp)
        return await self.relays.answer(relay, answer)

    async def reoffer(self, call: Call, sender_call_id: str, sdp: bytes) -> bytes:
        """A new offer in the dialog from the side of dialog ``sender_call_id`` (RFC 3264
        §8): the SDP for the other side."""
        offerer, answerer = _tags(call, sender_call_id)
        self.tenants[call.a.call_id] = call.tenant
        offer = Offer(call_id=call.a.call_id, from_tag=offerer, to_tag=answerer, sdp=sdp)
        return await self.relays.reoffer(RelayAddress.parse(call.relay), offer)

    async def reanswer(self, call: Call, offerer_call_id: str, sdp: bytes) -> bytes:
        """The answer to an in-dialog offer from dialog ``offerer_call_id``'s side: the
        SDP for the offerer."""
        offerer_tag, answerer_tag = _tags(call, offerer_call_id)
        answer = Answer(call_id=call.a.call_id, from_tag=offerer_tag, to_tag=answerer_tag, sdp=sdp)
        return await self.relays.answer(RelayAddress.parse(call.relay), answer)

    async def delete(self, relay: RelayAddress, call_id: str) -> None:
        """End the call on its relay (BYE, CANCEL, failure, expiry); a failure is logged,
        since the relay's idle timeout frees the ports anyway."""
        self.tenants.pop(call_id, None)
        try:
            await self.relays.delete(relay, call_id)
        except RelayError as err:
            log.warning("relay delete failed call-id=%s: %s", call_id, err.reason)


def _tags(call: Call, sender_call_id: str) -> tuple[str, str]:
    """(the relay's tag of the sender's side, the other side's): the caller's From tag
    on the A leg, the callee's To tag on the B leg."""
    caller, callee = call.a.remote_tag, call.b.remote_tag
    return (caller, callee) if sender_call_id == call.a.call_id else (callee, caller)
