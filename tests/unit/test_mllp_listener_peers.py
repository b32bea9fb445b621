"""allowed_peers of the MLLP listener: addresses, networks, IPv4-mapped IPv6, bad entries."""

from __future__ import annotations

import ipaddress

import pytest

from adapters.mllp.server import ListenerLimits, MllpListener, peer_allowed


async def _handle(message: bytes, peer: object) -> bytes:
    return b""


def _networks(*entries: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return MllpListener(_handle, lambda reason, prefix: b"", allowed_peers=entries).allowed_peers


def test_empty_allowed_peers_admit_everyone() -> None:
    assert peer_allowed("203.0.113.9", ()) and peer_allowed("::1", ())


@pytest.mark.parametrize(("host", "allowed"), [
    ("10.1.2.3", True), ("10.255.0.1", True), ("192.168.1.7", True), ("192.168.1.8", False),
    ("127.0.0.1", False), ("::ffff:10.1.2.3", True), ("::ffff:127.0.0.1", False),
    ("2001:db8::5", True), ("2001:db9::5", False), ("fe80::1%eth0", False), ("not-an-ip", False), ("", False),
])
def test_addresses_and_networks(host: str, allowed: bool) -> None:
    networks = _networks("10.0.0.0/8", " 192.168.1.7 ", "2001:db8::/32")
    assert peer_allowed(host, networks) is allowed


def test_host_bits_in_a_network_are_tolerated() -> None:
    assert peer_allowed("10.1.2.200", _networks("10.1.2.3/24"))


@pytest.mark.parametrize("entry", ["not-an-ip", "10.0.0.0/33", "", "host.example"])
def test_a_bad_entry_is_refused_and_named(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed_peers"):
        _networks("127.0.0.1", entry)


def test_limits_are_frozen_and_have_safe_defaults() -> None:
    limits = ListenerLimits()
    assert limits.max_message_bytes == 4 * 1024 * 1024 and limits.max_connections > 0
    with pytest.raises(AttributeError):
        limits.max_connections = 1  # type: ignore[misc]
