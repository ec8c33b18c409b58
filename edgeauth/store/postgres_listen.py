"""The node side of cluster-wide revocation on PostgreSQL (design §7, §8, issue 7).

A dedicated connection LISTENs on NOTIFY_CHANNEL and hands every revoked digest to the
worker at once. Rule (fail closed): from the moment that connection is lost until it is back,
the worker is told to distrust its cache (it reads every token from the store, so a
revocation it could not hear about is never served from memory); reconnection is retried with
a capped backoff and, once back, the cache is dropped again (anything may have been missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from edgeauth.store.postgres import NOTIFY_CHANNEL, parse_notification

log = logging.getLogger(__name__)

APPLICATION_NAME = "edgeauth-revocation-listener"  # how operators (and tests) find it
MAX_BACKOFF_SECONDS = 2.0
KEEPALIVE_SECONDS = 1.0


class NotifyListener:
    def __init__(
        self,
        dsn: str,
        on_revoked: Callable[[Sequence[bytes]], None],
        on_lost: Callable[[], None],
        on_back: Callable[[], None],
    ) -> None:
        self._dsn = dsn
        self._on_revoked = on_revoked
        self._on_lost = on_lost
        self._on_back = on_back
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            digests = parse_notification(payload)
        except ValueError:
            log.warning("ignored a malformed revocation notification")
            return
        self._on_revoked(digests)

    async def _run(self) -> None:
        backoff = 0.05
        first = True
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn, timeout=5, server_settings={"application_name": APPLICATION_NAME}
                )
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                if first:
                    self._on_lost()
                    first = False
                log.warning("revocation listener cannot connect: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
                continue
            backoff = 0.05
            try:
                await self._listen(connection, first)
            finally:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
            first = False
            self._on_lost()
            log.error("revocation listener lost; cache distrusted until it is back")

    async def _listen(self, connection: Any, first: bool) -> None:
        """Serve notifications until the connection dies (checked every KEEPALIVE_SECONDS)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _conn: lost.set())
        await connection.add_listener(NOTIFY_CHANNEL, self._notified)
        if not first:
            log.info("revocation listener back")
        self._on_back()
        while not lost.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost.wait(), KEEPALIVE_SECONDS)
            if lost.is_set():
                break
            try:
                await connection.execute("SELECT 1", timeout=KEEPALIVE_SECONDS)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                break
