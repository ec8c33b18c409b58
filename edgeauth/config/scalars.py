"""Scalar converters: one TOML value in, one typed value out, or Bad with a message quoting it.

Invariants: booleans are never numbers, numbers are finite, hosts are validated and IPv6 is
bracketed; a value that is already of the target type (a dataclass default) passes unchanged.
Pure: no I/O, no context; the walker adds the key path to each message.
"""

import ipaddress
import math
import re
from collections.abc import Callable, Mapping

from edgeauth.config.schema import Address, Bad, Network

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def fold(text: str) -> str:
    """ASCII-only lower case, for case-insensitive route prefixes: it keeps the length, so a
    prefix cuts a path at the same place in both spellings."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def show(value: object) -> str:
    """Renders a TOML value the way the operator wrote it, so messages quote their own input."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Mapping):
        return "a table"
    return "an array" if isinstance(value, list) else str(value)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise Bad(f"expected a boolean (true or false), got {show(value)}")


def _integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):  # TOML true is not 1
        return value
    raise Bad(f"expected an integer, got {show(value)}")


def _number(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise Bad(f"expected a finite number, got {show(value)}")


def string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise Bad(f"expected a string, got {show(value)}")


_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _address(value: object) -> Address:
    """Parses "host:port" or "[v6]:port"; bare IPv6 is refused since its last colon is ambiguous."""
    if isinstance(value, Address):  # a default
        return value
    text = string(value)
    host, _, port = text.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise Bad(f'expected "host:port", got {show(text)}')
    try:
        if host.startswith("[") and host.endswith("]"):
            host = str(ipaddress.IPv6Address(host[1:-1]))
        elif host.replace(".", "").isdigit():
            host = str(ipaddress.IPv4Address(host))
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(host)
    except ValueError:
        hint = ' (IPv6 needs brackets: "[::1]:8443")' if ":" in host and host[0] != "[" else ""
        raise Bad(f"invalid host in {show(text)}{hint}") from None
    if int(port) > 65535:
        raise Bad(f"port must be 0..65535, got {port}")
    return Address(host, int(port))


def _network(value: object) -> Network:
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):  # a default
        return value
    try:
        return ipaddress.ip_network(string(value), strict=False)
    except ValueError:
        raise Bad(f"not an IP address or CIDR: {show(value)}") from None


LEAVES: dict[object, Callable[[object], object]] = {
    bool: _boolean,
    int: _integer,
    float: _number,
    str: string,
    Address: _address,
    Network: _network,
}
