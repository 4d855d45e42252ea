"""The hosts a partner's links may point at (``adapters.link_hosts``): the patterns of ``result_hosts``, what they
match, and which resolved addresses count as internal (never reached unless a host is named exactly)."""

from __future__ import annotations

import ipaddress

import pytest

from adapters.link_hosts import HostAllowList, HostPatternError, is_internal, parse_host_pattern


@pytest.mark.parametrize(
    ("item", "host", "port", "allowed"),
    [
        ("files.tnmt.example.gov.vn", "FILES.tnmt.example.gov.vn.", 443, True),  # any port, case and root dot aside
        ("files.tnmt.example.gov.vn:8443", "files.tnmt.example.gov.vn", 443, False),
        ("*.tnmt.example.gov.vn", "a.b.tnmt.example.gov.vn", 80, True),
        ("*.tnmt.example.gov.vn", "tnmt.example.gov.vn", 80, False),  # below the domain, not the domain itself
        ("*.tnmt.example.gov.vn", "eviltnmt.example.gov.vn", 80, False),
        ("*.tnmt.example.gov.vn:443", "kq.tnmt.example.gov.vn", 8443, False),
        ("10.0.0.7", "10.0.0.7", 80, True),
        ("[fd00::7]:8443", "fd00:0::7", 8443, True),
    ],
)
def test_patterns_match_their_host_and_port(item: str, host: str, port: int, allowed: bool) -> None:
    assert (HostAllowList.of([item]).match(host, port) is not None) is allowed


@pytest.mark.parametrize("item", ["*", "*.vn", "http://files.example.gov.vn", "files.example.gov.vn/kq", "a b",
                                  "host:0", "host:70000", "[not-v6]", "-bad-.example.gov.vn", "user@host"])  # fmt: skip
def test_what_is_not_a_host_pattern_is_refused(item: str) -> None:
    with pytest.raises(HostPatternError):
        parse_host_pattern(item)


def test_a_host_named_exactly_is_preferred_to_a_wildcard_that_also_matches() -> None:
    hosts = HostAllowList.of(["*.example.gov.vn", "kq.example.gov.vn"])
    found = hosts.match("kq.example.gov.vn", 443)
    assert found is not None and found.names_exactly and str(found) == "kq.example.gov.vn"
    wildcard = hosts.match("other.example.gov.vn", 443)
    assert wildcard is not None and not wildcard.names_exactly


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True), ("10.20.30.40", True), ("172.16.0.1", True), ("192.168.1.1", True),
        ("169.254.169.254", True), ("100.64.0.1", True), ("224.0.0.1", True),
        ("0.0.0.0", True),  # noqa: S104 - an address checked, not bound
        ("::1", True), ("fe80::1", True), ("fd00::7", True), ("::ffff:10.0.0.1", True), ("ff02::1", True),
        ("203.113.131.1", False), ("2405:4800::1", False),
    ],
)  # fmt: skip
def test_internal_addresses(address: str, internal: bool) -> None:
    assert is_internal(ipaddress.ip_address(address)) is internal
