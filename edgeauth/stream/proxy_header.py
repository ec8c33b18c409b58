"""The PROXY protocol header a stream sends to its upstream first (haproxy's proxy-protocol.txt).

A stream that terminates TCP hides the client's address from the upstream, which sees only the
gateway. With `proxy_protocol = "v1"` or `"v2"` the upstream learns it from one header sent
before any client byte, all at once (the spec asks that it never be split across writes, and
both forms fit in one segment). Only the sender side is here: the gateway never accepts the
header, as a listener that believed it would let any client choose its own address.

Rule 1: the bytes are exactly the spec's. v1 is one US-ASCII line "PROXY TCP4|TCP6 <src> <dst>
<sport> <dport>\\r\\n" of at most 107 bytes (a receiver's 108-byte buffer holds it and a NUL);
v2 is the 12-byte signature, the version/command byte 0x21 (version 2, PROXY), the family
byte 0x11 (TCP over IPv4) or 0x21 (TCP over IPv6), the big-endian length of what follows, then
source address, destination address, source port, destination port, in network order.
Rule 2: an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is sent as the IPv4 address it maps,
because it is one: a dual-stack listener bound on "::" reports IPv4 clients that way (RFC 4291
§2.5.5.2), and the upstream's IPv4 allow-lists and logs must see the client they know, not an
IPv6 address no packet ever came from. The two ends then share a family again (a socket's peer
and local address always do).
Rule 3: should the two ends still differ in family, the IPv4 one is mapped into IPv6 and the
header says TCP6, as the spec has one family for both addresses.
Rule 4: a peer that is not an IP endpoint (a Unix socket) gets the spec's "cannot say" forms:
v1 "PROXY UNKNOWN\\r\\n", v2 the LOCAL command with an unspecified family and no address; the
receiver then uses the connection's own endpoints.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Version = Literal["v1", "v2"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_BYTES = 107  # the spec's worst case including CRLF; a 108-byte buffer adds the NUL
_V2_PROXY = 0x21  # version 2 (high nibble), command PROXY (low nibble)
_V2_LOCAL = 0x20  # version 2, command LOCAL
_V2_TCP4 = 0x11  # AF_INET (high nibble), STREAM (low nibble)
_V2_TCP6 = 0x21  # AF_INET6, STREAM
_V2_UNSPEC = 0x00


def proxy_header(version: Version, source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """The header for a TCP connection from `source` to `destination` ((ip, port) each, as a
    socket's peer and local names give them; an IPv6 scope such as "%eth0" is dropped, as
    neither form can carry it). ValueError for an address that is not an IP or a port out of
    0..65535: such a peer takes proxy_header_unknown instead."""
    src, dst = _address(source[0]), _address(destination[0])
    sport, dport = _port(source[1]), _port(destination[1])
    if src.version != dst.version:
        src, dst = _as_v6(src), _as_v6(dst)
    if version == "v1":
        return _v1(src, dst, sport, dport)
    if version == "v2":
        return _v2(src, dst, sport, dport)
    raise ValueError(f"PROXY protocol version must be 'v1' or 'v2', not {version!r}")


def proxy_header_unknown(version: Version) -> bytes:
    """The header for a peer with no IP address (Rule 4)."""
    if version == "v1":
        return b"PROXY UNKNOWN\r\n"
    if version == "v2":
        return V2_SIGNATURE + struct.pack("!BBH", _V2_LOCAL, _V2_UNSPEC, 0)
    raise ValueError(f"PROXY protocol version must be 'v1' or 'v2', not {version!r}")


def _address(text: str) -> IPAddress:
    """The IP address in `text`, scope dropped and IPv4-mapped ones unmapped (Rule 2)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id is not None:
            return ipaddress.IPv6Address(ip.packed)
    return ip


def _port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"not a TCP port: {port!r}")
    return port


def _as_v6(ip: IPAddress) -> ipaddress.IPv6Address:
    """`ip` as IPv6: an IPv4 address becomes its IPv4-mapped form (Rule 3)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + ip.packed)
    return ip


def _v1_text(ip: IPAddress) -> str:
    """The spec's text form: dotted decimal for IPv4, hex groups for IPv6 (never the dotted
    tail some Python versions print for a mapped address, which the spec does not allow)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        high, low = struct.unpack("!HH", ip.packed[12:])
        return f"::ffff:{high:x}:{low:x}"
    return ip.compressed


def _v1(src: IPAddress, dst: IPAddress, sport: int, dport: int) -> bytes:
    family = "TCP4" if src.version == 4 else "TCP6"
    line = f"PROXY {family} {_v1_text(src)} {_v1_text(dst)} {sport} {dport}\r\n"
    return line.encode("ascii")


def _v2(src: IPAddress, dst: IPAddress, sport: int, dport: int) -> bytes:
    family = _V2_TCP4 if src.version == 4 else _V2_TCP6
    addresses = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, family, len(addresses)) + addresses
