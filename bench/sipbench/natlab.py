"""The NAT lab: a phone behind a masquerading home router, a phone and the PBX on the internet.

Built from network namespaces and veth pairs, addresses from RFC 5737 only, every name
unique to the run, everything deleted on exit (deleting a namespace deletes its links)::

      pha (phone A)          rtr (home router)                 net (the internet: a bridge)
    192.0.2.10/24  ── lan ── 192.0.2.1 | 198.51.100.10 ── wan ──┬── 198.51.100.1  pbx (edge, relay)
                             MASQUERADE on wan                  └── 198.51.100.20 phb (phone B)

Phone A's packets reach the internet from 198.51.100.10 with the router's ports; nothing
on the internet can reach 192.0.2.10, the address phone A writes in its SDP. That is the
one-way audio of a phone behind a home router. :meth:`NatLab.popen` runs a command inside
one of the namespaces. Needs root (``ip netns``, ``iptables``); no packet leaves the host.

:meth:`NatLab.count_media` and :meth:`NatLab.media_counts` count, with iptables rules in a
role's own namespace, the RTP and RTCP packets it sends to a peer, those that arrive from
it, those a closed port refused and those sent after the hang-up: what really crossed
the phone's own interface (for phone A, the private side of its NAT), not what a relay
says it forwarded. The rules live in the lab's namespaces only, never the host's, and
vanish with them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PHONE_A = "192.0.2.10"
ROUTER_LAN = "192.0.2.1"
ROUTER_WAN = "198.51.100.10"
PBX = "198.51.100.1"
PHONE_B = "198.51.100.20"

#: The first two bytes of a UDP payload (RFC 3550 §5.1), as u32 tests
#: (iptables-extensions(8)): the version bits (mask 0xC0: V=2) and the payload type. RTP
#: carrying PCMU is payload type 0 with either marker bit (mask 0x7F); RTCP is packet type
#: 200-204 (SR, RR, SDES, BYE, APP; RFC 3550 §6.4), the first of any compound packet.
#: Neither matches SIP (ASCII: version bits 01), CRLF keep-alives or STUN (bits 00).
MEDIA_KINDS = {"rtp": ">>16&0xC07F=0x8000", "rtcp": ">>16&0xC0FF=0x80C8:0x80CC"}
#: Where those bytes are: past the IP header (its IHL in 32-bit words: ``0>>22&0x3C``) and
#: the 8-byte UDP header; in an ICMP error, past the ICMP header (8 bytes) and the quoted
#: IP and UDP headers (Linux quotes up to 576 bytes, as RFC 1812 §4.3.2.3 asks).
_IN_UDP = "0>>22&0x3C@8"
_IN_ICMP = "0>>22&0x3C@8>>22&0x3C@16"
#: A SIP request whose method is BYE (RFC 3261 §15.1): the payload starts "BYE ".
_BYE = "=0x42594520"
#: Once a BYE has passed, this ``recent`` list of the role's namespace has an entry; the
#: mask makes every address the same one, so a BYE to the edge marks RTP to a relay.
_HUNG_UP = ["-m", "recent", "--name", "cpbx-hung-up", "--mask", "0.0.0.0"]
_COUNTER = re.compile(r'^\[(\d+):(\d+)\] -A \w+ .*--comment "?cpbx-(\w+)-(\w+)"?')


@dataclass(frozen=True)
class Flow:
    """One kind of media between a role and a peer, as the role's own kernel counted it.

    ``sent``: packets the role sent to the peer (before any NAT); ``arrived``: packets
    from the peer that reached the role (after the router undid its NAT); ``refused``:
    the role's packets that the peer answered with ICMP port unreachable, i.e. that met
    a closed port there (a relay that has already ended the call); ``after_bye``: those
    of ``sent`` that left after a BYE left or reached the role, the hang-up's tail.
    Bytes are IP bytes.
    """

    sent: int
    sent_bytes: int
    arrived: int
    arrived_bytes: int
    refused: int
    after_bye: int


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class NatLab:
    """The namespaces of one lab; use as a context manager."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(3)
        roles = ("net", "pbx", "rtr", "pha", "phb")
        self.ns = {role: f"cpbx-{role}-{self.run}" for role in roles}
        self._made: list[str] = []
        self._links = 0

    def __enter__(self) -> NatLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for name in reversed(self._made):
            # Deleting a namespace leaves its processes running: end what is left first.
            pids = subprocess.run(
                ["ip", "netns", "pids", name], check=False, capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        self._made.clear()

    def exec(self, role: str, *argv: str) -> str:
        """Run ``argv`` in ``role``'s namespace to completion; its output."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns[role], *argv],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def count_media(self, role: str, peer: str | None = None) -> None:
        """Count RTP (PCMU) and RTCP between ``role`` and ``peer`` (None: anyone), in
        ``role``'s namespace, once per role; :meth:`media_counts` reads the counts.

        Rules without a target in the filter table, so they count and let everything
        through: OUTPUT (sent; and sent after the hang-up, once a SIP BYE left or reached
        the role, marked with the ``recent`` match), INPUT (arrived; and ICMP port
        unreachable quoting the role's packets: refused). They go with the namespace.
        """
        where = {"-d": [], "-s": []} if peer is None else {"-d": ["-d", peer], "-s": ["-s", peer]}
        bye = ["-p", "udp", "-m", "u32", "--u32", _IN_UDP + _BYE, *_HUNG_UP, "--set"]
        self.exec(role, "iptables", "-A", "OUTPUT", *where["-d"], *bye, "--rdest")
        self.exec(role, "iptables", "-A", "INPUT", *where["-s"], *bye, "--rsource")
        for kind, test in MEDIA_KINDS.items():
            udp = ["-p", "udp", "-m", "u32", "--u32", _IN_UDP + test]
            icmp = ["-p", "icmp", "--icmp-type", "port-unreachable", "-m", "u32"]
            icmp += ["--u32", _IN_ICMP + test]
            for chain, count, end, match in (
                ("OUTPUT", "sent", "-d", udp),
                ("OUTPUT", "late", "-d", [*udp, *_HUNG_UP, "--rcheck", "--rdest"]),
                ("INPUT", "arrived", "-s", udp),
                ("INPUT", "refused", "-s", icmp),
            ):
                comment = ["-m", "comment", "--comment", f"cpbx-{kind}-{count}"]
                self.exec(role, "iptables", "-A", chain, *where[end], *match, *comment)

    def media_counts(self, role: str) -> dict[str, Flow]:
        """What :meth:`count_media` has counted in ``role``'s namespace so far, by kind."""
        found: dict[tuple[str, str], tuple[int, int]] = {}
        for line in self.exec(role, "iptables-save", "-c", "-t", "filter").splitlines():
            if matched := _COUNTER.match(line):
                packets, octets, kind, count = matched.groups()
                found[kind, count] = (int(packets), int(octets))
        return {
            kind: Flow(
                *found[kind, "sent"],
                *found[kind, "arrived"],
                refused=found[kind, "refused"][0],
                after_bye=found[kind, "late"][0],
            )
            for kind in MEDIA_KINDS
        }

    def popen(
        self, role: str, argv: Sequence[str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``role``'s namespace."""
        return subprocess.Popen(["ip", "netns", "exec", self.ns[role], *argv], cwd=cwd)

    def _build(self) -> None:
        for name in self.ns.values():
            _ip("netns", "add", name)
            self._made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        net = self.ns["net"]
        _ip("-n", net, "link", "add", "br0", "type", "bridge")
        _ip("-n", net, "link", "set", "br0", "up")
        self._wire("pbx", "eth0", f"{PBX}/24")
        self._wire("phb", "eth0", f"{PHONE_B}/24")
        self._wire("rtr", "wan", f"{ROUTER_WAN}/24")
        self._lan()
        self.exec("rtr", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        masquerade = ("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
        self.exec("rtr", *masquerade)
        # Nothing on the internet routes to the LAN: only replies through the NAT get in.
        _ip("-n", self.ns["pha"], "route", "add", "default", "via", ROUTER_LAN)

    def _veth(self) -> tuple[str, str]:
        """A veth pair, created in this namespace under names unique to the run."""
        self._links += 1
        a, b = f"ca{self.run}{self._links}", f"cb{self.run}{self._links}"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        return a, b

    def _wire(self, role: str, ifname: str, address: str, *, bridge: bool = True) -> None:
        """A veth from ``role`` (as ``ifname``) to a port of the internet's bridge."""
        ns, net = self.ns[role], self.ns["net"]
        port = f"p-{role}"
        inside, outside = self._veth()
        _ip("link", "set", inside, "netns", ns, "name", ifname)
        _ip("link", "set", outside, "netns", net, "name", port)
        _ip("-n", ns, "addr", "add", address, "dev", ifname)
        _ip("-n", ns, "link", "set", ifname, "up")
        if bridge:  # else a bare link, e.g. for a second LAN
            _ip("-n", net, "link", "set", port, "master", "br0")
        _ip("-n", net, "link", "set", port, "up")

    def _lan(self) -> None:
        """Phone A's cable to the router's LAN port."""
        pha, rtr = self.ns["pha"], self.ns["rtr"]
        router_side, phone_side = self._veth()
        _ip("link", "set", router_side, "netns", rtr, "name", "lan")
        _ip("link", "set", phone_side, "netns", pha, "name", "eth0")
        _ip("-n", rtr, "addr", "add", f"{ROUTER_LAN}/24", "dev", "lan")
        _ip("-n", pha, "addr", "add", f"{PHONE_A}/24", "dev", "eth0")
        _ip("-n", rtr, "link", "set", "lan", "up")
        _ip("-n", pha, "link", "set", "eth0", "up")
