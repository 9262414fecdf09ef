"""The relay's settings as an operator types them: addresses, the port range, and what a
relay must refuse to start with (a wildcard in SDP, mixed families, bad ranges and clocks)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mediarelay.config import RelayConfig, host_port, port_range

NG = ("127.0.0.1", 2223)


@pytest.mark.parametrize(
    ("text", "default_port", "expected"),
    [
        ("127.0.0.1:2223", None, ("127.0.0.1", 2223)),
        ("203.0.113.9:3478", 9, ("203.0.113.9", 3478)),  # an explicit port beats the default
        ("[::1]:2223", None, ("::1", 2223)),
        ("[2001:db8::7]:65535", None, ("2001:db8::7", 65535)),
        ("127.0.0.1", 3478, ("127.0.0.1", 3478)),
        ("::1", 3478, ("::1", 3478)),  # an IPv6 literal without brackets takes the default
        ("[::1]", 3478, ("::1", 3478)),
        ("127.0.0.1:1", None, ("127.0.0.1", 1)),
    ],
)
def test_host_port_reads_ipv4_bracketed_ipv6_and_bare_hosts(
    text: str, default_port: int | None, expected: tuple[str, int]
) -> None:
    assert host_port(text, default_port) == expected


@pytest.mark.parametrize(
    ("text", "default_port", "complaint"),
    [
        ("127.0.0.1", None, "want HOST:PORT"),  # no port and no default
        ("[::1]", None, "want HOST:PORT"),
        ("::1", None, "want HOST:PORT"),
        ("127.0.0.1:", None, "bad port"),
        ("[::1]:", None, "bad port"),
        ("127.0.0.1:0", None, "bad port"),
        ("127.0.0.1:65536", None, "bad port"),
        ("127.0.0.1:-1", None, "bad port"),
        ("127.0.0.1:http", None, "bad port"),
        ("127.0.0.1:\uff15\uff10\uff16\uff10", None, "bad port"),  # fullwidth "5060"
        ("relay.example.com:2223", None, "not an IP address"),  # the relay resolves no names
        (":2223", None, "not an IP address"),
        ("[::1]x", 3478, "[IPv6]:PORT"),  # trailing junk after the bracket
        ("[::1]2223", 3478, "[IPv6]:PORT"),
        ("[::1:2223", 3478, "[IPv6]:PORT"),  # the bracket never closes
        ("[127.0.0.1]:2223", None, "not an IPv6 address"),  # brackets are for IPv6 only
    ],
)
def test_host_port_refuses_bad_input_saying_what_is_wrong(
    text: str, default_port: int | None, complaint: str
) -> None:
    with pytest.raises(ValueError, match=r"bad address|bad port") as caught:
        host_port(text, default_port)
    assert complaint in str(caught.value)
    assert repr(text) in str(caught.value)


def test_port_range_includes_both_ends() -> None:
    assert port_range("30000-39999") == (30000, 39999)
    assert port_range("21000-21001") == (21000, 21001)


@pytest.mark.parametrize(
    "text", ["30000", "30000-", "-39999", "30000:39999", "low-high", " 30000-39999", "3e4-4e4"]
)
def test_port_range_refuses_what_is_not_low_dash_high(text: str) -> None:
    with pytest.raises(ValueError, match="want LOW-HIGH"):
        port_range(text)


def test_port_range_refuses_non_ascii_digits() -> None:
    with pytest.raises(ValueError, match="want LOW-HIGH"):
        port_range("\uff13" + "0000-39999")  # a fullwidth 3: int() would take it


LOOPBACK = RelayConfig(ng=NG, bind="127.0.0.1", advertise="127.0.0.1")


def config(**overrides: Any) -> RelayConfig:
    """The loopback relay with some settings changed, checked again as at start-up."""
    return replace(LOOPBACK, **overrides)


def test_a_wildcard_bind_with_a_public_advertise_is_the_container_setup() -> None:
    relay = config(bind="0.0.0.0", advertise="203.0.113.1")
    assert (relay.bind, relay.advertise) == ("0.0.0.0", "203.0.113.1")
    assert config(bind="::", advertise="2001:db8::1").advertise == "2001:db8::1"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_a_wildcard_is_never_advertised(wildcard: str) -> None:
    with pytest.raises(ValueError, match="cannot advertise") as caught:
        config(bind=wildcard, advertise=wildcard)
    assert "--advertise" in str(caught.value)


@pytest.mark.parametrize(
    ("bind", "advertise"),
    [
        ("127.0.0.1", "::1"),
        ("::1", "127.0.0.1"),
        # A wildcard of one family receives nothing of the other: an IPv4 socket never
        # sees IPv6 phones, and an IPv6 socket cannot send to the IPv4 addresses in SDP.
        ("0.0.0.0", "2001:db8::1"),
        ("::", "203.0.113.1"),
    ],
)
def test_bind_and_advertise_must_be_of_one_family(bind: str, advertise: str) -> None:
    with pytest.raises(ValueError, match="differ in family"):
        config(bind=bind, advertise=advertise)


@pytest.mark.parametrize("address", ["relay.example.com", "", "127.0.0.1:2223"])
def test_bind_and_advertise_are_ip_literals(address: str) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        config(advertise=address)
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        config(bind=address)


@pytest.mark.parametrize(
    "ports", [(1023, 2000), (30000, 30000), (40000, 30000), (30000, 65536), (0, 100)]
)
def test_the_media_range_is_unprivileged_non_empty_and_ordered(ports: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="want 1024 <= LOW < HIGH <= 65535"):
        config(ports=ports)


def test_the_widest_media_range_is_accepted() -> None:
    assert config(ports=(1024, 65535)).ports == (1024, 65535)


@pytest.mark.parametrize(
    "timeouts",
    [
        pytest.param({"idle_timeout_s": 0.0}, id="idle-zero"),
        pytest.param({"idle_timeout_s": -1.0}, id="idle-negative"),
        pytest.param({"idle_timeout_s": float("nan")}, id="idle-nan"),  # NaN never expires
        pytest.param({"idle_timeout_s": float("inf")}, id="idle-infinite"),
        pytest.param({"learning_window_s": -0.1}, id="learning-negative"),
        pytest.param({"learning_window_s": float("nan")}, id="learning-nan"),
        # An endless window would let any source re-latch for the whole call: injection.
        pytest.param({"learning_window_s": float("inf")}, id="learning-infinite"),
    ],
)
def test_bad_timeouts_are_refused(timeouts: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="idle timeout must be positive"):
        config(**timeouts)


def test_a_zero_learning_window_latches_only_the_first_source() -> None:
    assert config(learning_window_s=0.0).learning_window_s == 0.0
