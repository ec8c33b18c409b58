"""The proxy handler: forward one matched request upstream and stream the answer back.

Rule 1: bodies stream both ways in the chunks they arrive in, with backpressure on both legs;
nothing buffers a whole body, so memory per request is flat whatever the size. The one
exception, a form body searched for its token (`accept_token_in_body`), is read whole only
up to FORM_CAP bytes.
Rule 2: `Expect: 100-continue` is answered only here, after every check that can refuse the
request has passed, so a refused upload is never sent; or, for a form body that must be read
to find the token, once its declared length is within the cap.
Rule 3: once the response has started, a failure can only be signalled by aborting the
connection; the upstream response is then closed, never returned half-read to the pool.
Rule 4: an HTTP/1.0 client has no chunked framing: a body of unknown length reaches it ended
by the close, and a close cannot say "cut short". So up to READ_AHEAD bytes of such a body are
read before the head is sent: a body that ends within them is answered whole with its length,
one that breaks within them gets 502; only a longer one is streamed and ended by the close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from edgeauth.config import ServerSettings
from edgeauth.errors import BodyTooLarge, UpstreamTimeout
from edgeauth.exchange import Exchange
from edgeauth.messages import AnyResponse, Request, Response, StreamResponse, has_body
from edgeauth.oauth.params import MAX_BODY_BYTES
from edgeauth.proxy import headers as hdr
from edgeauth.proxy.connection import UpstreamConnection
from edgeauth.proxy.upstream import BodyStream, Upstream, translate
from edgeauth.routing import Target

log = logging.getLogger(__name__)

FORM_CAP = MAX_BODY_BYTES  # a form body read whole, like the OAuth endpoints' bodies
READ_AHEAD = 256 * 1024  # rule 4: as much as the upstream leg buffers before it pauses


def peer_of(request: Request, server: ServerSettings) -> hdr.Peer:
    """The downstream connection as the gateway sees it."""
    facts = request.peer
    return hdr.Peer(
        address=facts.address,
        scheme="https" if facts.tls_version is not None else "http",
        host=request.headers.get("Host", ""),
        port=facts.local_port,
        trusted=hdr.is_trusted(facts.address, server.trusted_proxies),
    )


def check_declared_length(request: Request, target: Target) -> None:
    """Refuse a body whose declared length is over the limit before reading any of it."""
    limit = target.service.max_request_body_bytes
    length = request.content_length
    if limit and length is not None and length > limit:
        raise BodyTooLarge()


def form_cap(target: Target) -> int:
    """The most of a form body read whole to find its token: FORM_CAP, or the route's
    `max_request_body_bytes` if smaller."""
    limit = target.service.max_request_body_bytes
    return min(FORM_CAP, limit) if limit else FORM_CAP


def upstream_target(target: Target, path: str, raw_query: str) -> str:
    """The request-target to send upstream: the service's path and the query as received."""
    upstream_path = target.upstream_path(path)
    return f"{upstream_path}?{raw_query}" if raw_query else upstream_path


async def forward(
    request: Request,
    target: Target,
    path: str,
    ex: Exchange,
    *,
    upstream: Upstream,
    server: ServerSettings,
    peer: hdr.Peer,
    identity: Iterable[tuple[str, str]] = (),
    hidden: frozenset[str] = frozenset(),
    raw_query: str = "",
    whole_body: bytes | None = None,
) -> AnyResponse:
    """Proxy the request to the target's service and stream the response back; `whole_body`
    is the body to send instead of the client's, which the gateway has already read."""
    check_declared_length(request, target)
    strip = target.route.strip_path and target.prefix != "/"
    fwd = hdr.forwarded(
        peer, request.headers, target.prefix if strip else None, server.trusted_proxies
    )
    out_headers = hdr.upstream_request_headers(
        request.headers.items(),
        fwd,
        request_id_header=server.request_id_header,
        request_id=ex.request_id,
        identity=identity,
        hidden=hidden,
    )
    body = None
    if whole_body is not None:
        body = BodyStream.whole(whole_body)
    elif request.body_exists:
        body = BodyStream(
            request.content.iter_any(),
            target.service.max_request_body_bytes,
            request.content_length,
        )
    request.send_continue()
    sent = time.perf_counter()
    try:
        up = await upstream.send(
            request.method, upstream_target(target, path, raw_query), out_headers, body
        )
        ex.upstream_ms = (time.perf_counter() - sent) * 1000
        try:
            resp = await _relay(request, up, body, ex, server)
        except BaseException:
            up.close()
            raise
        upstream.release(up)
    finally:
        if body is not None:
            # Counted once the exchange is over: after an early answer the upload goes on
            # while the answer is relayed, until the connection is pooled or closed.
            ex.bytes_in = body.size
    return resp


async def _relay(
    request: Request,
    up: UpstreamConnection,
    body: BodyStream | None,
    ex: Exchange,
    server: ServerSettings,
) -> AnyResponse:
    if body is not None and body.too_large:
        raise BodyTooLarge()
    headers = hdr.downstream_response_headers(
        up.headers(), request_id_header=server.request_id_header, request_id=ex.request_id
    )
    try:
        whole = up.whole_body()
    except Exception as exc:
        raise translate(exc, body) from exc  # nothing sent yet: 502
    ex.status = up.status
    ahead: list[bytes] = []
    if whole is None and _closes_unframed(request, up):
        ahead, ended = await _read_ahead(up, body)
        if ended:
            whole = b"".join(ahead)
    if whole is not None:
        # Already complete (the common small answer): head and body leave in one TLS write.
        ex.bytes_out = len(whole)
        return Response(up.status, reason=up.reason, headers=headers, body=whole)
    resp = StreamResponse(
        status=up.status, reason=up.reason, headers=headers, content_length=up.content_length
    )
    await resp.prepare(request)
    for chunk in ahead:
        ex.bytes_out += len(chunk)
        await resp.write(chunk)
    while True:
        try:
            chunk = await up.read()
        except Exception as exc:
            err = translate(exc, body)
            ex.error = "upstream_timeout" if isinstance(err, UpstreamTimeout) else "upstream_error"
            log.warning("upstream failed mid-response (request %s): %r", ex.request_id, exc)
            up.close()
            request.abort()  # a truncated body must not pass for a complete one
            return resp
        if not chunk:
            break
        ex.bytes_out += len(chunk)
        await resp.write(chunk)  # ConnectionResetError here: the client left; propagate
    await resp.write_eof()
    return resp


def _closes_unframed(request: Request, up: UpstreamConnection) -> bool:
    """Whether the answer's body would reach the client ended by the close (rule 4)."""
    return (
        request.version < (1, 1)
        and up.content_length is None
        and request.method != "HEAD"
        and has_body(up.status)
    )


async def _read_ahead(up: UpstreamConnection, body: BodyStream | None) -> tuple[list[bytes], bool]:
    """The body's first READ_AHEAD bytes or more (one upstream read past them), and whether
    that is all of it; a body that breaks before raises its gateway error (502, 504)."""
    chunks: list[bytes] = []
    size = 0
    while size <= READ_AHEAD:
        try:
            chunk = await up.read()
        except Exception as exc:
            raise translate(exc, body) from exc  # nothing sent yet
        if not chunk:
            return chunks, True
        chunks.append(chunk)
        size += len(chunk)
    return chunks, False
