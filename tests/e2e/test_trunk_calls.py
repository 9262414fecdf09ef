"""Calls through SIP trunks with a real provider (issue 6.3-6.6): Kamailio stands for the
carrier (it challenges our INVITEs with 407 and relays them to the PSTN), a SIPp UAS for
the PSTN, a scripted phone for the extension that dials out.

* An extension dials ``0...``: the dial plan rewrites the number and sends it out through
  the trunk; the provider's 407 is answered with the trunk's credentials (the next CSeq),
  the PSTN sees the rewritten number and the trunk's caller ID (From and
  P-Asserted-Identity), the call is answered and ends with the caller's BYE.
* A first trunk that answers 503 gives way to the second, which completes the call; one
  that does not answer in time is CANCELled, and if it answers anyway it is hung up.
* Within one trunk, a server of the provider (by SRV) that answers 503 gives way to the
  next server, for registrations and calls alike (RFC 3263 §4.3).
* A trunk with all its channels taken is skipped: with one trunk, the caller gets 503.
* A phone that pretends to be the provider from another port is challenged like any
  phone: only the trunk's address is trusted.

Needs the Debian packages kamailio and sip-tester; skipped without them.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PASSWORDS, EdgeFactory, EdgeProc, write_tenant
from .dns_zone import DnsZone
from .provider import Binding, Provider, provider_scenario, pstn_call, pstn_uas, traced_messages
from .test_prepaid_calls import cdrs_and_balance, top_up

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from sipbench import (
    SippOptions,
    SippProcess,
    User,
    free_udp_port,
    register_options,
    run_sipp,
    scenario,
    write_users_csv,
)
from sipbench.scripted import SDP, ScriptedPhone
from sipedge.sip.message import Request, Response

pytestmark = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("sipp") is None,
    reason="needs the Debian packages kamailio and sip-tester",
)

PASSWORD_2001 = "pw-2001-test"
#: An offer of PCMA and PCMU, for a trunk that takes PCMU only.
TWO_CODECS = SDP.replace(b"RTP/AVP 0\r\n", b"RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\n")
#: The trunk's DID: its last four digits are extension 2002 (the dial plan strips 4930555).
DID = "49305552002"


def trunk_manifest(
    name: str,
    tenant: str,
    provider: Provider,
    *,
    max_channels: int = 0,
    caller_id: str = "",
    register: bool = False,
    did: str = "",
    codecs: str = "",
    srv_host: str = "",
    transport: str = "udp",
    outbound_proxy: str = "",
) -> str:
    """``srv_host``: the trunk names that host, without a port (located by SRV)."""
    policy = caller_id or "{policy: trunk}"
    host = srv_host or provider.host
    port = "" if srv_host else f"port: {provider.port}"
    dids = f'["+{did}"]' if did else "[]"
    registers = "{enabled: true, expires: 60}" if register else "{enabled: false}"
    return textwrap.dedent(f"""
        apiVersion: cloudpbx.io/v1
        kind: Trunk
        metadata: {{name: {name}}}
        spec:
          tenant: {tenant}
          host: {host}
          {port}
          transport: {transport}
          {f"outboundProxy: {outbound_proxy}" if outbound_proxy else ""}
          username: {provider.username}
          password: {{file: {name}.password}}
          register: {registers}
          dids: {dids}
          from: {{user: "4930555000", domain: {provider.realm}}}
          callerId: {policy}
          maxChannels: {max_channels}
          {f"codecs: [{codecs}]" if codecs else ""}
    """)


def dial_plan(tenant: str, trunks: list[str], no_answer_s: int = 30) -> str:
    return textwrap.dedent(f"""
        apiVersion: cloudpbx.io/v1
        kind: DialPlan
        metadata: {{name: out}}
        spec:
          tenant: {tenant}
          rules:
            - name: national
              match: {{prefix: "0"}}
              strip: 1
              prepend: "49"
              route: {{trunks: [{", ".join(trunks)}], noAnswerSeconds: {no_answer_s}}}
            - name: did
              match: {{prefix: "4930555"}}
              strip: 7
              route: {{extension: true}}
    """)


def start_with_trunks(
    edge_factory: EdgeFactory,
    providers: dict[str, Provider],
    *,
    max_channels: int = 0,
    caller_id: str = "",
    billing: str = "",
    extra_args: tuple[str, ...] = (),
    register: bool = False,
    no_answer_s: int = 30,
    codecs: str = "",
    srv_host: str = "",
    transport: str = "udp",
    outbound_proxy: str = "",
) -> EdgeProc:
    tenant = f"tr{secrets.token_hex(3)}"

    def manifest(folder: Path) -> None:
        write_tenant(folder, tenant, f"{tenant}.pbx.test")
        if billing:
            path = folder / f"{tenant}.yaml"
            path.write_text(path.read_text().replace("  limits:", billing + "  limits:"))
        documents = [
            trunk_manifest(
                name,
                tenant,
                provider,
                max_channels=max_channels,
                caller_id=caller_id,
                register=register,
                did=DID if index == 0 else "",
                codecs=codecs,
                srv_host=srv_host,
                transport=transport,
                outbound_proxy=outbound_proxy,
            )
            for index, (name, provider) in enumerate(providers.items())
        ]
        documents.append(dial_plan(tenant, list(providers), no_answer_s))
        (folder / "trunks.yaml").write_text("---\n".join(documents), encoding="utf-8")
        for name, provider in providers.items():
            (folder / f"{name}.password").write_text(provider.password + "\n", encoding="utf-8")

    return edge_factory(
        manifest=manifest, tenant=tenant, domain=f"{tenant}.pbx.test", extra_args=extra_args
    )


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    with Provider(tmp_path) as running:
        yield running


def caller_phone(edge: EdgeProc) -> ScriptedPhone:
    return ScriptedPhone("2001", edge.domain, PASSWORD_2001)


def talk(
    caller: ScriptedPhone, edge: EdgeProc, number: str, hold_s: float = 0.0
) -> tuple[Request, Response]:
    """Call ``number``, expect it answered, ACK, hold ``hold_s``, hang up (BYE → 200);
    returns the INVITE with credentials and the 200."""
    invite = caller.invite(edge.port, number)
    ok = caller.final()
    assert ok.status == 200, f"{ok.status} {ok.reason}"
    target = str(ok.contacts[0].uri)  # type: ignore[index]
    to = ok.headers.get("To") or ""
    cseq = invite.cseq.number
    caller.send(caller.request("ACK", target, to, invite.call_id, cseq), edge.port)
    time.sleep(hold_s)
    caller.send(caller.request("BYE", target, to, invite.call_id, cseq + 1), edge.port)
    assert caller.final().status == 200
    return invite, ok


def test_an_extension_calls_out_through_the_trunk(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    edge = start_with_trunks(edge_factory, {"carrier-a": provider})
    caller = caller_phone(edge)
    try:
        with pstn_uas(provider, tmp_path) as uas:
            _, ok = talk(caller, edge, "0301234567")
            assert b"m=audio" in ok.body  # the PSTN's answer
            result = uas.wait()
        assert result.ok, result.describe()
        invites = provider.invites()
        assert [(i.status, i.user) for i in invites if i.method == "INVITE"] == [
            (407, None),  # our first INVITE: challenged
            (None, provider.username),  # with the trunk's credentials: relayed
        ]
        first, second = (i for i in invites if i.method == "INVITE")
        assert first.call_id == second.call_id
        assert second.cseq == (first.cseq or 0) + 1
        messages = traced_messages(result)
        assert "INVITE sip:49301234567@" in messages  # strip 1, prepend 49
        assert "From: <sip:4930555000@provider.test>" in messages  # the trunk's caller ID
        assert "P-Asserted-Identity: <sip:4930555000@provider.test>" in messages
    finally:
        caller.close()


#: Calls out are rated by the tenant's table (1.20 a minute to 49..., by the second); its
#: internal calls are free.
PREPAID = (
    "  billing:\n    plan: prepaid\n    currency: EUR\n"
    '    rates: [{prefix: "49", perMinute: "1.20", connectFee: "0.10", increments: 1/1}]\n'
)


def test_a_provider_challenging_bye_and_reinvite_gets_them_answered(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """Some carriers challenge in-dialog requests too: the caller's hold (re-INVITE) and
    hang-up (BYE) reach the PSTN through the provider's 407, answered with the trunk's
    credentials and the next CSeq of the trunk's dialog."""
    with Provider(tmp_path, challenge_in_dialog=True) as provider:
        edge = start_with_trunks(edge_factory, {"carrier-a": provider}, codecs="PCMU")
        caller = caller_phone(edge)
        hold = provider_scenario("pstn_uas_hold")
        try:
            with pstn_uas(provider, tmp_path, server_scenario=hold) as uas:
                invite = caller.invite(edge.port, "0301234567")
                ok = caller.final()
                assert ok.status == 200
                target = str(ok.contacts[0].uri)  # type: ignore[index]
                to = ok.headers.get("To") or ""
                call_id, cseq = invite.call_id, invite.cseq.number
                caller.send(caller.request("ACK", target, to, call_id, cseq), edge.port)
                reinvite = caller.request("INVITE", target, to, call_id, cseq + 1, body=TWO_CODECS)
                caller.send(reinvite, edge.port)
                held = caller.final()
                assert (held.status, held.body.endswith(b"a=recvonly\r\n")) == (200, True)
                caller.send(caller.request("ACK", target, to, call_id, cseq + 1), edge.port)
                caller.send(caller.request("BYE", target, to, call_id, cseq + 2), edge.port)
                assert caller.final().status == 200
                result = uas.wait()
            assert result.ok, result.describe()
            offers = traced_messages(result).split("m=audio")[1:]
            assert len(offers) == 4  # offer and answer, twice
            assert offers[2].startswith(" 4000 RTP/AVP 0\n")  # the hold: PCMU only (trace: LF)
            assert "PCMA" not in offers[2].split("----")[0]
        finally:
            caller.close()
        in_dialog = [
            (o.method, o.status, o.user, o.cseq)
            for o in provider.outcomes()
            if o.method in ("INVITE", "BYE") and (o.cseq or 0) > 2
        ]
        assert in_dialog == [
            ("INVITE", 407, None, 3),  # the hold, challenged
            ("INVITE", None, provider.username, 4),  # answered: relayed to the PSTN
            ("BYE", 407, None, 5),  # the next CSeq of the trunk's dialog
            ("BYE", None, provider.username, 6),
        ]


def test_a_call_out_is_rated_and_charged_to_the_prepaid_tenant(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    edge = start_with_trunks(
        edge_factory,
        {"carrier-a": provider},
        billing=PREPAID,
        extra_args=("--billing", url, "--credit-slice", "2"),
    )
    caller = caller_phone(edge)
    try:
        broke = caller.invite(edge.port, "0301234567")  # no money yet
        refused = caller.final()
        assert (refused.status, refused.reason) == (402, "Insufficient Balance")
        caller.ack_failure(broke, refused, edge.port)
        top_up(url, edge.tenant, 1_000_000)
        with pstn_uas(provider, tmp_path) as uas:
            invite, _ = talk(caller, edge, "0301234567", hold_s=2.2)
            assert uas.wait().ok
        cdrs, balance = cdrs_and_balance(url, edge.tenant, 3)
        answered = [c for c in cdrs if c.leg == "A" and c.call_id == invite.call_id]
        assert len(answered) == 1
        cdr = answered[0]
        assert cdr.callee == "49301234567"
        assert cdr.rate is not None
        assert cdr.rate.prefix == "49"
        assert cdr.billable_s >= 2
        assert cdr.amount_micros == 100_000 + cdr.billable_s * 20_000
        assert balance == 1_000_000 - cdr.amount_micros
    finally:
        caller.close()


def call_out_answered(edge: EdgeProc, pstn: Provider, tmp_path: Path) -> None:
    """2001 calls 0301234567 out, the PSTN behind ``pstn`` answers, 2001 hangs up."""
    caller = caller_phone(edge)
    try:
        with pstn_uas(pstn, tmp_path) as uas:
            talk(caller, edge, "0301234567")
            assert uas.wait().ok
    finally:
        caller.close()


def carrier_records(*ports: int) -> dict[tuple[str, str], list[str]]:
    """carrier.test's SRV records: a server on 127.0.0.1 per port, in priority order."""
    servers = [(f"sip{n}.carrier.test", port) for n, port in enumerate(ports, 1)]
    records = {
        ("_sip._udp.carrier.test", "SRV"): [
            f"{10 * n} 0 {port} {name}." for n, (name, port) in enumerate(servers, 1)
        ]
    }
    records.update({(name, "A"): ["127.0.0.1"] for name, _ in servers})
    return records


def start_at_carrier(
    edge_factory: EdgeFactory, provider: Provider, zone: DnsZone, *, register: bool = False
) -> EdgeProc:
    """An edge whose trunk names carrier.test without a port, asking ``zone`` for it."""
    return start_with_trunks(
        edge_factory,
        {"carrier-a": provider},
        srv_host="carrier.test",
        register=register,
        extra_args=("--dns-server", zone.server),
    )


def test_a_provider_named_without_a_port_is_found_by_its_srv_records(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    """RFC 3263 §4.2: the trunk names carrier.test and no port; the edge asks the DNS
    server (--dns-server) for _sip._udp.carrier.test, which points at the provider's
    port, and the call goes out there; the provider's INVITE back to a DID is recognised
    as the trunk's at that address."""
    with DnsZone(carrier_records(provider.port)) as zone:
        edge = start_at_carrier(edge_factory, provider, zone)
        call_out_answered(edge, provider, tmp_path)
        assert ("_sip._udp.carrier.test.", "SRV") in zone.queries
    assert [i.status for i in provider.invites() if i.method == "INVITE"] == [407, None]


def test_a_server_of_the_provider_out_of_service_gives_way_to_its_next(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    """RFC 3263 §4.3: carrier.test's SRV records list two servers; the first (priority
    10) answers every REGISTER and INVITE 503, as a server in maintenance does. The
    trunk registers with the second, and a call out goes there after the first's 503,
    with the same trunk: no second trunk is needed for a provider's own failover."""
    with Provider(tmp_path / "down", out_of_service=True) as down:
        with DnsZone(carrier_records(down.port, provider.port)) as zone:
            edge = start_at_carrier(edge_factory, provider, zone, register=True)
            registered(provider)
            call_out_answered(edge, provider, tmp_path)
        failovers = {
            (labels["server"], labels["method"]): value
            for labels, value in edge.samples("sip_trunk_server_failovers_total")
        }
        assert failovers == {(down.address, "REGISTER"): 1.0, (down.address, "INVITE"): 1.0}
        assert [(r.status, r.user) for r in down.registers()] == [(503, None)]
        assert [(i.status, i.user) for i in down.invites()] == [(503, None)]
    assert [r.status for r in provider.registers()] == [401, 200]
    assert [i.status for i in provider.invites() if i.method == "INVITE"] == [407, None]


def test_a_silent_server_of_the_provider_gives_way_to_its_next(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    """The first server carrier.test's SRV records list takes datagrams and says nothing
    (a dead host would not even do that): after 4 s without a 100 Trying the INVITE goes
    to the next server, which completes the call, rather than waiting out Timer B (32 s)
    or the route's no-answer time and failing the trunk."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(0.1)
        silent_port = silent.getsockname()[1]
        with DnsZone(carrier_records(silent_port, provider.port)) as zone:
            edge = start_at_carrier(edge_factory, provider, zone)
            started = time.monotonic()
            call_out_answered(edge, provider, tmp_path)
            waited_s = time.monotonic() - started
        heard = []
        with contextlib.suppress(TimeoutError):
            while True:
                heard.append(silent.recv(65535))
    print(f"answered by the second server after {waited_s:.2f} s")  # noqa: T201 (pytest -s)
    assert heard
    assert all(datagram.startswith(b"INVITE sip:49301234567@carrier.test") for datagram in heard)
    assert [i.status for i in provider.invites() if i.method == "INVITE"] == [407, None]


def test_a_trunk_answering_503_fails_over_to_the_next(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    with (
        Provider(tmp_path / "a", fail_invites=True) as down,
        Provider(tmp_path / "b") as up,
    ):
        edge = start_with_trunks(edge_factory, {"carrier-a": down, "carrier-b": up})
        call_out_answered(edge, up, tmp_path)
        assert [i.status for i in down.invites() if i.method == "INVITE"] == [407, 503]
        assert [i.status for i in up.invites() if i.method == "INVITE"] == [407, None]


def test_a_trunk_that_does_not_answer_in_time_gives_way_to_the_next(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """noAnswerSeconds 2: the first trunk's PSTN only rings, so after 2 s it is
    CANCELled and the second trunk completes the call."""
    with (
        Provider(tmp_path / "a") as slow,
        Provider(tmp_path / "b") as up,
    ):
        edge = start_with_trunks(edge_factory, {"carrier-a": slow, "carrier-b": up}, no_answer_s=2)
        caller = caller_phone(edge)
        try:
            with (
                pstn_uas(
                    slow, tmp_path, server_scenario=_ringing_only(tmp_path), name="slow"
                ) as ringing,
                pstn_uas(up, tmp_path) as uas,
            ):
                started = time.monotonic()
                talk(caller, edge, "0301234567")
                waited_s = time.monotonic() - started
                assert uas.wait().ok
                assert "CANCEL sip:" in traced_messages(ringing.wait())
        finally:
            caller.close()
        print(f"answered by the second trunk after {waited_s:.2f} s")  # noqa: T201 (pytest -s)
        assert [i.status for i in up.invites() if i.method == "INVITE"] == [407, None]


def test_a_trunk_answering_after_it_was_given_up_is_hung_up_and_the_next_one_connects(
    edge_factory: EdgeFactory,
) -> None:
    """noAnswerSeconds 1: the first trunk rings, is CANCELled, and answers anyway (its 200
    crossed our CANCEL, RFC 3261 §9.1). That answer is ACKed and hung up at once: the
    caller has moved on to the second trunk, and the first one's channel was given back.
    The second trunk answers and the call is the caller's with it. (Scripted trunks: no
    proxy in between could produce the crossing on demand.)"""
    tenant = f"tr{secrets.token_hex(3)}"
    late, next_one = (ScriptedPhone("pstn", "pstn.test", "unused") for _ in range(2))

    def manifest(folder: Path) -> None:
        write_tenant(folder, tenant, f"{tenant}.pbx.test")
        documents = [
            textwrap.dedent(f"""
                apiVersion: cloudpbx.io/v1
                kind: Trunk
                metadata: {{name: {name}}}
                spec:
                  tenant: {tenant}
                  host: 127.0.0.1
                  port: {trunk.port}
                  username: "4930555000"
                  password: {{file: trunk.password}}
                  register: {{enabled: false}}
                  maxChannels: 1
            """)
            for name, trunk in (("carrier-a", late), ("carrier-b", next_one))
        ]
        documents.append(dial_plan(tenant, ["carrier-a", "carrier-b"], no_answer_s=1))
        (folder / "trunks.yaml").write_text("---\n".join(documents), encoding="utf-8")
        (folder / "trunk.password").write_text("secret\n", encoding="utf-8")

    edge = edge_factory(manifest=manifest, tenant=tenant, domain=f"{tenant}.pbx.test")
    caller = caller_phone(edge)
    try:
        invite = caller.invite(edge.port, "0301234567")
        ringing = late.receive_request("INVITE")
        late.answer(ringing, 180, "Ringing", edge.port)
        late.answer(late.receive_request("CANCEL"), 200, "OK", edge.port)
        late.answer(ringing, 200, "OK", edge.port, SDP)  # instead of 487
        assert late.receive_request("ACK").call_id == ringing.call_id
        bye = late.receive_request("BYE")
        assert bye.call_id == ringing.call_id
        late.answer(bye, 200, "OK", edge.port)

        next_one.answer(next_one.receive_request("INVITE"), 200, "OK", edge.port, SDP)
        ok = caller.final()
        assert ok.status == 200
        target, to = str(ok.contacts[0].uri), ok.headers.get("To") or ""  # type: ignore[index]
        cseq = invite.cseq.number
        caller.send(caller.request("ACK", target, to, invite.call_id, cseq), edge.port)
        caller.send(caller.request("BYE", target, to, invite.call_id, cseq + 1), edge.port)
        assert caller.final().status == 200
        assert next_one.receive_request("BYE").method == "BYE"  # the call was the second's
    finally:
        for phone in (caller, late, next_one):
            phone.close()


def test_a_call_from_a_network_the_trunk_lists_reaches_its_did(
    edge_factory: EdgeFactory,
) -> None:
    """inboundSources [127.0.0.1]: a provider server other than the trunk's address (here
    any port on 127.0.0.1) calls the trunk's DID and 2002 rings, unchallenged; the phones
    on that network are still phones: they are challenged when they register, and so is
    an INVITE from there to a number that is not one of the trunk's DIDs."""
    tenant = f"tr{secrets.token_hex(3)}"
    domain = f"{tenant}.pbx.test"

    def manifest(folder: Path) -> None:
        write_tenant(folder, tenant, domain)
        trunk = textwrap.dedent(f"""
            apiVersion: cloudpbx.io/v1
            kind: Trunk
            metadata: {{name: carrier-a}}
            spec:
              tenant: {tenant}
              host: 192.0.2.10
              username: "4930555000"
              password: {{file: trunk.password}}
              register: {{enabled: false}}
              dids: ["+{DID}"]
              inboundSources: [127.0.0.1]
        """)
        plan = dial_plan(tenant, ["carrier-a"])
        (folder / "trunks.yaml").write_text(trunk + "---\n" + plan, encoding="utf-8")
        (folder / "trunk.password").write_text("secret\n", encoding="utf-8")

    edge = edge_factory(manifest=manifest, tenant=tenant, domain=domain)
    pstn = ScriptedPhone("+4930123456", "provider.test", "no password")
    callee = ScriptedPhone("2002", domain, PASSWORDS["2002"])
    try:
        callee.register(edge.port)  # challenged (register asserts the 401), from 127.0.0.1
        to = f"<sip:{DID}@{domain}>"
        invite = pstn.request("INVITE", f"sip:{DID}@{domain}", to, "from-pool-1", 1, body=SDP)
        pstn.send(invite, edge.port)
        ringing = callee.receive_request("INVITE")
        assert ringing.from_.uri.user == "+4930123456"  # type: ignore[union-attr]
        callee.answer(ringing, 200, "OK", edge.port, SDP)
        ok = pstn.final()
        assert ok.status == 200, (ok.status, ok.reason)
        target, to = str(ok.contacts[0].uri), ok.headers.get("To") or ""  # type: ignore[index]
        pstn.send(pstn.request("ACK", target, to, "from-pool-1", 1), edge.port)
        pstn.send(pstn.request("BYE", target, to, "from-pool-1", 2), edge.port)
        callee.answer(callee.receive_request("BYE"), 200, "OK", edge.port)
        assert pstn.final().status == 200

        other = pstn.request("INVITE", f"sip:2002@{domain}", f"<sip:2002@{domain}>", "x-2", 1)
        pstn.send(other, edge.port)
        assert pstn.final().status == 407  # not a DID: a phone's call, challenged
    finally:
        for phone in (pstn, callee):
            phone.close()


def test_a_trunk_without_a_free_channel_is_not_used(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    """maxChannels 1: while one call rings, a second finds no channel (503) and the
    provider never sees it."""
    edge = start_with_trunks(edge_factory, {"carrier-a": provider}, max_channels=1)
    first, second = caller_phone(edge), caller_phone(edge)
    try:
        with pstn_uas(provider, tmp_path, server_scenario=_ringing_only(tmp_path)):
            first.invite(edge.port, "0301234567")
            ringing = first.receive()
            while not (isinstance(ringing, Response) and ringing.status == 180):
                ringing = first.receive()  # the PSTN rings: the call holds the one channel
            second.invite(edge.port, "0307654321")
            refused = second.final()
            assert (refused.status, refused.reason) == (503, "Service Unavailable")
        relayed = [i for i in provider.invites() if i.method == "INVITE" and i.status is None]
        assert len(relayed) == 1
    finally:
        first.close()
        second.close()


def test_a_phone_claiming_a_trunk_contact_from_elsewhere_is_challenged(
    edge_factory: EdgeFactory, provider: Provider
) -> None:
    edge = start_with_trunks(edge_factory, {"carrier-a": provider})
    impostor = ScriptedPhone("2001", edge.domain, "not-the-password")
    try:
        user = f"trunk-carrier-a.{edge.tenant}"
        request = impostor.request(
            "INVITE",
            f"sip:{user}@127.0.0.1:{edge.port}",
            f"<sip:2002@{edge.domain}>",
            "impostor-1",
            1,
            body=SDP,
        )
        impostor.send(request, edge.port)
        assert impostor.final().status == 407
    finally:
        impostor.close()


def test_an_inbound_call_to_a_did_rings_its_extension(
    edge_factory: EdgeFactory, provider: Provider, tmp_path: Path
) -> None:
    """The edge registers the trunk; the PSTN calls the DID; the provider sends it to the
    registered Contact; the dial plan turns the DID into extension 2002 (a registered SIPp
    phone), which answers.
    An unknown DID gets 404 and reaches nobody."""
    edge = start_with_trunks(edge_factory, {"carrier-a": provider}, register=True)
    binding = registered(provider)
    assert f"trunk-carrier-a.{edge.tenant}@" in binding.contact
    did_rings_2002(edge, provider, tmp_path)
    unknown = pstn_call(provider, "49305559999", tmp_path, answered=False, name="unknown")
    assert unknown.status == 404


def test_a_tcp_trunk_registers_calls_out_and_takes_calls_over_tcp(
    edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """A trunk with ``transport: tcp``: its REGISTERs and the call out reach the provider
    over TCP (one connection the edge opened), its Contact says transport=tcp, and the
    provider's INVITE for the DID comes to it over TCP and rings the extension. The PSTN
    behind the provider stays on UDP."""
    with Provider(tmp_path / "tcp", tcp=True) as provider:
        edge = start_with_trunks(
            edge_factory, {"carrier-a": provider}, register=True, transport="tcp"
        )
        binding = registered(provider)
        assert "transport=tcp" in binding.contact
        call_out_answered(edge, provider, tmp_path)
        did_rings_2002(edge, provider, tmp_path)
    assert [(r.status, r.transport) for r in provider.registers()] == [
        (401, "tcp"),
        (200, "tcp"),
    ]
    from_edge = [
        i for i in provider.invites() if i.source != f"{provider.host}:{provider.pstn_uac_port}"
    ]
    assert [(i.status, i.transport) for i in from_edge] == [(407, "tcp"), (None, "tcp")]
    assert len({i.source for i in from_edge} | {r.source for r in provider.registers()}) == 1
    (inbound,) = [i for i in provider.invites() if i not in from_edge]
    assert inbound.ruri is not None
    assert inbound.ruri.endswith(f"@127.0.0.1:{edge.port};transport=tcp")  # sent over TCP


def test_a_trunk_through_its_outbound_proxy(edge_factory: EdgeFactory, tmp_path: Path) -> None:
    """The trunk names its provider's domain (provider.test, which has no address: the
    DNS server answers NXDOMAIN) and an outbound proxy at the provider's address. Every
    request goes to the proxy with the domain in its Request-URI and a loose Route to the
    proxy; the provider's INVITE for the DID comes from the proxy's address and is the
    trunk's."""
    with Provider(tmp_path / "proxied") as provider, DnsZone({}) as zone:
        edge = start_with_trunks(
            edge_factory,
            {"carrier-a": provider},
            srv_host=provider.realm,
            outbound_proxy=f"sip:{provider.address}",
            register=True,
            extra_args=("--dns-server", zone.server),
        )
        registered(provider)
        call_out_answered(edge, provider, tmp_path)
        did_rings_2002(edge, provider, tmp_path)
    assert [r.status for r in provider.registers()] == [401, 200]
    pstn = f"{provider.host}:{provider.pstn_uac_port}"
    from_edge = [i for i in provider.invites() if i.source != pstn]
    assert [i.status for i in from_edge] == [407, None]
    assert from_edge[0].ruri == f"sip:49301234567@{provider.realm}"


def registered(provider: Provider) -> Binding:
    """The trunk's one binding at ``provider``, once the edge registered it."""
    deadline = time.monotonic() + 10
    while not provider.registered_contacts() and time.monotonic() < deadline:
        time.sleep(0.2)
    (binding,) = provider.registered_contacts()
    return binding


def did_rings_2002(edge: EdgeProc, provider: Provider, tmp_path: Path) -> None:
    """The PSTN calls the trunk's DID; a SIPp phone registered as extension 2002 answers,
    having been sent the dial plan's extension and the PSTN caller's number."""
    extension = User("2002", "pw-2002-test", edge.domain)
    port = free_udp_port()
    registered = run_sipp(
        register_options(
            f"127.0.0.1:{edge.port}",
            write_users_csv(tmp_path / "2002.csv", [extension]),
            edge.domain,
            scenario=scenario("register"),
            local_port=port,
            calls=1,
            name="register-2002",
        ),
        tmp_path,
        timeout_s=20,
    )
    assert registered.ok, registered.describe()
    options = SippOptions(
        scenario=scenario("uas"), local_port=port, calls=1, trace_messages=True, name="ext-2002"
    )
    with SippProcess(options, tmp_path) as phone:
        phone.wait_listening()
        answered = pstn_call(provider, DID, tmp_path, caller="4930123456")
        rang = phone.wait(timeout_s=15)
    assert answered.status == 200
    assert answered.result.ok, answered.result.describe()
    assert rang.ok, rang.describe()
    seen = traced_messages(rang)
    assert "INVITE sip:2002@" in seen  # the DID's extension, by the dial plan
    assert "From: <sip:4930123456@" in seen  # the PSTN caller's number


def _ringing_only(workdir: Path) -> Path:
    """A SIPp UAS that answers 180 and nothing more until its caller gives up."""
    path = workdir / "pstn_ringing.xml"
    path.write_text(
        textwrap.dedent("""\
            <?xml version="1.0" encoding="ISO-8859-1" ?>
            <scenario name="ringing only">
              <recv request="INVITE" />
              <send>
                <![CDATA[
                  SIP/2.0 180 Ringing
                  [last_Via:]
                  [last_From:]
                  [last_To:];tag=[pid]SIPpTag01[call_number]
                  [last_Call-ID:]
                  [last_CSeq:]
                  Content-Length: 0

                ]]>
              </send>
              <recv request="CANCEL" timeout="20000" ontimeout="done" />
              <label id="done" />
            </scenario>
        """),
        encoding="utf-8",
    )
    return path
