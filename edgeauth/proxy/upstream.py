"""Pooled keep-alive connections to one service, and the translation of client errors.

Rule 1: one ClientSession per service, sized by `max_connections`, with no automatic
decompression and no headers of its own, so that the upstream leg is a pass-through.
Rule 2: a request is retried only when it failed to connect, before any byte of it was sent
(design §2 `retries`). aiohttp's own replay of idempotent requests is switched off, and pooled
connections idle out after KEEPALIVE_SECONDS, below the idle timeouts of common backends
(Apache's 5 s), so that a connection the upstream has just closed is rarely picked.
Rule 3: no aiohttp exception escapes this module: they become UpstreamUnreachable (502) or
UpstreamTimeout (504).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import ClientResponse, ClientSession, TCPConnector
from yarl import URL

from edgeauth.config import ServiceSettings
from edgeauth.errors import BodyTooLarge, UpstreamTimeout, UpstreamUnreachable

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 4.0
_TIMEOUTS = (aiohttp.ServerTimeoutError, asyncio.TimeoutError)


class BodyStream:
    """The client's request body as the upstream request's payload, counted as it streams.

    Raises BodyTooLarge as soon as the running total passes `limit` (0 = unlimited), so an
    over-limit chunked upload is cut without buffering it.
    """

    __slots__ = ("_chunks", "_limit", "size", "started")

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self.size = 0
        self.started = False

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        chunk = await self._chunks.__anext__()
        self.size += len(chunk)
        if self._limit and self.size > self._limit:
            raise BodyTooLarge()
        return chunk

    @property
    def too_large(self) -> bool:
        return bool(self._limit) and self.size > self._limit


def _ssl_for(service: ServiceSettings) -> ssl.SSLContext | bool:
    if not service.url.startswith("https:"):
        return True
    if not service.tls_verify:
        return False
    ctx = ssl.create_default_context()
    if service.ca_file is not None:
        ctx.load_verify_locations(service.ca_file)
    return ctx


class Upstream:
    """The connection pool of one service."""

    def __init__(self, service: ServiceSettings) -> None:
        self.service = service
        self._retries = service.retries
        self._session: ClientSession | None = None

    def open(self) -> None:
        """Create the session; must run inside the worker's event loop."""
        service = self.service
        connector = TCPConnector(
            limit=service.max_connections,
            limit_per_host=service.max_connections,
            ssl=_ssl_for(service),
            keepalive_timeout=KEEPALIVE_SECONDS,
            enable_cleanup_closed=False,
        )
        self._session = ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=service.connect_timeout_seconds,
                sock_read=service.read_timeout_seconds,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )
        # No public switch in aiohttp 3.14: without this a GET the upstream already received
        # is sent again when the connection drops before the answer.
        self._session._retry_connection = False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        method: str,
        url: URL,
        headers: list[tuple[str, str]],
        body: BodyStream | None,
    ) -> ClientResponse:
        """Send one request, retrying only where no byte of it can have reached upstream."""
        if self._session is None:
            raise RuntimeError("Upstream.open() was not called")
        attempt = 0
        while True:
            try:
                return await self._session.request(
                    method,
                    url,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                    compress=None,
                    chunked=None,
                )
            except Exception as exc:
                retry = attempt < self._retries and _retryable(exc, body)
                if not retry:
                    raise translate(exc, body) from exc
                attempt += 1
                log.debug("retrying %s %s after %r", method, url.path, exc)


def _retryable(exc: BaseException, body: BodyStream | None) -> bool:
    """Only a failed connect is retried: nothing of the request can have left the gateway."""
    if body is not None and body.started:
        return False
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def translate(exc: BaseException, body: BodyStream | None) -> Exception:
    """Map a client-leg failure to the gateway error that answers it."""
    if body is not None and body.too_large:
        return BodyTooLarge()
    if isinstance(exc, BodyTooLarge):
        return exc
    if isinstance(exc, _TIMEOUTS):
        return UpstreamTimeout()
    return UpstreamUnreachable()
