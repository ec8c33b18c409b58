"""The gateway of one worker process: listeners, connection protocol, request dispatch.

Rule 1: `handle()` is the one place that turns any exception into a response: edgeauth's own
errors render as documented bodies, anything else is logged with the request id and answers
a generic 500, never a stack trace.
Rule 2: beyond `max_inflight_requests` a request gets a fast 503, so a saturated worker sheds
load instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from edgeauth import tls
from edgeauth.config import Settings
from edgeauth.errors import EdgeAuthError, NoRoute, NotAuthenticated, Overloaded
from edgeauth.exchange import Exchange
from edgeauth.logs import AccessLog
from edgeauth.protocol import GatewayProtocol, Limits, Listener
from edgeauth.proxy import headers as hdr
from edgeauth.proxy.routes import forward, peer_of
from edgeauth.proxy.upstream import Upstream
from edgeauth.routing import Router, normalize_path

log = logging.getLogger(__name__)

SERVER_HEADER = "edgeauth"


class _Server(web.Server):
    """aiohttp's low-level server, building our protocol for each connection."""

    def __init__(self, handler: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(handler, handler_cancellation=True, **kwargs)
        self._limits = limits

    def __call__(self) -> GatewayProtocol:
        return GatewayProtocol(self, loop=self._loop, limits=self._limits, **self._kwargs)


class Gateway:
    """Everything one worker serves: owns the upstream pools, the access log and listeners."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = Router(settings.services)
        self.upstreams = {s.name: Upstream(s) for s in settings.services}
        self.access_log = AccessLog(settings.log.access_log)
        self._inflight = 0
        self._pid = os.getpid()
        self._listeners: list[Listener] = []
        self._server: _Server | None = None

    async def start(
        self, tls_sockets: Sequence[socket.socket], plain_sockets: Sequence[socket.socket] = ()
    ) -> None:
        """Open the upstream pools and start accepting on already-bound sockets."""
        server = self.settings.server
        for upstream in self.upstreams.values():
            upstream.open()
        self.access_log.open()
        limits = Limits(
            server.header_timeout_seconds, server.max_request_line_bytes, server.max_header_bytes
        )
        self._server = _Server(
            self.handle,
            limits,
            keepalive_timeout=server.keepalive_timeout_seconds,
            access_log=None,
            max_line_size=server.max_request_line_bytes,
            max_field_size=server.max_header_bytes,
            max_headers=server.max_header_count,
            auto_decompress=False,
            lingering_time=2.0,
        )
        context = tls.server_context(
            server.tls_cert_file, server.tls_key_file, server.tls_min_version
        )
        slots = asyncio.Semaphore(server.max_connections)
        for sock, ctx in [(s, context) for s in tls_sockets] + [(s, None) for s in plain_sockets]:
            listener = Listener(
                sock,
                self._server,
                ssl_context=ctx,
                handshake_timeout=server.handshake_timeout_seconds,
                slots=slots,
            )
            listener.start()
            self._listeners.append(listener)

    async def stop(self, drain_seconds: float) -> None:
        """Stop accepting, let in-flight requests finish up to `drain_seconds`, then close."""
        for listener in self._listeners:
            await listener.stop()
        if self._server is not None:
            await self._server.shutdown(drain_seconds)
        for upstream in self.upstreams.values():
            await upstream.close()
        self.access_log.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Entry point of every request on the proxy listener."""
        ex = Exchange(request.method, time.perf_counter())
        if self._inflight >= self.settings.server.max_inflight_requests:
            ex.request_id = hdr.request_id(None, False)
            resp = self._error(Overloaded(), ex)
            resp.headers["Retry-After"] = "1"
            self._log(ex, request)
            return resp
        self._inflight += 1
        try:
            return await self._dispatch(request, ex)
        except EdgeAuthError as exc:
            return self._error(exc, ex, request)
        except asyncio.CancelledError:
            ex.status = 499
            raise
        except ConnectionError:
            ex.status = 499
            raise
        except Exception:
            log.exception("unhandled error (request %s)", ex.request_id)
            return self._error(EdgeAuthError(), ex, request)
        finally:
            self._inflight -= 1
            self._log(ex, request)

    async def _dispatch(self, request: web.BaseRequest, ex: Exchange) -> web.StreamResponse:
        server = self.settings.server
        peer = peer_of(request, server)
        ex.client_ip = peer.address
        ex.request_id = hdr.request_id(request.headers.get(server.request_id_header), peer.trusted)
        protocol = request.protocol
        if isinstance(protocol, GatewayProtocol):
            ex.tls_version = protocol.tls_version
        raw_path = request.raw_path.partition("?")[0]
        ex.path = raw_path
        path = normalize_path(raw_path)
        ex.path = path.path
        target = self.router.match(peer.host, request.method, path)
        if target is None:
            raise NoRoute()
        ex.service = target.service.name
        ex.route = target.route.name
        if target.service.oauth2 is not None:
            # Bearer validation and the OAuth endpoints plug in here; until then a protected
            # service is never forwarded to.
            raise NotAuthenticated()
        return await forward(
            request,
            target,
            path.path,
            ex,
            upstream=self.upstreams[target.service.name],
            server=server,
            peer=peer,
        )

    def _error(
        self, exc: EdgeAuthError, ex: Exchange, request: web.BaseRequest | None = None
    ) -> web.Response:
        ex.status = exc.status
        resp = web.Response(
            status=exc.status,
            body=orjson.dumps({"message": exc.message}),
            content_type="application/json",
            headers={
                self.settings.server.request_id_header: ex.request_id,
                "Server": SERVER_HEADER,
            },
        )
        if request is not None and not request.content.is_eof():
            # The body was not read: close rather than drain an upload we refused.
            resp.force_close()
        ex.bytes_out = len(resp.body) if isinstance(resp.body, bytes) else 0
        return resp

    def _log(self, ex: Exchange, request: web.BaseRequest) -> None:
        if self.access_log.enabled:
            self.access_log.record(ex.entry(time.perf_counter(), self._pid))
