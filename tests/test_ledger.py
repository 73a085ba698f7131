"""The evidence kept with an online consent is minimised the same way whatever path it
takes: the user agent without control characters (lone surrogates replaced, at most
512 characters), the address cut to its /24 (IPv4) or /48 (IPv6) network."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from samtycke_plugin.ledger import clean_user_agent, truncate_ip


def _reference_user_agent(value: str | None) -> str | None:
    """The definition, written plainly: drop C0 controls and DEL, replace surrogates."""
    if not value:
        return None
    kept = "".join(
        "\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch
        for ch in value
        if ord(ch) >= 32 and ch != "\x7f"
    )
    return kept[:512] or None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=700))
def test_user_agent_is_cleaned_as_defined(value: str) -> None:
    assert clean_user_agent(value) == _reference_user_agent(value)


def test_user_agent_examples() -> None:
    assert clean_user_agent("Mozilla/5.0\x00\r\n (X11)\x7f") == "Mozilla/5.0 (X11)"
    assert clean_user_agent("bad \ud800 half") == "bad \ufffd half"
    assert clean_user_agent("\x00\x01") is None
    assert clean_user_agent("a" * 600) == "a" * 512


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_is_cut_to_its_network(value: int) -> None:
    addr = str(ipaddress.IPv4Address(value))
    assert truncate_ip(addr) == str(ipaddress.ip_network(f"{addr}/24", strict=False))


def _reference_ip(value: str) -> str | None:
    """The definition: the /24 (IPv4) or /48 (IPv6) of whatever ``ipaddress`` accepts."""
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="0123456789.: abf٣", max_size=20)
       | st.lists(st.integers(0, 999).map(str) | st.sampled_from(["00", "01", "007", "٣"]),
                  min_size=3, max_size=5).map(".".join))
def test_ip_fast_path_agrees_with_ipaddress(value: str) -> None:
    assert truncate_ip(value) == _reference_ip(value)


def test_ip_examples() -> None:
    assert truncate_ip(" 198.51.100.23 ") == "198.51.100.0/24"
    assert truncate_ip("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert truncate_ip("not an address") is None
    assert truncate_ip("10.0.0.256") is None  # an octet over 255
    assert truncate_ip("10.01.0.1") is None  # a leading zero (ambiguous: octal?)
    assert truncate_ip("0.0.0.0") == "0.0.0.0/24"
    assert truncate_ip(None) is None
