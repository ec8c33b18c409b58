"""The gateway of one worker process: listeners, connection protocol, request dispatch.

Rule 1: `handle()` is the one place that turns any exception into a response: edgeauth's own
errors render as documented bodies, anything else is logged with the request id and answers
a generic 500, never a stack trace.
Rule 2: beyond `max_inflight_requests` a request gets a fast 503, so a saturated worker sheds
load instead of queueing without bound.
Rule 3: the stream listeners ([[streams]], edgeauth/stream/) share the worker's access log and
metrics, and stop accepting with the HTTP ones; their connections drain on their own terms
(`stop`'s `streams_until`), while what only HTTP uses (the admin API among it) closes with HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from edgeauth import crypto, rendering, tls
from edgeauth.admin.app import build_admin_app
from edgeauth.admin.http import AdminContext
from edgeauth.audit import AuditLog
from edgeauth.bootstrap import policy_for, read_or_create_secret
from edgeauth.bus import WorkerBus
from edgeauth.cache import Header, TokenCache
from edgeauth.config import ServerSettings, ServiceSettings, Settings
from edgeauth.errors import BadPath, EdgeAuthError, NoRoute, Overloaded, StoreError
from edgeauth.exchange import Exchange
from edgeauth.feed import RevocationFeed, feed_for
from edgeauth.listener import Listener
from edgeauth.logs import AccessLog
from edgeauth.messages import AnyResponse, Request, Response, has_body
from edgeauth.metrics import FLUSH_SECONDS, Recorder
from edgeauth.oauth import routes as oauth_routes
from edgeauth.oauth.policy import Policy
from edgeauth.protocol import Connections, GatewayProtocol, Limits
from edgeauth.proxy import headers as hdr
from edgeauth.proxy.routes import forward, peer_of
from edgeauth.proxy.upstream import Upstream
from edgeauth.routing import Router, normalize_path, public_base
from edgeauth.store import open_store
from edgeauth.store.base import Store
from edgeauth.stream.server import Streams
from edgeauth.validation import Validator

log = logging.getLogger(__name__)

SERVER_HEADER = "edgeauth"
SWEEP_SECONDS = 600.0


def _answered(ex: Exchange, request: Request, resp: Response) -> None:
    """The status and body size of a whole response, as protocol.py writes it (no body for
    HEAD or a status without one)."""
    ex.status = resp.status
    ex.bytes_out = len(resp.body) if request.method != "HEAD" and has_body(resp.status) else 0


def _hidden_headers(settings: Settings, service: ServiceSettings) -> frozenset[str]:
    """Client headers never forwarded to this service, beyond the fixed rules of headers.py:
    `drop_request_headers`, and the token's header under `hide_credentials`."""
    dropped = set(settings.server.drop_request_headers)
    if service.oauth2 is not None and service.oauth2.hide_credentials:
        dropped.add(service.oauth2.auth_header_name)
    return frozenset(dropped)


def _limits(server: ServerSettings) -> Limits:
    return Limits(
        server.header_timeout_seconds,
        server.max_request_line_bytes,
        server.max_header_bytes,
        server.max_header_count,
        server.keepalive_timeout_seconds,
        server.body_timeout_seconds,
        server.request_timeout_seconds,
    )


@dataclass(frozen=True, slots=True)
class Components:
    """What `Gateway.start` builds, all before the first request can arrive: handlers use
    them without asking whether start has run. `admin` is None only where the configuration
    has none."""

    store: Store
    validator: Validator
    feed: RevocationFeed
    policies: dict[str, Policy]
    endpoints: dict[str, oauth_routes.Endpoints]
    issuers: dict[str, str]
    server: Connections
    admin: web.AppRunner | None  # only with admin sockets
    sweeper: asyncio.Task[None]
    gauges: asyncio.Task[None]


class Gateway:
    """Everything one worker serves: owns the upstream pools, the access log and listeners."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: socket.socket | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock  # the wall clock expiry is judged by, read once per request
        self._bus = None if bus is None else WorkerBus(bus)
        self.router = Router(settings.services)
        self._hidden = {s.name: _hidden_headers(settings, s) for s in settings.services}
        self.upstreams = {s.name: Upstream(s) for s in settings.services}
        self.access_log = AccessLog(settings.log.access_log)
        self.audit_log = AuditLog(settings.log.audit_log)  # opened by the admin app
        self.metrics = Recorder(settings.metrics.enabled, settings.metrics.per_consumer)
        self.streams = Streams(settings, self.access_log, self.metrics)
        self.c: Components  # set by start()
        self._inflight = 0
        self._listeners: list[Listener] = []

    async def start(
        self,
        tls_sockets: Sequence[socket.socket],
        plain_sockets: Sequence[socket.socket] = (),
        admin_sockets: Sequence[socket.socket] = (),
        stream_sockets: Sequence[socket.socket] = (),
    ) -> None:
        """Open the store, build the components, then start accepting on already-bound
        sockets (the admin API's first, as before); `stream_sockets` are one per
        stream_addresses(settings), in that order."""
        server = self.settings.server
        port = tls_sockets[0].getsockname()[1] if tls_sockets else None
        store = await open_store(self.settings.store)
        cache = TokenCache(self.settings.cache.max_tokens, self.settings.cache.negative_ttl_seconds)
        validator = Validator(store, cache)
        feed = feed_for(store, self.settings.store, self._bus)
        await feed.attach(validator)
        policies = {s.name: p for s in self.settings.services if (p := policy_for(s)) is not None}
        admin = await self._admin_app(store) if admin_sockets else None
        memo = crypto.SecretMemo()
        loop = asyncio.get_running_loop()
        self.c = Components(
            store=store,
            validator=validator,
            feed=feed,
            policies=policies,
            endpoints={
                name: oauth_routes.Endpoints.build(policy, store, memo, server.trusted_proxies)
                for name, policy in policies.items()
            },
            issuers={s.name: public_base(server, s, port) for s in self.settings.services},
            server=Connections(self.handle, _limits(server)),
            admin=admin,
            sweeper=loop.create_task(self._sweep(store)),
            gauges=loop.create_task(self._report_gauges()),
        )
        await self._serve_admin(admin_sockets)
        for upstream in self.upstreams.values():
            upstream.open()
        self.access_log.open()
        self._listen(tls_sockets, plain_sockets)
        self.streams.start(stream_sockets)

    def _listen(
        self, tls_sockets: Sequence[socket.socket], plain_sockets: Sequence[socket.socket]
    ) -> None:
        server = self.settings.server
        context = tls.server_context(
            server.tls_cert_file, server.tls_key_file, server.tls_min_version
        )
        slots = asyncio.Semaphore(server.max_connections)
        for sock, ctx in [(s, context) for s in tls_sockets] + [(s, None) for s in plain_sockets]:
            listener = Listener(
                sock,
                self.c.server,
                ssl_context=ctx,
                handshake_timeout=server.handshake_timeout_seconds,
                slots=slots,
            )
            listener.start()
            self._listeners.append(listener)

    async def _report_gauges(self) -> None:
        while True:
            self.streams.report()  # tallies first, so this flush carries them
            self.metrics.flush()
            stats = self.stats()
            self.metrics.gauges(
                stats["connections"], stats["inflight_requests"], stats["token_cache_entries"]
            )
            await asyncio.sleep(FLUSH_SECONDS)

    async def _admin_app(self, store: Store) -> web.AppRunner:
        """The admin API, set up but not yet listening."""
        context = AdminContext(
            settings=self.settings,
            store=store,
            token=read_or_create_secret(self.settings.admin.token_file),
            clock=self.clock,
            stats=self.stats,
            audit=self.audit_log,
        )
        runner = web.AppRunner(build_admin_app(context), access_log=None, handler_cancellation=True)
        await runner.setup()
        return runner

    async def _serve_admin(self, sockets: Sequence[socket.socket]) -> None:
        """The admin API on its own listener(s), never on the proxy's (design §6)."""
        if self.c.admin is None:
            return
        admin = self.settings.admin
        ssl_context = None
        if admin.tls_cert_file is not None and admin.tls_key_file is not None:
            ssl_context = tls.server_context(admin.tls_cert_file, admin.tls_key_file)
        for sock in sockets:
            await web.SockSite(self.c.admin, sock, ssl_context=ssl_context).start()

    def connections(self) -> list[GatewayProtocol]:
        """The open client connections of this worker's proxy listeners."""
        return list(self.c.server.connections)

    def stats(self) -> dict[str, Any]:
        """What this worker can say of itself, for /status and /metrics."""
        connections = len(self.c.server.connections)
        return {
            "connections": connections,
            "connections_by_state": {
                "active": self._inflight,
                "idle": max(0, connections - self._inflight),
            },
            "inflight_requests": self._inflight,
            "token_cache_entries": len(self.c.validator.cache),
        }

    def _reuse_memory(self) -> float:
        """How long dead rows are kept: a rotated refresh token replayed within this time is
        still recognised as reuse (and revokes its family) rather than as unknown."""
        ttls = [p.settings.refresh_token_ttl for p in self.c.policies.values()]
        if any(ttl == 0 for ttl in ttls):
            return 30 * 86400.0
        return float(max([86400, *ttls]))

    async def _sweep(self, store: Store) -> None:
        """Delete long-dead tokens and expired codes now and then (design §7)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS * random.uniform(0.5, 1.5))  # noqa: S311
            try:
                removed = await store.sweep(self.clock(), grace_seconds=self._reuse_memory())
            except StoreError as exc:
                log.warning("sweep failed: %s", exc)
            else:
                log.debug("swept %d dead rows", removed)

    async def stop(
        self, drain_seconds: float, *, streams_until: asyncio.Event | None = None
    ) -> None:
        """Stop accepting, let in-flight requests finish up to `drain_seconds`, then close.
        Stream connections get `drain_seconds` too, after `streams_until` is set when given
        (a worker retiring after a reload relays them until they end or it is stopped)."""
        c = self.c
        # every listener closes at once, then waits for the handshakes under way: one after
        # the other, the last ones would accept for the old settings a handshake timeout each
        await asyncio.gather(
            *(listener.stop() for listener in self._listeners), self.streams.stop_accepting()
        )
        if self._bus is not None:
            self._bus.stopped_accepting()
        c.server.pre_shutdown()  # idle keep-alive connections close now
        await asyncio.gather(
            self._stop_http(drain_seconds), self.streams.drain(drain_seconds, streams_until)
        )
        c.sweeper.cancel()
        c.gauges.cancel()
        self.metrics.flush()
        await c.store.close()
        self.access_log.close()

    async def _stop_http(self, drain_seconds: float) -> None:
        """HTTP's drain, then what only HTTP uses, closed without waiting for the streams (a
        retiring worker may relay them for stream_retire_seconds): the upstream pools, the
        admin API, which would otherwise answer for the settings a reload replaced, and the
        revocation feed."""
        c = self.c
        await c.server.shutdown(drain_seconds)
        for upstream in self.upstreams.values():
            await upstream.close()
        if c.admin is not None:
            await c.admin.cleanup()
        await c.feed.stop()

    async def handle(self, request: Request) -> AnyResponse:
        """Entry point of every request on the proxy listener."""
        ex = Exchange(request.method, time.perf_counter())
        server = self.settings.server
        peer = peer_of(request, server)
        ex.client_ip = peer.address
        ex.request_id = hdr.request_id(request.headers.get(server.request_id_header), peer.trusted)
        ex.tls_version = request.peer.tls_version
        resp: AnyResponse | None = None
        try:
            if self._inflight >= server.max_inflight_requests:
                raise Overloaded()
            self._inflight += 1
            try:
                resp = await self._dispatch(request, ex, peer)
            finally:
                self._inflight -= 1
        except EdgeAuthError as exc:
            resp = self._error(exc, ex, request)
        except (asyncio.CancelledError, ConnectionError):
            ex.status = 499  # the client went away (nginx's convention)
            raise
        except Exception:
            log.exception("unhandled error (request %s)", ex.request_id)
            resp = self._error(EdgeAuthError(), ex, request)
        finally:
            if isinstance(resp, Response):  # a StreamResponse set both as it was written
                _answered(ex, request, resp)
            self._log(ex, request)
        return resp

    async def _dispatch(self, request: Request, ex: Exchange, peer: hdr.Peer) -> AnyResponse:
        server = self.settings.server
        raw_path, _, raw_query = request.raw_path.partition("?")
        ex.path = raw_path
        if "#" in request.raw_path:
            raise BadPath()  # a fragment is the client's own; the backend would drop what follows
        path = normalize_path(raw_path)
        ex.path = path.path
        if path.path.startswith(oauth_routes.WELL_KNOWN):
            prefix = path.path[len(oauth_routes.WELL_KNOWN) :]
            c = self.c
            return oauth_routes.serve_metadata(
                self.router, c.policies, c.issuers, peer.host, prefix, ex
            )
        target = self.router.match(peer.host, request.method, path)
        if target is None:
            raise NoRoute()
        ex.service = target.service.name
        ex.route = target.route.name
        identity: tuple[Header, ...] = ()
        whole_body: bytes | None = None
        policy = self.c.policies.get(target.service.name)
        if policy is not None:
            endpoint = oauth_routes.endpoint_of(path.path)
            if endpoint is not None:
                return await oauth_routes.handle(
                    request,
                    endpoint,
                    self.c.endpoints[policy.service],
                    peer,
                    ex,
                    self.metrics,
                    self.clock,
                )
            identity, raw_query, whole_body = await self.c.validator.authenticate(
                request, policy, target, raw_query, ex, self.metrics, self.clock
            )
        return await forward(
            request,
            target,
            path.path,
            ex,
            upstream=self.upstreams[target.service.name],
            server=server,
            peer=peer,
            identity=identity,
            hidden=self._hidden[target.service.name],
            raw_query=raw_query,
            whole_body=whole_body,
        )

    def _error(self, exc: EdgeAuthError, ex: Exchange, request: Request | None = None) -> Response:
        headers = {self.settings.server.request_id_header: ex.request_id, "Server": SERVER_HEADER}
        policy = self.c.policies.get(ex.service or "")
        headers.update(rendering.headers(exc, policy.settings.realm if policy else "edgeauth"))
        body = orjson.dumps(rendering.body(exc))
        resp = Response(exc.status, body=body, content_type="application/json", headers=headers)
        if request is not None and not request.content.is_eof():
            # The body was not read: close rather than drain an upload we refused.
            resp.force_close()
        return resp

    def _log(self, ex: Exchange, request: Request) -> None:
        ex.finish(time.perf_counter())
        self.metrics.request(ex)
        if self.access_log.enabled:
            self.access_log.record(ex)
