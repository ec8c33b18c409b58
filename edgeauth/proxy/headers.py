"""Which headers cross the gateway, both ways (design §5 step 4). Pure.

Rule 1: hop-by-hop and framing headers (RFC 9110 §7.6.1), and any header the client's
`Connection` names, never cross; the gateway frames each leg itself.
Rule 2: identity headers (`X-Consumer-*`, `X-Credential-*`, `X-Authenticated-*`,
`X-Anonymous-*`, also spelled with `_`) are only ever set by the gateway, never passed on.
Rule 3: `X-Forwarded-*` from the client are believed only when the peer is a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    }
)
# Not hop-by-hop, but never passed on as sent: the gateway answers Expect itself (only after
# the request is allowed), and the upstream leg sets its own Host and computes the framing
# (Content-Length) from the body it actually forwards.
_REPLACED = frozenset({"content-length", "expect", "host"})
_IDENTITY_PREFIXES = ("x-consumer-", "x-credential-", "x-authenticated-", "x-anonymous-")
_FORWARDED = frozenset(
    {
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
    }
)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@+=/-]{1,128}")
VIA = "1.1 edgeauth"
SERVER = "edgeauth"


# What never crosses to the service whatever else holds (Rule 1, and the replaced and
# forwarded headers), as one set: one lookup per header on the way.
_NEVER_UPSTREAM = HOP_BY_HOP | _REPLACED | _FORWARDED


def _named_by(connection: str) -> set[str]:
    """Header names listed in a `Connection` value (RFC 9110 §7.6.1): hop-by-hop too."""
    return {token.strip().lower() for token in connection.split(",")}


def _is_identity(lname: str) -> bool:
    """Rule 2, in any mix of `-` and `_`; only names starting `x-` or `x_` can match."""
    return lname[:2] in ("x-", "x_") and lname.replace("_", "-").startswith(_IDENTITY_PREFIXES)


def is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    """Whether a peer address lies in one of the trusted proxy networks."""
    if not trusted or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


class Peer(NamedTuple):
    """What the gateway itself knows of the downstream connection. A NamedTuple, as made
    for every request: a frozen dataclass's __init__ costs several times a tuple's."""

    address: str
    scheme: str
    host: str
    port: int
    trusted: bool


class Forwarded(NamedTuple):
    """The X-Forwarded-* values to send upstream for one request (a NamedTuple: see Peer)."""

    for_chain: str
    proto: str
    host: str
    port: str
    prefix: str | None
    real_ip: str


def forwarded(
    peer: Peer,
    client: Mapping[str, str],
    prefix: str | None,
    trusted: tuple[IPNetwork, ...],
) -> Forwarded:
    """X-Forwarded-* for upstream; `client` maps lower-cased names to the client's values."""
    if not peer.trusted:
        return Forwarded(peer.address, peer.scheme, peer.host, str(peer.port), prefix, peer.address)
    prior = client.get("x-forwarded-for", "")
    chain = f"{prior}, {peer.address}" if prior else peer.address
    return Forwarded(
        for_chain=chain,
        proto=client.get("x-forwarded-proto", peer.scheme),
        host=client.get("x-forwarded-host", peer.host),
        port=client.get("x-forwarded-port", str(peer.port)),
        prefix=client.get("x-forwarded-prefix", prefix),
        real_ip=_real_ip(chain, trusted),
    )


def _real_ip(chain: str, trusted: tuple[IPNetwork, ...]) -> str:
    """The rightmost address of the chain that is not a trusted proxy (else the leftmost)."""
    hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return hop
    return hops[0]


# Fresh ids are 32 hex digits: 80 random bits drawn once per process, then a counter. Unique
# per worker without a uuid4 (a urandom call and an object) on every request.
_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count(1)


def _reseed() -> None:
    global _ID_PREFIX  # a forked child must not repeat its parent's ids
    _ID_PREFIX = os.urandom(10).hex()


os.register_at_fork(after_in_child=_reseed)


def request_id(client_value: str | None, peer_trusted: bool) -> str:
    """A trusted proxy's well-formed request id is kept; anything else gets a fresh one."""
    if peer_trusted and client_value and _REQUEST_ID.fullmatch(client_value):
        return client_value
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


def identity(
    consumer_id: str,
    custom_id: str | None,
    username: str | None,
    *,
    client_id: str | None = None,
    scope: str | None = None,
    userid: str | None = None,
    anonymous: bool = False,
) -> tuple[tuple[str, str], ...]:
    """What upstream learns of the caller (Rule 2), for a token or the anonymous consumer
    alike, in one order; absent values are not sent. Built once per token or consumer."""
    pairs = (
        ("X-Consumer-ID", consumer_id),
        ("X-Consumer-Custom-ID", custom_id),
        ("X-Consumer-Username", username),
        ("X-Credential-Identifier", client_id),
        ("X-Authenticated-Scope", scope),
        ("X-Authenticated-Userid", userid),
        ("X-Anonymous-Consumer", "true" if anonymous else None),
    )
    return tuple((name, value) for name, value in pairs if value)


def upstream_request_headers(
    client: Collection[tuple[str, str]],
    fwd: Forwarded,
    *,
    request_id_header: str,
    request_id: str,
    identity: Iterable[tuple[str, str]] = (),
    hidden: frozenset[str] = frozenset(),
    named: frozenset[str] = frozenset(),
) -> Headers:
    """Headers for the upstream request; `hidden` names (lower-case) are dropped too, and
    so are the `named` ones. One pass over the client's headers, as this runs for every
    request; only a Connection header naming more than is dropped anyway costs a second."""
    rid = request_id_header.lower()
    out: Headers = []
    also: set[str] = set()
    via = VIA
    for name, value in client:
        lname = name.lower()
        if (
            lname in _NEVER_UPSTREAM
            or lname in hidden
            or lname == rid
            or lname in named
            or lname.startswith("proxy-")
            or _is_identity(lname)
        ):
            if lname == "connection":
                also |= _named_by(value)
            continue
        if lname == "via":
            via = f"{value}, {VIA}"
            continue
        out.append((name, value))
    if also - _NEVER_UPSTREAM - named:
        return upstream_request_headers(
            client,
            fwd,
            request_id_header=request_id_header,
            request_id=request_id,
            identity=identity,
            hidden=hidden,
            named=named | also,
        )
    out.extend(identity)
    out.append(("X-Forwarded-For", fwd.for_chain))
    out.append(("X-Forwarded-Proto", fwd.proto))
    out.append(("X-Forwarded-Host", fwd.host))
    out.append(("X-Forwarded-Port", fwd.port))
    if fwd.prefix:
        out.append(("X-Forwarded-Prefix", fwd.prefix))
    out.append(("X-Real-IP", fwd.real_ip))
    out.append(("Via", via))
    out.append((request_id_header, request_id))
    return out


def downstream_response_headers(
    upstream: Collection[tuple[str, str]],
    *,
    request_id_header: str,
    request_id: str,
    named: frozenset[str] = frozenset(),
) -> Headers:
    """Upstream response headers minus hop-by-hop (and the `named` ones), plus Via, Server
    and the request id; one pass, as upstream_request_headers."""
    rid = request_id_header.lower()
    out: Headers = []
    also: set[str] = set()
    via = VIA
    has_server = False
    for name, value in upstream:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname == rid or lname in named or lname.startswith("proxy-"):
            if lname == "connection":
                also |= _named_by(value)
            continue
        if lname == "via":
            via = f"{value}, {VIA}"
            continue
        has_server = has_server or lname == "server"
        out.append((name, value))
    if also - HOP_BY_HOP - named:
        return downstream_response_headers(
            upstream, request_id_header=request_id_header, request_id=request_id, named=named | also
        )
    out.append(("Via", via))
    if not has_server:
        out.append(("Server", SERVER))
    out.append((request_id_header, request_id))
    return out
