"""A DNS server for tests: answers A and SRV queries over UDP on 127.0.0.1 from a table
(the real wire format, through dnspython), so that an edge started with
``--dns-server 127.0.0.1:PORT`` locates trunk providers by their SRV records without any
name reaching the machine's resolver.

    with DnsZone({("_sip._udp.carrier.test", "SRV"): ["10 5 5070 sip1.carrier.test."],
                  ("sip1.carrier.test", "A"): ["127.0.0.1"]}) as zone:
        ... zone.port ...

A name not in the table is NXDOMAIN; a name with other records, an empty answer.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsZone:
    def __init__(self, records: Mapping[tuple[str, str], Sequence[str]]) -> None:
        self.records = {
            (dns.name.from_text(name), dns.rdatatype.from_text(kind)): list(values)
            for (name, kind), values in records.items()
        }
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-zone", daemon=True)

    def __enter__(self) -> DnsZone:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    @property
    def server(self) -> str:
        """``--dns-server``'s value."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            self.sock.sendto(self._answer(query).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        (question,) = query.question
        self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
        values = self.records.get((question.name, question.rdtype))
        if values:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 60, dns.rdataclass.IN, question.rdtype, values
                )
            )
        elif not any(name == question.name for name, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response
