"""Route matching and path normalization (design §3). Pure: values in, values out.

Rule 1: the path is normalized once (unreserved escapes decoded, runs of `/` merged into one,
dot-segments removed) and that one string is used for matching, authorization and forwarding.
Rule 2: a path that smuggles a separator (`%2F`, `%5C`, `%00`, a backslash), carries a `#`, or
whose `..` climbs above root or above the prefix of the route it lands on is refused, never
rewritten.
Rule 3: the longest whole-segment prefix wins; among equal prefixes a route naming hosts
beats one that does not, then a route naming methods.
Rule 4: `;` parameters (`;` or `%3B`) are matched as absent: the route is chosen on the path
with each segment cut at its first `;`, so `/a;x/b` lands where `/a/b` would, and refused
(400) unless that route sets `allow_path_params`. A segment that is empty, `.` or `..` once cut
is refused, because backends that strip parameters would merge or climb it.
Rule 5: a `case_insensitive` route's prefix matches in any ASCII case; the path is forwarded as
the client wrote it (normalized), and case folding runs only when such a route exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from edgeauth.config import RouteSettings, ServerSettings, ServiceSettings
from edgeauth.config.scalars import fold
from edgeauth.errors import BadPath

_SMUGGLED = ("%2f", "%5c", "%00")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_SLASHES = re.compile(r"//+")
_PARAM = re.compile(r";|%3B")  # after normalization an escape's hex digits are upper-case
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_NO_CLIMB = 1 << 30
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


class NormalPath(NamedTuple):
    """A normalized path, the shallowest depth a `..` brought it to (_NO_CLIMB if none), and,
    when it has `;` parameters, the same path without them (what routes are matched on).
    A NamedTuple: one is made for every request, and a tuple is the cheapest to make."""

    path: str
    floor: int = _NO_CLIMB
    bare: str | None = None


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def normalize_path(raw: str) -> NormalPath:
    """RFC 3986 §6.2.2 normalization of a request path, refusing what could escape a route."""
    if not raw.startswith("/") or "\\" in raw or "#" in raw:
        raise BadPath()
    escaped = "%" in raw
    if escaped:
        lowered = raw.lower()
        if any(bad in lowered for bad in _SMUGGLED):
            raise BadPath()
        raw = _ESCAPE.sub(_decode_unreserved, raw)
    if "//" in raw:
        raw = _SLASHES.sub("/", raw)
    path = _remove_dot_segments(raw) if "/." in raw else NormalPath(raw)
    if ";" in path.path or (escaped and "%3B" in path.path):
        return NormalPath(path.path, path.floor, _without_params(path.path))
    return path


def _without_params(path: str) -> str:
    """The path with each segment cut at its first `;`; refuses segments that would vanish."""
    segments = [_PARAM.split(seg, 1)[0] for seg in path[1:].split("/")]
    for seg in segments[:-1]:
        if seg in ("", ".", ".."):
            raise BadPath()
    if segments[-1] in (".", ".."):
        raise BadPath()
    return "/" + "/".join(segments)


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
    depth: int

    def upstream_path(self, path: str) -> str:
        """The path to request upstream: service path + request path (minus prefix if strip).

        The prefix is cut by whole segments, as it was matched: its spelling in `path` may
        differ in case or carry `;` parameters."""
        rest = path
        if self.route.strip_path and self.depth:
            rest = path[len(self.prefix) :]
            if (rest and rest[0] != "/") or not path.startswith(self.prefix):
                rest = path[_segments_end(path, self.depth) :]  # other case, or ;params
        if not rest:
            return self.base_path or "/"
        if self.base_path.endswith("/") and rest.startswith("/"):
            return self.base_path + rest[1:]
        return self.base_path + rest


def _segments_end(path: str, depth: int) -> int:
    """Where the first `depth` segments of `path` end."""
    end = 0
    for _ in range(depth):
        end = path.find("/", end + 1)
        if end < 0:
            return len(path)
    return end


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
    """Matches (host, method, path) to a Target in O(path depth) dict lookups.

    With any case-insensitive route, the table is keyed by folded prefixes and a
    case-sensitive route also checks the path's own spelling of its prefix."""

    def __init__(self, services: Iterable[ServiceSettings]) -> None:
        services = list(services)
        self._folding = any(r.case_insensitive for s in services for r in s.routes)
        table: dict[str, list[Target]] = {}
        for service in services:
            parts = urlsplit(service.url)
            origin = f"{parts.scheme}://{parts.netloc}"
            for route in service.routes:
                for raw in route.paths:
                    prefix = raw.rstrip("/") or "/"
                    target = Target(route, service, prefix, origin, parts.path, _depth(prefix))
                    key = fold(prefix) if self._folding else prefix
                    table.setdefault(key, []).append(target)
        for targets in table.values():
            targets.sort(key=lambda t: (not t.route.hosts, not t.route.methods))
        self._table = table

    def match(self, host: str, method: str, path: NormalPath) -> Target | None:
        """The most specific route for the request, or None; BadPath if `..` left its prefix
        or the path has `;` parameters the route does not allow."""
        key = path.path if path.bare is None else path.bare
        target = self._lookup(_bare_host(host), method, key)
        if target is None:
            if path.floor != _NO_CLIMB:
                raise BadPath()  # a `..` that climbed out of somewhere and leads nowhere
            return None
        if path.floor < target.depth:
            raise BadPath()
        if path.bare is not None and not target.route.allow_path_params:
            raise BadPath()
        return target

    def _lookup(self, host: str, method: str, key: str) -> Target | None:
        folding = self._folding
        folded = fold(key) if folding else key
        end = len(key)
        while True:
            candidate = folded[:end] or "/"
            for target in self._table.get(candidate, ()):
                route = target.route
                if (
                    _host_matches(route.hosts, host)
                    and (not route.methods or method in route.methods)
                    and (
                        not folding or route.case_insensitive or (key[:end] or "/") == target.prefix
                    )
                ):
                    return target
            if candidate == "/":
                return None
            end = folded.rfind("/", 0, end)


def public_base(
    server: ServerSettings, service: ServiceSettings | None = None, port: int | None = None
) -> str:
    """The URL the gateway names itself by (issuers, printed URLs), never the client's Host:
    the service's `public_url`, else the server's, else https:// and the first listen address
    (a wildcard address as loopback; `port` is the bound one when the address says 0)."""
    if service is not None and service.public_url:
        return service.public_url
    if server.public_url:
        return server.public_url
    address = server.listen[0]
    host = _WILDCARDS.get(address.host, address.host)
    host = f"[{host}]" if ":" in host else host
    port = address.port if port is None else port
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"
