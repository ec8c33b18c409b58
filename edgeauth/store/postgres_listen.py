"""The node side of cluster-wide revocation on PostgreSQL (design §7, §8, issue 7): a path of
the revocation feed (feed.py, whose fail-closed rule applies).

A dedicated connection LISTENs on NOTIFY_CHANNEL and hands every revoked digest to the feed
at once. From start until it is connected, and whenever that connection is lost, it tells the
feed it cannot vouch; reconnection is retried with a capped backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from edgeauth.revocations import Tap
from edgeauth.store.postgres import NOTIFY_CHANNEL, parse_notification

log = logging.getLogger(__name__)

APPLICATION_NAME = "edgeauth-revocation-listener"  # how operators (and tests) find it
MAX_BACKOFF_SECONDS = 2.0
KEEPALIVE_SECONDS = 1.0
LISTENER = "revocation listener"


class NotifyListener:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._task: asyncio.Task[None] | None = None

    async def start(self, tap: Tap) -> None:
        tap.lost(LISTENER, "connecting", expected=True)
        self._task = asyncio.get_running_loop().create_task(self._run(tap))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, tap: Tap) -> None:
        backoff = 0.05
        while True:
            try:
                connection = await asyncpg.connect(
                    self._dsn, timeout=5, server_settings={"application_name": APPLICATION_NAME}
                )
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("revocation listener cannot connect: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
                continue
            backoff = 0.05
            try:
                await self._listen(connection, tap)
            except Exception as exc:  # a failed listen is a lost path, then a reconnect
                log.warning("revocation listener failed: %r", exc)
            finally:
                tap.lost(LISTENER, "connection lost")  # before the close, which may take 1 s
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)

    async def _listen(self, connection: Any, tap: Tap) -> None:
        """Serve notifications until the connection dies (checked every KEEPALIVE_SECONDS)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _conn: lost.set())

        def notified(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            try:
                digests = parse_notification(payload)
            except ValueError:
                log.warning("ignored a malformed revocation notification")
                return
            tap.revoked(digests)

        await connection.add_listener(NOTIFY_CHANNEL, notified)
        tap.back(LISTENER)
        while not lost.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(lost.wait(), KEEPALIVE_SECONDS)
            if lost.is_set():
                break
            try:
                await connection.execute("SELECT 1", timeout=KEEPALIVE_SECONDS)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                break
