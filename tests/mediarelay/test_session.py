"""The relay's decisions per packet and per call: latching, hold, re-INVITE, timeouts, counters.

Each test names the rule of :mod:`mediarelay.session` it pins. Addresses are RFC 5737's:
the caller is behind NAT (its SDP names a private address, its packets come from the
router's public one), the callee is on a public address, the attacker elsewhere.
"""

from __future__ import annotations

import random
from typing import TypeAlias

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediarelay.portpool import PoolExhausted, PortPool
from mediarelay.session import (
    Address,
    Counters,
    Drop,
    DropReason,
    Forward,
    Kind,
    MediaStream,
    NegotiationError,
    PortPair,
    Role,
    Session,
    SessionConfig,
    Sessions,
    Traffic,
    UnknownCall,
)

CALL = "a84b4c76e66710@pc33.example.com"
CALLER_TAG, CALLEE_TAG = "1928301774", "a6c85cf"

CALLER_SDP = MediaStream("192.168.1.10", 4000)  # private: behind the caller's NAT
CALLER_RTP = ("198.51.100.7", 61000)  # what the caller's NAT maps 192.168.1.10:4000 to
CALLER_RTCP = ("198.51.100.7", 61017)  # ...and 192.168.1.10:4001 (not adjacent)
CALLEE_SDP = MediaStream("203.0.113.5", 5000)  # public: the callee sends from its SDP address
CALLEE_RTP = ("203.0.113.5", 5000)
CALLEE_RTCP = ("203.0.113.5", 5001)
ATTACKER = ("192.0.2.66", 6666)


def relay(pairs: int = 50, **config: float) -> Sessions:
    pool = PortPool(30000, 30000 + 2 * pairs - 1, random.Random(3).randrange)
    return Sessions(pool, SessionConfig(**config))


def call(
    sessions: Sessions,
    caller: tuple[MediaStream, ...] = (CALLER_SDP,),
    callee: tuple[MediaStream, ...] = (CALLEE_SDP,),
    now: float = 0.0,
) -> tuple[Session, tuple[PortPair, ...], tuple[PortPair, ...]]:
    """An answered call: the session, the caller's relay ports, the callee's relay ports."""
    caller_ports = sessions.offer(CALL, CALLER_TAG, caller, now)
    callee_ports = sessions.answer(CALL, CALLER_TAG, CALLEE_TAG, callee, now)
    session = sessions.get(CALL)
    assert session is not None
    return session, caller_ports, callee_ports


def forwarded(verdict: Forward | Drop) -> tuple[int, Address]:
    assert isinstance(verdict, Forward), verdict
    return verdict.from_port, verdict.destination


def dropped(verdict: Forward | Drop) -> DropReason:
    assert isinstance(verdict, Drop), verdict
    return verdict.reason


# --- offer and answer ----------------------------------------------------------------------


def test_an_offer_gives_the_caller_an_rtp_rtcp_pair_per_stream() -> None:
    sessions = relay()
    ports = sessions.offer(CALL, CALLER_TAG, [CALLER_SDP, MediaStream("192.168.1.10", 4002)], 0)
    assert len(ports) == 2
    for index, (rtp, rtcp) in enumerate(ports):
        assert rtp % 2 == 0
        assert rtcp == rtp + 1
        for port, kind in ((rtp, Kind.RTP), (rtcp, Kind.RTCP)):
            owner = sessions.owner(port)
            assert owner is not None
            assert (owner.session.call_id, owner.leg.tag, owner.stream, owner.kind) == (
                CALL,
                CALLER_TAG,
                index,
                kind,
            )
    assert sessions.pool.in_use == 4  # the callee's pairs too: the offer it gets names them
    session = sessions.get(CALL)
    assert session is not None
    assert session.callee is not None
    assert session.callee.pending
    assert set(session.callee.ports).isdisjoint(ports)
    assert session.other_leg(session.caller) is session.callee


def test_the_answer_adds_the_callee_leg() -> None:
    session, caller_ports, callee_ports = call(relay())
    assert session.caller.role is Role.CALLER
    assert session.callee is not None
    assert (session.callee.tag, session.callee.role) == (CALLEE_TAG, Role.CALLEE)
    assert session.callee.ports == callee_ports
    assert set(caller_ports).isdisjoint(callee_ports)


def test_before_the_answer_there_is_no_destination_but_the_source_latches() -> None:
    sessions = relay()
    ((rtp, _),) = sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 0)
    assert dropped(sessions.receive(rtp, CALLER_RTP, 172, 0.1)) is DropReason.NO_DESTINATION
    session = sessions.get(CALL)
    assert session is not None
    assert session.caller.latched(0, Kind.RTP) == CALLER_RTP
    assert session.counters().dropped(DropReason.NO_DESTINATION) == 1


# --- latching ------------------------------------------------------------------------------


def test_the_first_packet_latches_and_the_other_side_is_sent_to_its_sdp_address() -> None:
    sessions = relay()
    session, (caller,), (callee,) = call(sessions)
    # The callee has sent nothing yet: its SDP address is all there is.
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 1.0)) == (callee.rtp, CALLEE_RTP)
    # The caller has latched: it is reached at its NAT's address, not the private one.
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 1.0)) == (caller.rtp, CALLER_RTP)
    assert session.caller.latched(0, Kind.RTP) == CALLER_RTP
    assert session.counters().first_latches == 2


def test_before_any_packet_the_caller_is_sent_to_its_sdp_address() -> None:
    sessions = relay()
    _, (caller,), (callee,) = call(sessions)
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 1.0)) == (
        caller.rtp,
        ("192.168.1.10", 4000),
    )


def test_a_new_source_may_relatch_within_the_learning_window() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions)
    moved = ("198.51.100.7", 61002)  # the NAT re-mapped after the first packet
    sessions.receive(caller.rtp, CALLER_RTP, 172, 10.0)
    assert forwarded(sessions.receive(caller.rtp, moved, 172, 12.9))[0] == callee.rtp
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 13.0)) == (caller.rtp, moved)
    assert (session.counters().first_latches, session.counters().relatches) == (2, 1)


def test_after_the_window_another_source_is_dropped_and_counted() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 10.0)
    assert dropped(sessions.receive(caller.rtp, ATTACKER, 172, 13.0)) is (
        DropReason.NOT_LATCHED_PEER
    )
    assert dropped(sessions.receive(caller.rtp, ATTACKER, 172, 99.0)) is (
        DropReason.NOT_LATCHED_PEER
    )
    # The injected packets changed nothing: the caller is still reached where it was.
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 99.0)) == (
        caller.rtp,
        CALLER_RTP,
    )
    counters = session.counters()
    assert counters.dropped(DropReason.NOT_LATCHED_PEER) == 2
    assert counters.relatches == 0
    assert counters.caller_to_callee == Traffic(1, 172)


def test_a_relatch_does_not_extend_the_window() -> None:
    sessions = relay(learning_window_s=3.0)
    _, (caller,), _ = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    sessions.receive(caller.rtp, ("198.51.100.7", 61002), 172, 2.9)
    assert dropped(sessions.receive(caller.rtp, ATTACKER, 172, 3.1)) is (
        DropReason.NOT_LATCHED_PEER
    )


def test_after_the_window_the_sdp_address_may_relatch() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions)
    # The callee's first packets came through some other path (a VPN, a NAT)...
    detour = ("192.0.2.200", 40000)
    sessions.receive(callee.rtp, detour, 172, 0.0)
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0))[1] == detour
    # ...then it sends from the address its SDP names: that may always re-latch.
    assert isinstance(sessions.receive(callee.rtp, CALLEE_RTP, 172, 60.0), Forward)
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 60.0))[1] == CALLEE_RTP
    assert session.counters().relatches == 1


def test_verdicts_are_preallocated_forwards_and_singleton_drops() -> None:
    sessions = relay()
    _, (caller,), _ = call(sessions)
    first = sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    assert sessions.receive(caller.rtp, CALLER_RTP, 172, 0.02) is first
    assert sessions.receive(29000, CALLER_RTP, 172, 0.0) is sessions.receive(
        29002, ATTACKER, 172, 0.0
    )


# --- RTCP ----------------------------------------------------------------------------------


def test_rtcp_goes_to_the_sdp_rtcp_address_until_rtcp_itself_latches() -> None:
    sessions = relay()
    session, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)  # RTP has latched...
    # ...but RTCP is not guessed as RTP + 1: it goes to the SDP's RTCP address.
    assert forwarded(sessions.receive(callee.rtcp, CALLEE_RTCP, 80, 0.5)) == (
        caller.rtcp,
        ("192.168.1.10", 4001),
    )
    sessions.receive(caller.rtcp, CALLER_RTCP, 80, 5.0)
    assert forwarded(sessions.receive(callee.rtcp, CALLEE_RTCP, 80, 5.1)) == (
        caller.rtcp,
        CALLER_RTCP,
    )
    assert session.caller.latched(0, Kind.RTCP) == CALLER_RTCP
    assert session.caller.latched(0, Kind.RTP) == CALLER_RTP


def test_rtcp_follows_a_rtcp_from_the_sdp() -> None:
    sessions = relay()
    _, (caller,), (callee,) = call(sessions, callee=(MediaStream("203.0.113.5", 5000, 5053),))
    assert forwarded(sessions.receive(caller.rtcp, CALLER_RTCP, 80, 0.0)) == (
        callee.rtcp,
        ("203.0.113.5", 5053),
    )


def test_rtcp_has_its_own_window_and_drops_injection() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), _ = call(sessions)
    sessions.receive(caller.rtcp, CALLER_RTCP, 80, 5.0)  # first RTCP, well after RTP began
    assert isinstance(sessions.receive(caller.rtcp, ("198.51.100.7", 61019), 80, 7.9), Forward)
    assert dropped(sessions.receive(caller.rtcp, ATTACKER, 80, 8.0)) is (
        DropReason.NOT_LATCHED_PEER
    )
    assert session.counters().dropped(DropReason.NOT_LATCHED_PEER) == 1


# --- unknown ports ---------------------------------------------------------------------------


def test_a_port_no_session_owns_is_dropped_and_counted_globally() -> None:
    sessions = relay()
    call(sessions)
    assert dropped(sessions.receive(29000, CALLER_RTP, 172, 0.0)) is DropReason.UNKNOWN_PORT
    assert sessions.counters().media.dropped(DropReason.UNKNOWN_PORT) == 1


def test_a_session_asked_about_another_sessions_port_drops_it() -> None:
    sessions = relay()
    session, _, _ = call(sessions)
    assert dropped(session.receive(29000, CALLER_RTP, 172, 0.0)) is DropReason.UNKNOWN_PORT
    assert session.counters().dropped(DropReason.UNKNOWN_PORT) == 1


# --- hold and re-INVITE ------------------------------------------------------------------------


def test_hold_with_0_0_0_0_sends_the_held_leg_nothing() -> None:
    sessions = relay()
    session, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    # The caller puts the call on hold RFC 2543-style (RFC 3264 §8.4): c=0.0.0.0.
    assert sessions.offer(CALL, CALLER_TAG, [MediaStream("0.0.0.0", 4000)], 10.0) == (caller,)
    assert session.on_hold
    for port in callee:
        assert dropped(sessions.receive(port, CALLEE_RTP, 172, 11.0)) is DropReason.ON_HOLD
    # Music on hold from the holder still reaches the callee.
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 11.0))[1] == CALLEE_RTP
    assert session.counters().dropped(DropReason.ON_HOLD) == 2


def test_hold_with_an_ipv6_unspecified_address() -> None:
    sessions = relay()
    session, _, _ = call(sessions)
    sessions.answer(CALL, CALLER_TAG, CALLEE_TAG, [MediaStream("::", 5000)], 5.0)
    assert session.on_hold
    assert session.callee is not None
    assert session.callee.media[0].on_hold


def test_resuming_from_hold_forwards_again_and_learns_afresh() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    sessions.offer(CALL, CALLER_TAG, [MediaStream("0.0.0.0", 4000)], 10.0)
    sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 20.0)
    assert not session.on_hold
    assert session.caller.latched(0, Kind.RTP) is None
    # Until the caller speaks again, its SDP address; then whatever it sends from.
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 20.5))[1] == (
        "192.168.1.10",
        4000,
    )
    sessions.receive(caller.rtp, ("198.51.100.7", 62000), 172, 21.0)
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 21.0))[1] == (
        "198.51.100.7",
        62000,
    )


def test_hold_uses_the_longer_timeout() -> None:
    sessions = relay(idle_timeout_s=60.0, hold_timeout_s=3600.0)
    session, _, _ = call(sessions)
    sessions.offer(CALL, CALLER_TAG, [MediaStream("0.0.0.0", 4000)], 10.0)
    assert session.deadline_s == 3610.0
    assert sessions.reap(100.0) == []
    assert sessions.reap(3610.0) == [session]


def test_a_reinvite_keeps_the_relay_ports_and_the_latch() -> None:
    sessions = relay()
    session, caller_ports, callee_ports = call(sessions)
    sessions.receive(caller_ports[0].rtp, CALLER_RTP, 172, 0.0)
    in_use = sessions.pool.in_use
    assert sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 30.0) == caller_ports
    assert sessions.answer(CALL, CALLER_TAG, CALLEE_TAG, [CALLEE_SDP], 30.0) == callee_ports
    assert sessions.pool.in_use == in_use
    assert session.caller.latched(0, Kind.RTP) == CALLER_RTP


def test_a_reinvite_from_the_callee_updates_the_callee_leg() -> None:
    sessions = relay()
    session, caller_ports, callee_ports = call(sessions)
    moved = MediaStream("203.0.113.9", 7000)
    assert sessions.offer(CALL, CALLEE_TAG, [moved], 30.0) == callee_ports
    assert sessions.answer(CALL, CALLEE_TAG, CALLER_TAG, [CALLER_SDP], 30.0) == caller_ports
    assert session.callee is not None
    assert session.callee.media == (moved,)
    assert forwarded(sessions.receive(caller_ports[0].rtp, CALLER_RTP, 172, 31.0))[1] == (
        "203.0.113.9",
        7000,
    )


def test_a_new_sdp_address_reopens_learning() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    # The phone moved to another network, behind another NAT.
    sessions.offer(CALL, CALLER_TAG, [MediaStream("10.0.0.8", 4000)], 100.0)
    assert session.caller.latched(0, Kind.RTP) is None
    new_nat = ("198.51.100.99", 50000)
    assert isinstance(sessions.receive(caller.rtp, new_nat, 172, 100.2), Forward)
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 100.3)) == (caller.rtp, new_nat)
    assert session.counters().first_latches == 3  # the caller twice, the callee once


def test_a_reoffer_may_add_a_stream_and_keeps_the_old_ones() -> None:
    sessions = relay()
    _, (audio,), (callee_audio,) = call(sessions)
    video = MediaStream("192.168.1.10", 4002)
    ports = sessions.offer(CALL, CALLER_TAG, [CALLER_SDP, video], 30.0)
    assert ports[0] == audio
    # Until the callee answers the new stream, its packets have nowhere to go.
    assert dropped(sessions.receive(ports[1].rtp, CALLER_RTP, 172, 31.0)) is (
        DropReason.NO_DESTINATION
    )
    callee_ports = sessions.answer(
        CALL, CALLER_TAG, CALLEE_TAG, [CALLEE_SDP, MediaStream("203.0.113.5", 5002)], 31.0
    )
    assert callee_ports[0] == callee_audio
    assert forwarded(sessions.receive(ports[1].rtp, ("198.51.100.7", 61004), 172, 32.0)) == (
        callee_ports[1].rtp,
        ("203.0.113.5", 5002),
    )
    assert sessions.pool.in_use == 4


def test_streams_are_never_removed() -> None:
    sessions = relay()
    sessions.offer(CALL, CALLER_TAG, [CALLER_SDP, MediaStream("192.168.1.10", 4002)], 0)
    with pytest.raises(NegotiationError, match=r"has 1 m= lines where it had 2.*RFC 3264 §8"):
        sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 1)


def test_a_disabled_stream_is_sent_nothing() -> None:
    sessions = relay()
    video_off = MediaStream("203.0.113.5", 0)
    _, caller_ports, _ = call(
        sessions,
        caller=(CALLER_SDP, MediaStream("192.168.1.10", 4002)),
        callee=(CALLEE_SDP, video_off),
    )
    assert dropped(sessions.receive(caller_ports[1].rtp, CALLER_RTP, 172, 0.0)) is (
        DropReason.STREAM_DISABLED
    )
    assert isinstance(sessions.receive(caller_ports[0].rtp, CALLER_RTP, 172, 0.0), Forward)


# --- several streams -------------------------------------------------------------------------


def test_each_stream_relays_and_latches_on_its_own() -> None:
    sessions = relay()
    caller_video = MediaStream("192.168.1.10", 4002)
    callee_video = MediaStream("203.0.113.5", 5002)
    session, caller_ports, callee_ports = call(
        sessions, caller=(CALLER_SDP, caller_video), callee=(CALLEE_SDP, callee_video)
    )
    video_nat = ("198.51.100.7", 61004)
    sessions.receive(caller_ports[0].rtp, CALLER_RTP, 172, 0.0)
    sessions.receive(caller_ports[1].rtp, video_nat, 1200, 0.0)
    assert forwarded(sessions.receive(callee_ports[0].rtp, CALLEE_RTP, 172, 0.1)) == (
        caller_ports[0].rtp,
        CALLER_RTP,
    )
    assert forwarded(sessions.receive(callee_ports[1].rtp, ("203.0.113.5", 5002), 1200, 0.1)) == (
        caller_ports[1].rtp,
        video_nat,
    )
    assert session.counters().caller_to_callee == Traffic(2, 1372)
    assert len({port for pair in caller_ports + callee_ports for port in pair}) == 8


# --- forks ------------------------------------------------------------------------------------
#
# The INVITE went to two phones: the first (CALLEE_TAG, CALLEE_SDP) answered with a 183 and
# early media, the second (FORK_TAG) answers after it. Every fork was offered the callee's ports.

FORK_TAG = "9fxced76sl"
FORK_SDP = MediaStream("10.0.0.7", 5004)  # private: behind its own NAT
FORK_RTP = ("198.51.100.20", 40000)  # what that NAT maps 10.0.0.7:5004 to


def early_media(sessions: Sessions) -> tuple[Session, PortPair, PortPair]:
    """An offer, the first fork's 183, then early media both ways: RTP and the callee's RTCP."""
    session, (caller,), (callee,) = call(sessions, now=0.0)
    for t in (0.5, 1.0):
        assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, t))[1] == CALLEE_RTP
        assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, t))[1] == CALLER_RTP
    sessions.receive(callee.rtcp, CALLEE_RTCP, 80, 1.0)
    return session, caller, callee


def test_a_later_fork_takes_the_callee_leg_over_on_the_same_ports() -> None:
    sessions = relay(learning_window_s=3.0)
    session, caller, callee = early_media(sessions)
    in_use = sessions.pool.in_use
    assert sessions.answer(CALL, CALLER_TAG, FORK_TAG, [FORK_SDP], 5.0) == (callee,)
    assert session.callee is not None
    assert (session.callee.tag, session.callee.media) == (FORK_TAG, (FORK_SDP,))
    assert session.leg(CALLEE_TAG) is None
    assert sessions.pool.in_use == in_use
    # Every latch of the leg is reset: the caller's media goes to the new SDP address...
    for kind in Kind:
        assert session.callee.latched(0, kind) is None
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 5.1)) == (
        callee.rtp,
        ("10.0.0.7", 5004),
    )
    assert forwarded(sessions.receive(caller.rtcp, CALLER_RTCP, 80, 5.1)) == (
        callee.rtcp,
        ("10.0.0.7", 5005),
    )
    # ...until the new phone latches, from wherever it sends.
    assert forwarded(sessions.receive(callee.rtp, FORK_RTP, 172, 5.2)) == (caller.rtp, CALLER_RTP)
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 5.3))[1] == FORK_RTP
    assert session.caller.latched(0, Kind.RTP) == CALLER_RTP  # the caller's side is untouched
    counters = session.counters()
    assert (counters.first_latches, counters.relatches, counters.fork_resets) == (5, 0, 1)


def test_the_superseded_forks_late_packets_are_dropped_before_and_after_the_new_one_latched() -> (
    None
):
    sessions = relay(learning_window_s=3.0)
    session, caller, callee = early_media(sessions)
    sessions.answer(CALL, CALLER_TAG, FORK_TAG, [FORK_SDP], 5.0)
    # Its early media still in flight: it may not latch the port the new fork is to take...
    assert dropped(sessions.receive(callee.rtp, CALLEE_RTP, 172, 5.01)) is (
        DropReason.NOT_LATCHED_PEER
    )
    assert dropped(sessions.receive(callee.rtcp, CALLEE_RTCP, 80, 5.01)) is (
        DropReason.NOT_LATCHED_PEER
    )
    sessions.receive(callee.rtp, FORK_RTP, 172, 5.1)
    # ...nor re-latch it within the new phone's learning window, where a stranger could.
    assert dropped(sessions.receive(callee.rtp, CALLEE_RTP, 172, 5.2)) is (
        DropReason.NOT_LATCHED_PEER
    )
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 5.3))[1] == FORK_RTP
    nat_remapped = ("198.51.100.20", 40002)
    assert isinstance(sessions.receive(callee.rtp, nat_remapped, 172, 5.4), Forward)
    assert session.counters().dropped(DropReason.NOT_LATCHED_PEER) == 3
    assert session.counters().callee_to_caller == Traffic(5, 4 * 172 + 80)  # none of the old fork's


def test_latches_are_reset_even_if_both_forks_sdps_name_the_same_address() -> None:
    # Two phones behind two NATs, each with the same private address and port in its SDP.
    same = MediaStream("192.168.0.20", 4000)
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions, callee=(same,))
    first_nat = ("198.51.100.30", 30000)
    sessions.receive(callee.rtp, first_nat, 172, 0.5)
    sessions.answer(CALL, CALLER_TAG, FORK_TAG, [same], 5.0)
    assert session.callee is not None
    assert session.callee.latched(0, Kind.RTP) is None
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 5.1))[1] == (
        "192.168.0.20",
        4000,
    )
    assert dropped(sessions.receive(callee.rtp, first_nat, 172, 5.2)) is (
        DropReason.NOT_LATCHED_PEER
    )
    sessions.receive(callee.rtp, FORK_RTP, 172, 5.3)
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 5.4))[1] == FORK_RTP


def test_the_new_forks_sdp_address_may_latch_even_if_the_old_one_sent_from_it() -> None:
    sessions = relay(learning_window_s=3.0)
    _, _, callee = early_media(sessions)
    # A second phone on the same public address and port (a downstream SBC, say).
    sessions.answer(CALL, CALLER_TAG, FORK_TAG, [CALLEE_SDP], 5.0)
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 5.1))[1] == CALLER_RTP


def test_after_the_takeover_the_new_fork_reoffers_and_the_old_tag_is_refused() -> None:
    sessions = relay()
    session, caller, callee = early_media(sessions)
    sessions.answer(CALL, CALLER_TAG, FORK_TAG, [FORK_SDP], 5.0)
    sessions.receive(callee.rtp, FORK_RTP, 172, 5.1)
    moved = MediaStream("10.0.0.7", 6000)
    assert sessions.offer(CALL, FORK_TAG, [moved], 30.0) == (callee,)
    assert sessions.answer(CALL, FORK_TAG, CALLER_TAG, [CALLER_SDP], 30.0) == (caller,)
    assert session.callee is not None
    assert session.callee.media == (moved,)
    in_use, counters = sessions.pool.in_use, session.counters()
    superseded = r"tag 'a6c85cf' answered, but a later fork's answer \('9fxced76sl'\) took"
    with pytest.raises(NegotiationError, match=superseded):
        sessions.offer(CALL, CALLEE_TAG, [CALLEE_SDP], 31.0)
    with pytest.raises(NegotiationError, match=superseded):
        sessions.answer(CALL, CALLEE_TAG, CALLER_TAG, [CALLER_SDP], 31.0)
    assert (session.callee.tag, session.callee.media) == (FORK_TAG, (moved,))
    assert (sessions.pool.in_use, session.counters()) == (in_use, counters)
    assert session.deadline_s == 30.0 + 60.0  # refused signalling is no activity


def test_the_first_fork_answering_again_takes_the_leg_back() -> None:
    # Both phones sent a 183 with SDP; the first one then answers with its 200.
    sessions = relay(learning_window_s=3.0)
    session, caller, callee = early_media(sessions)
    sessions.answer(CALL, CALLER_TAG, FORK_TAG, [FORK_SDP], 5.0)
    sessions.receive(callee.rtp, FORK_RTP, 172, 5.1)
    assert sessions.answer(CALL, CALLER_TAG, CALLEE_TAG, [CALLEE_SDP], 8.0) == (callee,)
    assert session.callee is not None
    assert session.callee.tag == CALLEE_TAG
    assert session.superseded == {FORK_TAG}
    assert forwarded(sessions.receive(callee.rtp, CALLEE_RTP, 172, 8.1))[1] == CALLER_RTP
    assert dropped(sessions.receive(callee.rtp, FORK_RTP, 172, 8.2)) is (
        DropReason.NOT_LATCHED_PEER
    )
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 8.3))[1] == CALLEE_RTP
    assert session.counters().fork_resets == 2


def test_a_forks_answer_that_cannot_apply_changes_nothing() -> None:
    sessions = relay()
    session, caller, _ = early_media(sessions)
    with pytest.raises(NegotiationError, match="has 0 m= lines where it had 1"):
        sessions.answer(CALL, CALLER_TAG, FORK_TAG, [], 5.0)
    assert session.callee is not None
    assert session.callee.tag == CALLEE_TAG
    assert session.superseded == set()
    assert session.callee.latched(0, Kind.RTP) == CALLEE_RTP
    assert forwarded(sessions.receive(caller.rtp, CALLER_RTP, 172, 5.1))[1] == CALLEE_RTP
    assert session.counters().fork_resets == 0


# --- errors ----------------------------------------------------------------------------------


def test_an_answer_for_an_unknown_call() -> None:
    with pytest.raises(UnknownCall, match="answer for unknown call-id 'nope'"):
        relay().answer("nope", CALLER_TAG, CALLEE_TAG, [CALLEE_SDP], 0)


@pytest.mark.parametrize(
    ("from_tag", "to_tag"),
    [("stranger", CALLEE_TAG), (CALLER_TAG, CALLER_TAG)],
)
def test_an_answer_must_name_the_offerer_and_another_leg(from_tag: str, to_tag: str) -> None:
    sessions = relay()
    sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 0)
    with pytest.raises(NegotiationError, match="the from-tag must be the offering leg"):
        sessions.answer(CALL, from_tag, to_tag, [CALLEE_SDP], 0)
    assert sessions.pool.in_use == 2  # the caller's pair and the pending callee's


def test_an_answer_to_the_callees_offer_must_name_the_caller() -> None:
    sessions = relay()
    session, _, _ = call(sessions)
    sessions.offer(CALL, CALLEE_TAG, [CALLEE_SDP], 1)
    with pytest.raises(NegotiationError, match="only the caller's offer is forked"):
        sessions.answer(CALL, CALLEE_TAG, "stranger", [CALLER_SDP], 2)
    assert [leg.tag for leg in session.legs] == [CALLER_TAG, CALLEE_TAG]


def test_an_offer_from_a_third_tag_is_refused() -> None:
    sessions = relay()
    call(sessions)
    with pytest.raises(NegotiationError, match="neither of its legs"):
        sessions.offer(CALL, "stranger", [CALLER_SDP], 1)


def test_pool_exhaustion_on_offer_changes_nothing() -> None:
    sessions = relay(pairs=3)
    with pytest.raises(PoolExhausted, match="all 3 RTP/RTCP port pairs"):
        sessions.offer(CALL, CALLER_TAG, [CALLER_SDP] * 4, 0)
    assert (len(sessions), sessions.pool.in_use, sessions.counters().sessions_started) == (0, 0, 0)


def test_pool_exhaustion_on_answer_changes_nothing() -> None:
    sessions = relay(pairs=4)
    sessions.offer(CALL, CALLER_TAG, [CALLER_SDP] * 2, 0)  # two pairs each side: all four
    with pytest.raises(PoolExhausted):  # a third stream needs a pair on both sides
        sessions.answer(CALL, CALLER_TAG, CALLEE_TAG, [CALLEE_SDP] * 3, 0)
    session = sessions.get(CALL)
    assert session is not None
    assert session.callee is not None
    assert session.callee.pending
    assert sessions.pool.in_use == 4
    assert sessions.answer(CALL, CALLER_TAG, CALLEE_TAG, [CALLEE_SDP] * 2, 0)
    assert session.callee.tag == CALLEE_TAG


def test_any_failure_while_allocating_gives_the_ports_back() -> None:
    draws = iter([0, 0])

    def choose(count: int) -> int:
        return next(draws)  # the third draw raises StopIteration: a broken source of chance

    sessions = Sessions(PortPool(30000, 30099, choose))
    with pytest.raises(StopIteration):
        sessions.offer(CALL, CALLER_TAG, [CALLER_SDP] * 3, 0)
    assert (len(sessions), sessions.pool.in_use) == (0, 0)


@pytest.mark.parametrize(
    ("address", "rtp", "rtcp", "message"),
    [
        ("pc33.example.com", 4000, None, "SDP address 'pc33.example.com' is not an IP address"),
        ("192.0.2.1", 70000, None, "SDP RTP port 70000 is outside 0–65535"),
        ("192.0.2.1", 4000, -1, "SDP RTCP port -1 is outside 0–65535"),
        ("192.0.2.1", 65535, None, "SDP RTP port 65535 leaves no RTCP port"),
    ],
)
def test_a_bad_media_stream_is_refused(
    address: str, rtp: int, rtcp: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MediaStream(address, rtp, rtcp)


def test_a_media_stream_is_canonical() -> None:
    stream = MediaStream("2001:DB8:0:0::1", 4000)
    assert stream == MediaStream("2001:db8::1", 4000, 4001)
    assert stream.advertised(Kind.RTCP) == ("2001:db8::1", 4001)
    assert MediaStream("192.0.2.1", 0).rtcp_port == 0


@pytest.mark.parametrize(
    "config",
    [{"learning_window_s": -1.0}, {"idle_timeout_s": 0.0}, {"hold_timeout_s": -5.0}],
)
def test_a_bad_config_is_refused(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SessionConfig(**config)


# --- idle timeout ----------------------------------------------------------------------------


def test_an_idle_session_is_reaped_and_its_ports_released() -> None:
    sessions = relay(idle_timeout_s=60.0)
    session, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 5.0)
    assert not session.expired(64.9)
    assert sessions.reap(64.9) == []
    assert session.expired(65.0)
    assert sessions.reap(65.0) == [session]
    assert (len(sessions), sessions.pool.in_use) == (0, 0)
    for port in (*caller, *callee):
        assert sessions.owner(port) is None
        assert dropped(sessions.receive(port, CALLER_RTP, 172, 66.0)) is DropReason.UNKNOWN_PORT
    assert dropped(session.receive(caller.rtp, CALLER_RTP, 172, 66.0)) is DropReason.UNKNOWN_PORT
    assert sessions.counters().sessions_expired == 1


def test_dropped_packets_do_not_keep_a_session_alive() -> None:
    sessions = relay(idle_timeout_s=60.0, learning_window_s=3.0)
    session, (caller,), _ = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    sessions.receive(caller.rtp, ATTACKER, 172, 59.0)
    assert sessions.reap(60.0) == [session]


def test_signalling_counts_as_activity() -> None:
    sessions = relay(idle_timeout_s=60.0)
    session, _, _ = call(sessions, now=0.0)
    sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 50.0)
    assert sessions.reap(60.0) == []
    assert sessions.reap(110.0) == [session]


def test_the_next_deadline_is_a_lower_bound_that_catches_up() -> None:
    sessions = relay(idle_timeout_s=60.0)
    assert sessions.next_deadline() is None
    _, (caller,), _ = call(sessions, now=0.0)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 30.0)
    assert sessions.next_deadline() == 60.0  # packets never touch the timers...
    assert sessions.reap(60.0) == []
    assert sessions.next_deadline() == 90.0  # ...the reap finds the session busy
    sessions.delete(CALL)
    assert sessions.reap(90.0) == []
    assert sessions.next_deadline() is None


def test_a_session_waiting_for_its_answer_expires_too() -> None:
    sessions = relay(idle_timeout_s=60.0)
    sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 0.0)
    (reaped,) = sessions.reap(60.0)
    assert reaped.call_id == CALL
    assert reaped.callee is not None
    assert reaped.callee.pending
    assert sessions.pool.in_use == 0


# --- delete and counters ---------------------------------------------------------------------


def test_delete_releases_the_ports_and_keeps_the_counts() -> None:
    sessions = relay()
    _, (caller,), (callee,) = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    sessions.receive(callee.rtp, CALLEE_RTP, 160, 0.0)
    ended = sessions.delete(CALL)
    assert ended is not None
    assert ended.counters().caller_to_callee == Traffic(1, 172)
    assert sessions.pool.in_use == 0
    assert sessions.delete(CALL) is None
    totals = sessions.counters()
    assert (totals.sessions_active, totals.sessions_started, totals.sessions_deleted) == (0, 1, 1)
    assert totals.media.caller_to_callee == Traffic(1, 172)
    assert totals.media.callee_to_caller == Traffic(1, 160)


def test_counters_per_direction_and_reason() -> None:
    sessions = relay(learning_window_s=3.0)
    session, (caller,), (callee,) = call(sessions)
    for t in range(3):
        sessions.receive(caller.rtp, CALLER_RTP, 172, float(t))
    sessions.receive(callee.rtp, CALLEE_RTP, 160, 0.0)
    sessions.receive(callee.rtcp, CALLEE_RTCP, 84, 0.0)
    sessions.receive(callee.rtp, ATTACKER, 160, 10.0)
    assert session.counters() == Counters(
        caller_to_callee=Traffic(3, 516),
        callee_to_caller=Traffic(2, 244),
        drops=(0, 1, 0, 0, 0),
        first_latches=3,
        relatches=0,
    )


def test_relay_counters_sum_live_and_ended_sessions_and_the_pool() -> None:
    sessions = relay(pairs=10)
    _, (caller,), _ = call(sessions)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 0.0)
    other = sessions.offer("second-call", "tag-2", [CALLER_SDP], 0.0)
    sessions.receive(other[0].rtp, CALLER_RTP, 172, 0.0)  # no answer yet: no destination
    sessions.delete(CALL)
    sessions.receive(caller.rtp, CALLER_RTP, 172, 1.0)  # the port is no longer anyone's
    totals = sessions.counters()
    assert (totals.sessions_active, totals.port_pairs_in_use, totals.port_pairs_capacity) == (
        1,
        2,  # the second call's caller pair and its pending callee's
        10,
    )
    assert totals.media.caller_to_callee == Traffic(1, 172)
    assert totals.media.dropped(DropReason.NO_DESTINATION) == 1
    assert totals.media.dropped(DropReason.UNKNOWN_PORT) == 1
    assert totals.media.first_latches == 2


# --- properties ------------------------------------------------------------------------------

SOURCES = [CALLER_RTP, CALLER_RTCP, CALLEE_RTP, CALLEE_RTCP, ATTACKER, ("192.168.1.10", 4000)]
ADDRESSES = ["192.168.1.10", "203.0.113.5", "0.0.0.0", "203.0.113.77"]

packets = st.tuples(
    st.integers(0, 8),  # which local port: the 8 of a two-stream call, or 8 = unknown
    st.sampled_from(SOURCES),
    st.floats(0, 2.0),  # time since the previous event
)
reoffers = st.tuples(st.booleans(), st.sampled_from(ADDRESSES), st.floats(0, 2.0))
#: An answer to the caller's offer from a fork: the current callee, another, or a former.
forks = st.tuples(
    st.sampled_from([CALLEE_TAG, FORK_TAG, "3rd-fork"]),
    st.sampled_from(ADDRESSES),
    st.floats(0, 2.0),
)
events = st.lists(packets | reoffers | forks, max_size=120)
Event: TypeAlias = tuple[int, Address, float] | tuple[bool, str, float] | tuple[str, str, float]


@settings(max_examples=300, deadline=None)
@given(script=events, window=st.sampled_from([0.0, 1.0, 3.0]))
def test_packets_go_only_to_a_latched_source_or_the_sdp_address(
    script: list[Event], window: float
) -> None:
    sessions = relay(learning_window_s=window)
    two = (CALLER_SDP, MediaStream("192.168.1.10", 4002))
    session, caller_ports, callee_ports = call(
        sessions, caller=two, callee=(CALLEE_SDP, MediaStream("203.0.113.5", 5002))
    )
    ports = [p for pair in caller_ports + callee_ports for p in pair]
    accepted: dict[int, set[Address]] = {port: set() for port in ports}
    now, total = 0.0, 0
    for event in script:
        now += event[2]
        assert session.callee is not None
        if isinstance(event[0], str):
            new = (MediaStream(str(event[1]), 5000), MediaStream(str(event[1]), 5002))
            if event[0] != session.callee.tag:  # a fork takes over: what it latched is gone
                accepted.update({port: set() for pair in callee_ports for port in pair})
            sessions.answer(CALL, CALLER_TAG, event[0], new, now)
            continue
        if isinstance(event[0], bool):
            callee_tag = session.callee.tag
            tag, other = (CALLER_TAG, callee_tag) if event[0] else (callee_tag, CALLER_TAG)
            new = (MediaStream(str(event[1]), 4000), MediaStream(str(event[1]), 4002))
            answerer = session.leg(other)
            assert answerer is not None
            sessions.offer(CALL, tag, new, now)
            sessions.answer(CALL, tag, other, answerer.media, now)
            continue
        index, source = int(event[0]), event[1]
        assert isinstance(source, tuple)
        port = ports[index] if index < 8 else 29000
        verdict = sessions.receive(port, source, 100, now)
        total += 1
        if index == 8:
            assert dropped(verdict) is DropReason.UNKNOWN_PORT
            continue
        owner = sessions.owner(port)
        assert owner is not None
        if not (isinstance(verdict, Drop) and verdict.reason is DropReason.NOT_LATCHED_PEER):
            accepted[port].add(source)
        if isinstance(verdict, Forward):
            other_leg = session.callee if owner.leg is session.caller else session.caller
            assert other_leg is not None
            pair = other_leg.ports[owner.stream]
            peer_port = pair.rtp if owner.kind is Kind.RTP else pair.rtcp
            assert verdict.from_port == peer_port
            sdp = other_leg.media[owner.stream].advertised(owner.kind)
            assert verdict.destination in accepted[peer_port] | {sdp}
            assert verdict.destination == (other_leg.latched(owner.stream, owner.kind) or sdp)
    counters = sessions.counters().media
    relayed = counters.caller_to_callee.packets + counters.callee_to_caller.packets
    assert relayed + sum(counters.drops) == total


@settings(max_examples=200, deadline=None)
@given(
    injections=st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from([ATTACKER, ("192.0.2.67", 1)])), max_size=60
    ),
    later=st.floats(3.0, 1000.0),
)
def test_after_the_window_injected_packets_are_dropped_and_never_a_destination(
    injections: list[tuple[int, Address]], later: float
) -> None:
    sessions = relay(learning_window_s=3.0)
    two = (CALLER_SDP, MediaStream("192.168.1.10", 4002))
    session, caller_ports, callee_ports = call(
        sessions, caller=two, callee=(CALLEE_SDP, MediaStream("203.0.113.5", 5002))
    )
    ports = [p for pair in caller_ports + callee_ports for p in pair]
    legit = {port: ("198.51.100.7", 61000 + i) for i, port in enumerate(ports)}
    for port, source in legit.items():
        sessions.receive(port, source, 100, 0.0)
    for index, attacker in injections:
        verdict = sessions.receive(ports[index], attacker, 100, later)
        assert dropped(verdict) is DropReason.NOT_LATCHED_PEER
        for port, source in legit.items():
            destination = forwarded(sessions.receive(port, source, 100, later))[1]
            assert destination not in (ATTACKER, ("192.0.2.67", 1))
    assert session.counters().dropped(DropReason.NOT_LATCHED_PEER) == len(injections)


lifecycle = st.lists(
    st.tuples(
        st.sampled_from(["offer", "answer", "delete", "reap"]),
        st.integers(0, 3),  # which call
        st.integers(1, 3),  # how many streams
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(script=lifecycle)
def test_every_allocated_port_has_an_owner_and_every_owner_a_port(
    script: list[tuple[str, int, int]],
) -> None:
    sessions = relay(pairs=12, idle_timeout_s=5.0)
    now = 0.0
    for step, (action, call_number, streams) in enumerate(script):
        now = float(step)
        call_id = f"call-{call_number}"
        try:
            if action == "offer":
                sessions.offer(call_id, "caller", [CALLER_SDP] * streams, now)
            elif action == "answer":
                sessions.answer(call_id, "caller", "callee", [CALLEE_SDP] * streams, now)
            elif action == "delete":
                sessions.delete(call_id)
            else:
                sessions.reap(now)
        except (NegotiationError, PoolExhausted):
            pass
        owned = [port for port in range(30000, 30024) if sessions.owner(port) is not None]
        assert owned == [port for port in range(30000, 30024) if sessions.pool.is_allocated(port)]
    for call_number in range(4):
        sessions.delete(f"call-{call_number}")
    assert sessions.pool.in_use == 0


class Claims:
    """The adapter's side of allocation, as a record: which pairs it bound or closed."""

    def __init__(self, taken: set[int]) -> None:
        self.taken = taken
        self.bound: set[int] = set()

    def claim(self, rtp_port: int) -> bool:
        if rtp_port in self.taken:
            return False
        self.bound.add(rtp_port)
        return True

    def release(self, rtp_port: int) -> None:
        self.bound.discard(rtp_port)


def test_a_pair_the_adapter_cannot_bind_is_set_aside_and_never_handed_out() -> None:
    claims = Claims(taken={30000})
    sessions = Sessions(PortPool(30000, 30007, lambda count: 0), claims=claims)
    session, caller_ports, callee_ports = call(sessions)
    used = {pair.rtp for pair in (*caller_ports, *callee_ports)}
    assert 30000 not in used
    assert used == claims.bound
    assert sessions.unusable == [30000]
    counters = sessions.counters()
    assert (counters.port_pairs_unusable, counters.port_pairs_in_use) == (1, 2)
    sessions.delete(CALL)
    assert claims.bound == set()  # what the session held is closed again
    assert session.call_id == CALL


def test_an_offer_short_of_bindable_pairs_gives_everything_back() -> None:
    claims = Claims(taken={30002})
    sessions = Sessions(PortPool(30000, 30003, lambda count: count - 1), claims=claims)
    with pytest.raises(PoolExhausted):
        sessions.offer(CALL, CALLER_TAG, [CALLER_SDP], 0)
    assert sessions.get(CALL) is None
    assert claims.bound == set()
    assert (sessions.pool.in_use, sessions.unusable) == (1, [30002])
