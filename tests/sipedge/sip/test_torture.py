"""RFC 4475 and RFC 5118 torture messages: each one's fate at our parser and sanity stage.

The files are byte-exact copies of the RFC archives (checked against SHA256SUMS first).
``expectations.tsv`` says what the RFC asks of a parser; ``OUTCOME`` below is what
cloudpbx does, with the status it answers. Where the RFC allows a choice ("reject or
tolerate") the row records ours, and the consistency test holds every row to the RFC.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from sipedge.sip.errors import ParseError
from sipedge.sip.framing import Broken, KeepAlive, Rejected, StreamFramer, parse_datagram
from sipedge.sip.message import Request, Response
from sipedge.sip.parser import check_request

DATA = Path(__file__).resolve().parents[2] / "data" / "sip-torture"

# stage: "ok" (parsed and sane), "parse" (the parser refuses), "sanity" (check_request
# refuses), "drop" (a response that is parsed but unusable, so discarded).
OUTCOME: dict[str, tuple[str, int | None]] = {
    "wsinv.sip": ("ok", None),
    "intmeth.sip": ("sanity", 501),  # parsed; an endpoint answers 501 to the method
    "esc01.sip": ("ok", None),
    "escnull.sip": ("ok", None),
    "esc02.sip": ("sanity", 501),  # RE%47IST%45R is not REGISTER: an unknown method
    "lwsdisp.sip": ("ok", None),
    "longreq.sip": ("ok", None),
    "dblreq.sip": ("ok", None),
    "semiuri.sip": ("ok", None),
    "transports.sip": ("ok", None),
    "mpart01.sip": ("ok", None),
    "unreason.sip": ("ok", None),
    "noreason.sip": ("ok", None),
    "badinv01.sip": ("sanity", 400),
    "clerr.sip": ("parse", 400),
    "ncl.sip": ("parse", 400),
    "scalar02.sip": ("sanity", 400),
    "scalarlg.sip": ("drop", None),
    "quotbal.sip": ("sanity", 400),
    "ltgtruri.sip": ("parse", 400),
    "lwsruri.sip": ("parse", 400),
    "lwsstart.sip": ("parse", 400),
    "trws.sip": ("parse", 400),
    "escruri.sip": ("sanity", 400),
    "baddate.sip": ("ok", None),
    "regbadct.sip": ("sanity", 400),
    "badaspec.sip": ("sanity", 400),
    "baddn.sip": ("sanity", 400),
    "badvers.sip": ("parse", 505),
    "mismatch01.sip": ("sanity", 400),
    "mismatch02.sip": ("sanity", 501),
    "bigcode.sip": ("parse", 400),
    "badbranch.sip": ("sanity", 400),
    "insuf.sip": ("sanity", 400),
    "unkscm.sip": ("sanity", 416),
    "novelsc.sip": ("sanity", 416),
    "unksm2.sip": ("ok", None),  # a registrar refuses the isbn: To; the parser does not
    "bext01.sip": ("sanity", 420),
    "invut.sip": ("ok", None),
    "regaut01.sip": ("ok", None),
    "multi01.sip": ("sanity", 400),
    "mcl01.sip": ("parse", 400),
    "bcast.sip": ("ok", None),
    "zeromf.sip": ("ok", None),
    "cparam01.sip": ("ok", None),
    "cparam02.sip": ("ok", None),
    "regescrt.sip": ("ok", None),
    "sdp01.sip": ("ok", None),
    "inv2543.sip": ("ok", None),
    "test.sip": ("parse", 400),
    # RFC 5118
    "rfc5118/ipv6-good.sip": ("ok", None),
    "rfc5118/ipv6-bad.sip": ("parse", 400),
    "rfc5118/port-ambiguous.sip": ("ok", None),
    "rfc5118/port-unambiguous.sip": ("ok", None),
    "rfc5118/via-received-param-with-delim.sip": ("ok", None),
    "rfc5118/via-received-param-no-delim.sip": ("ok", None),
    "rfc5118/ipv6-in-sdp.sip": ("ok", None),
    "rfc5118/mult-ip-in-header.sip": ("ok", None),
    "rfc5118/mult-ip-in-sdp.sip": ("ok", None),
    "rfc5118/ipv4-mapped-ipv6.sip": ("ok", None),
    "rfc5118/ipv6-bug-abnf-3-colons.sip": ("ok", None),
    "rfc5118/ipv6-correct-abnf-2-colons.sip": ("ok", None),
}

# What each "parser_must" of expectations.tsv allows of our outcome.
ALLOWED_BY_RFC: dict[str, set[str]] = {
    "accept": {"ok", "sanity"},  # parsed; the element may still answer (416, 420, 501...)
    "accept, then drop": {"ok"},
    "accept if backward compatible": {"ok"},
    "tolerate if Date unused": {"ok"},
    "reject": {"parse", "sanity", "drop"},
    "drop": {"parse", "drop"},
    "reject or tolerate": {"ok", "parse", "sanity"},
    "must not break": {"ok", "parse", "sanity", "drop"},
}


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def outcome(data: bytes) -> tuple[str, int | None]:
    """What cloudpbx does with one datagram: the stage that stopped it and the status."""
    try:
        message = parse_datagram(data)
    except ParseError as exc:
        return "parse", exc.status
    try:
        if isinstance(message, Request):
            check_request(message)
        else:
            _ = (message.vias, message.cseq, message.call_id, message.from_, message.to)
    except ParseError as exc:
        return ("sanity", exc.status) if isinstance(message, Request) else ("drop", None)
    return "ok", None


def expectations() -> list[dict[str, str]]:
    with (DATA / "expectations.tsv").open(encoding="utf-8", newline="") as tsv:
        return list(csv.DictReader(tsv, delimiter="\t"))


def test_files_are_the_rfc_bytes() -> None:
    listed: dict[str, str] = {}
    for line in (DATA / "SHA256SUMS").read_text(encoding="ascii").splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    on_disk = {str(p.relative_to(DATA)) for p in DATA.rglob("*.sip")}
    assert on_disk == {name for name in listed if name.endswith(".sip")}
    for name, digest in listed.items():
        assert hashlib.sha256(read(name)).hexdigest() == digest, name


def test_every_file_has_an_outcome() -> None:
    assert set(OUTCOME) == {str(p.relative_to(DATA)) for p in DATA.rglob("*.sip")}
    assert {row["file"] for row in expectations()} <= set(OUTCOME)


@pytest.mark.parametrize("name", sorted(OUTCOME))
def test_outcome(name: str) -> None:
    assert outcome(read(name)) == OUTCOME[name]


@pytest.mark.parametrize("row", expectations(), ids=lambda row: row["file"])
def test_outcome_is_what_the_rfc_allows(row: dict[str, str]) -> None:
    stage, _ = OUTCOME[row["file"]]
    assert stage in ALLOWED_BY_RFC[row["parser_must"]], row["what_a_compliant_element_does"]
    if row["kind"] == "request" and stage == "ok":
        assert isinstance(parse_datagram(read(row["file"])), Request)
    if row["kind"] == "response" and stage == "ok":
        assert isinstance(parse_datagram(read(row["file"])), Response)


@pytest.mark.parametrize("name", [n for n, (stage, _) in OUTCOME.items() if stage != "parse"])
def test_serialization_is_a_fixed_point(name: str) -> None:
    first = parse_datagram(read(name))
    wire = first.to_bytes()
    second = parse_datagram(wire)
    assert second.to_bytes() == wire
    without_length = [(n, v) for n, v in first.headers if n != "Content-Length"]
    assert [(n, v) for n, v in second.headers if n != "Content-Length"] == without_length
    assert second.headers.get("Content-Length") == str(len(first.body))
    assert second.body == first.body
    assert second.start_line() == first.start_line()


# Over TCP the framing cases differ (RFC 4475 §3.1.2.2, §3.1.2.3, §3.3.9, §3.4.1).
STREAM_OUTCOME: dict[str, str] = {
    "clerr.sip": "waits",  # 9999 octets announced: keep waiting (the adapter times out)
    "baddn.sip": "waits",  # no empty line: the header section never ends
    "ncl.sip": "close",
    "mcl01.sip": "close",
    "inv2543.sip": "close",  # no Content-Length on a stream
    "test.sip": "close",  # a header line without a colon: the length cannot be known
    "dblreq.sip": "message, then close",  # the trailing octets frame as garbage on TCP
}


@pytest.mark.parametrize("name", sorted(OUTCOME))
def test_over_a_stream(name: str) -> None:
    data = read(name)
    framer = StreamFramer()
    expected = STREAM_OUTCOME.get(name, "message")
    items = framer.feed(data)
    if expected == "close":
        assert len(items) == 1
        assert isinstance(items[0], Broken)
        assert framer.feed(b"OPTIONS sip:x SIP/2.0\r\n\r\n") == items
        return
    if expected == "message, then close":
        assert isinstance(items[-1], Broken)
    if expected == "waits":
        assert items == []
        assert framer.buffered == len(data)
        return
    assert items, name
    first = items[0]
    if OUTCOME[name][0] == "parse":
        assert isinstance(first, Rejected)
        assert first.error.status == OUTCOME[name][1]
    else:
        assert isinstance(first, Request | Response)
        assert first.to_bytes() == parse_datagram(data).to_bytes()
    assert not any(isinstance(item, KeepAlive) for item in items)


def test_stream_split_at_every_byte_gives_the_same_message() -> None:
    data = read("wsinv.sip")
    framer = StreamFramer()
    got: list[object] = []
    for index in range(len(data)):
        got += framer.feed(data[index : index + 1])
    assert len(got) == 1
    assert isinstance(got[0], Request)
    assert got[0].to_bytes() == parse_datagram(data).to_bytes()
    assert framer.buffered == 0
