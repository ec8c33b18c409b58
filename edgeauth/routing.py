"""Route matching and path normalization (design §3). Pure: values in, values out.

Rule 1: the path is normalized once (unreserved escapes decoded, dot-segments removed, `//`
kept) and that one string is used for matching, authorization and forwarding.
Rule 2: a path that smuggles a separator (`%2F`, `%5C`, `%00`, a backslash) or whose `..`
climbs above root or above the prefix of the route it lands on is refused, never rewritten.
Rule 3: the longest whole-segment prefix wins; among equal prefixes a route naming hosts
beats one that does not, then a route naming methods.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgeauth.config import RouteSettings, ServiceSettings
from edgeauth.errors import BadPath

_SMUGGLED = ("%2f", "%5c", "%00")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_NO_CLIMB = 1 << 30


@dataclass(frozen=True, slots=True)
class NormalPath:
    """A normalized path and the shallowest depth a `..` brought it to (_NO_CLIMB if none)."""

    path: str
    floor: int = _NO_CLIMB


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def normalize_path(raw: str) -> NormalPath:
    """RFC 3986 §6.2.2 normalization of a request path, refusing what could escape a route."""
    if not raw.startswith("/") or "\\" in raw:
        raise BadPath()
    if "%" in raw:
        lowered = raw.lower()
        if any(bad in lowered for bad in _SMUGGLED):
            raise BadPath()
        raw = _ESCAPE.sub(_decode_unreserved, raw)
    if "/." not in raw:
        return NormalPath(raw)
    return _remove_dot_segments(raw)


def _remove_dot_segments(path: str) -> NormalPath:
    stack: list[str] = []
    floor = _NO_CLIMB
    segments = path[1:].split("/")
    last = len(segments) - 1
    trailing = False
    for i, seg in enumerate(segments):
        if seg == ".":
            trailing = i == last
        elif seg == "..":
            if not stack:
                raise BadPath()
            stack.pop()
            floor = min(floor, len(stack))
            trailing = i == last
        else:
            stack.append(seg)
    return NormalPath("/" + "/".join(stack) + ("/" if trailing and stack else ""), floor)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a matched request goes: the route, its service and the upstream URL parts."""

    route: RouteSettings
    service: ServiceSettings
    prefix: str
    origin: str
    base_path: str

    def upstream_path(self, path: str) -> str:
        """The path to request upstream: service path + request path (minus prefix if strip)."""
        rest = path
        if self.route.strip_path and self.prefix != "/":
            rest = path[len(self.prefix) :]
        if not rest:
            return self.base_path or "/"
        if self.base_path.endswith("/") and rest.startswith("/"):
            return self.base_path + rest[1:]
        return self.base_path + rest


def _depth(prefix: str) -> int:
    return 0 if prefix == "/" else prefix.count("/")


def _host_matches(patterns: tuple[str, ...], host: str) -> bool:
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == host or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def _bare_host(host: str) -> str:
    """Host header without its port, lower-cased; IPv6 literals keep their brackets."""
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()
    return host.rsplit(":", 1)[0].lower()


class Router:
    """Matches (host, method, path) to a Target in O(path depth) dict lookups."""

    def __init__(self, services: Iterable[ServiceSettings]) -> None:
        table: dict[str, list[Target]] = {}
        for service in services:
            parts = urlsplit(service.url)
            origin = f"{parts.scheme}://{parts.netloc}"
            for route in service.routes:
                for raw in route.paths:
                    prefix = raw.rstrip("/") or "/"
                    target = Target(route, service, prefix, origin, parts.path)
                    table.setdefault(prefix, []).append(target)
        for targets in table.values():
            targets.sort(key=lambda t: (not t.route.hosts, not t.route.methods))
        self._table = table

    def match(self, host: str, method: str, path: NormalPath) -> Target | None:
        """The most specific route for the request, or None; BadPath if `..` left its prefix."""
        host = _bare_host(host)
        candidate = path.path
        while True:
            for target in self._table.get(candidate, ()):
                route = target.route
                if _host_matches(route.hosts, host) and (
                    not route.methods or method in route.methods
                ):
                    if path.floor < _depth(target.prefix):
                        raise BadPath()
                    return target
            if candidate == "/":
                if path.floor != _NO_CLIMB:
                    raise BadPath()  # a `..` that climbed out of somewhere and leads nowhere
                return None
            candidate = candidate[: candidate.rfind("/")] or "/"
