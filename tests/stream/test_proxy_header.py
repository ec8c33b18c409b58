"""PROXY protocol headers, byte for byte against literals written out from haproxy's
proxy-protocol.txt (§2.1 for v1, §2.2 for v2), never against the module's own constants."""

from __future__ import annotations

import pytest

from edgeauth.stream.proxy_header import V1_MAX_BYTES, proxy_header, proxy_header_unknown

# §2.2: "\x0D \x0A \x0D \x0A \x00 \x0D \x0A \x51 \x55 \x49 \x54 \x0A"
SIGNATURE = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def test_v1_tcp4_is_the_specs_example_line() -> None:
    header = proxy_header("v1", ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"


def test_v1_tcp6_uses_the_compressed_hex_form() -> None:
    header = proxy_header("v1", ("2001:db8::1", 1), ("2001:0db8:0000::0002", 1972))
    assert header == b"PROXY TCP6 2001:db8::1 2001:db8::2 1 1972\r\n"


def test_v1_ports_have_no_leading_zeroes_and_cover_the_whole_range() -> None:
    assert proxy_header("v1", ("1.2.3.4", 0), ("5.6.7.8", 65535)) == (
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"
    )


def test_v1_worst_cases_fit_the_specs_108_byte_buffer() -> None:
    v4 = proxy_header("v1", ("255.255.255.255", 65535), ("255.255.255.255", 65535))
    assert v4 == b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
    assert len(v4) == 56  # the spec's own count
    full = "ffff:" * 7 + "ffff"
    v6 = proxy_header("v1", (full, 65535), (full, 65535))
    assert len(v6) == 104  # the spec's own count
    assert v6 == f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert V1_MAX_BYTES == 107
    assert len(v6) <= V1_MAX_BYTES
    assert len(proxy_header_unknown("v1")) <= V1_MAX_BYTES


def test_v1_is_one_line_ended_by_crlf_only() -> None:
    header = proxy_header("v1", ("10.0.0.1", 5000), ("10.0.0.2", 1972))
    assert header.endswith(b"\r\n")
    assert header.count(b"\r") == 1
    assert header.count(b"\n") == 1
    assert header.split(b" ") == [b"PROXY", b"TCP4", b"10.0.0.1", b"10.0.0.2", b"5000", b"1972\r\n"]


def test_v2_tcp4_byte_for_byte() -> None:
    header = proxy_header("v2", ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header == (
        SIGNATURE
        + b"\x21"  # version 2 << 4 | command PROXY (1)
        + b"\x11"  # AF_INET << 4 | STREAM
        + b"\x00\x0c"  # 2*4 + 2*2 = 12 bytes follow, big-endian
        + b"\xc0\xa8\x00\x01"  # 192.168.0.1
        + b"\xc0\xa8\x00\x0b"  # 192.168.0.11
        + b"\xdc\x04"  # 56324 = 0xdc04
        + b"\x01\xbb"  # 443 = 0x01bb
    )
    assert len(header) == 16 + 12


def test_v2_tcp6_byte_for_byte() -> None:
    header = proxy_header("v2", ("2001:db8::1", 1972), ("fe80::abcd", 65535))
    assert header == (
        SIGNATURE
        + b"\x21"  # version 2, PROXY
        + b"\x21"  # AF_INET6 << 4 | STREAM
        + b"\x00\x24"  # 2*16 + 2*2 = 36
        + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
        + b"\xfe\x80" + b"\x00" * 12 + b"\xab\xcd"
        + b"\x07\xb4"  # 1972 = 0x07b4
        + b"\xff\xff"
    )  # fmt: skip
    assert len(header) == 16 + 36


def test_an_ipv4_mapped_peer_is_sent_as_tcp4_both_forms() -> None:
    # A dual-stack listener on "::" names an IPv4 client and its own address this way.
    source, destination = ("::ffff:1.2.3.4", 40000), ("::ffff:127.0.0.1", 1973)
    assert proxy_header("v1", source, destination) == (
        b"PROXY TCP4 1.2.3.4 127.0.0.1 40000 1973\r\n"
    )
    assert proxy_header("v2", source, destination) == (
        SIGNATURE + b"\x21\x11\x00\x0c" + b"\x01\x02\x03\x04" + b"\x7f\x00\x00\x01"
        + b"\x9c\x40"  # 40000
        + b"\x07\xb5"  # 1973
    )  # fmt: skip


def test_mixed_families_are_both_sent_as_ipv6() -> None:
    # One IPv4 end and one real IPv6 end: the spec has a single family, so IPv4 is mapped.
    source, destination = ("1.2.3.4", 1), ("2001:db8::2", 2)
    assert proxy_header("v1", source, destination) == (
        b"PROXY TCP6 ::ffff:102:304 2001:db8::2 1 2\r\n"
    )
    assert proxy_header("v2", source, destination) == (
        SIGNATURE + b"\x21\x21\x00\x24"
        + b"\x00" * 10 + b"\xff\xff\x01\x02\x03\x04"
        + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x02"
        + b"\x00\x01\x00\x02"
    )  # fmt: skip


def test_an_ipv6_scope_is_dropped() -> None:
    header = proxy_header("v1", ("fe80::1%lo", 1), ("fe80::2%lo", 2))
    assert header == b"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"
    assert proxy_header("v2", ("fe80::1%lo", 1), ("fe80::2%lo", 2))[16:18] == b"\xfe\x80"


def test_unknown_v1_is_the_specs_short_form() -> None:
    assert proxy_header_unknown("v1") == b"PROXY UNKNOWN\r\n"
    assert len(proxy_header_unknown("v1")) == 15


def test_unknown_v2_is_local_unspec_with_no_address() -> None:
    assert proxy_header_unknown("v2") == SIGNATURE + b"\x20\x00\x00\x00"


@pytest.mark.parametrize("host", ["", "localhost", "/run/edgeauth.sock", "1.2.3", "::g"])
def test_an_address_that_is_not_an_ip_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        proxy_header("v1", (host, 1), ("127.0.0.1", 2))
    with pytest.raises(ValueError, match="not an IP address"):
        proxy_header("v2", ("127.0.0.1", 1), (host, 2))


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match="not a TCP port"):
        proxy_header("v2", ("127.0.0.1", port), ("127.0.0.1", 2))
    with pytest.raises(ValueError, match="not a TCP port"):
        proxy_header("v1", ("127.0.0.1", 1), ("127.0.0.1", port))


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="'v3'"):
        proxy_header("v3", ("127.0.0.1", 1), ("127.0.0.1", 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'off'"):
        proxy_header_unknown("off")  # type: ignore[arg-type]
