"""The status listener for load balancers (`[status] listen`): served by the supervisor, no token.

`GET /status/live`, `GET /status/ready` and, with `[status] metrics = true`, `GET /metrics`.
Rule 1: it runs in a thread of the supervisor with an event loop of its own, on sockets the
supervisor bound at start. It never touches a worker or a bus itself: it reads what the
supervisor publishes in `Health` and asks the supervisor's loop for a ping round through it.
Rule 2: live = the supervisor's loop and every serving worker's event loop answer one ping
round (the bus, edgeauth/bus.py) within PING_SECONDS; a worker still starting counts as live
until it has had `start_seconds` to report ready.
Rule 3: ready = live, every slot's worker has reported ready, the supervisor is not stopping,
and the store answers within STORE_SECONDS.
Rule 4: a ping round still waiting for answers serves every probe that arrives meanwhile, so a
burst of probes costs the workers one round at a time; a complete round is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from edgeauth.config import Settings, StoreSettings
from edgeauth.errors import StoreError
from edgeauth.metrics import scrape
from edgeauth.store import open_store
from edgeauth.store.base import Store

log = logging.getLogger(__name__)

PING_SECONDS = 1.0
STORE_SECONDS = 2.0
CHECK_SECONDS = 0.01  # how often a probe looks whether its ping round is complete
THREAD_SECONDS = 5.0  # the longest the supervisor waits for the listener to start or stop


@dataclass(frozen=True, slots=True)
class SlotView:
    """One worker slot as the supervisor last published it."""

    index: int
    pid: int | None  # the worker serving the slot; None while it waits to be restarted
    ready: bool  # that worker has reported ready
    started: float  # time.monotonic() when that worker was started


@dataclass
class _Round:
    number: int
    asked: float  # time.monotonic()
    targets: dict[int, int] | None = None  # pid -> slot; None until the supervisor pinged
    answered: frozenset[int] = frozenset()

    def complete(self) -> bool:
        return self.targets is not None and self.answered >= self.targets.keys()


class Health:
    """What the supervisor's thread and the listener's thread share, under one lock."""

    def __init__(self, settings: Settings, start_seconds: float) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._slots: tuple[SlotView, ...] = ()
        self._stopping = False
        self._round = _Round(0, -PING_SECONDS)
        self.start_seconds = start_seconds
        # the listener writes a byte to wake the supervisor's select() for a ping round
        self._wake_listener, self._wake_supervisor = socket.socketpair()
        for end in (self._wake_listener, self._wake_supervisor):
            end.setblocking(False)

    # the supervisor's side ------------------------------------------------------------
    def wake_fd(self) -> int:
        return self._wake_supervisor.fileno()

    def publish(self, slots: tuple[SlotView, ...], settings: Settings, stopping: bool) -> None:
        with self._lock:
            self._slots, self._settings, self._stopping = slots, settings, stopping

    def round_asked(self) -> int:
        """Drain the wake-ups; the number of the round whose pings the supervisor now sends."""
        with contextlib.suppress(BlockingIOError):
            while self._wake_supervisor.recv(4096):
                pass
        with self._lock:
            return self._round.number

    def pinged(self, number: int, targets: dict[int, int]) -> None:
        with self._lock:
            if self._round.number == number:
                self._round.targets = targets

    def pong(self, pid: int, frame: bytes) -> None:
        with self._lock:
            current = self._round
            if frame == ping_frame(current.number):
                current.answered |= {pid}

    def close(self) -> None:
        self._wake_listener.close()
        self._wake_supervisor.close()

    # the listener's side --------------------------------------------------------------
    def snapshot(self) -> tuple[tuple[SlotView, ...], Settings, bool]:
        with self._lock:
            return self._slots, self._settings, self._stopping

    def ask(self) -> _Round:
        """The ping round in flight, or a new one (Rule 4)."""
        with self._lock:
            now = time.monotonic()
            current = self._round
            if now - current.asked < PING_SECONDS and not current.complete():
                return current
            self._round = _Round(self._round.number + 1, now)
            round_ = self._round
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_listener.send(b"!")
        return round_

    def result(self, round_: _Round) -> tuple[dict[int, int] | None, frozenset[int]]:
        with self._lock:
            return round_.targets, round_.answered


def ping_frame(number: int) -> bytes:
    """The bus datagram of ping round `number` (bus.PING_BYTES long); the pong is the same."""
    return bytes([number % 256])


class StatusListener:
    """The aiohttp server of the status listener, in its own thread (Rule 1)."""

    def __init__(self, health: Health, sockets: list[socket.socket], metrics_dir: str) -> None:
        self.health = health
        self._sockets = sockets
        self._metrics_dir = metrics_dir
        self._thread = threading.Thread(target=self._run, name="status-listener", daemon=True)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._store: Store | None = None
        self._store_settings: StoreSettings | None = None
        self._store_lock: asyncio.Lock | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(THREAD_SECONDS):
            log.error("the status listener did not start in time")

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has already ended
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(THREAD_SECONDS)
        for sock in self._sockets:
            sock.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._stop, self._store_lock = asyncio.Event(), asyncio.Lock()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        for sock in self._sockets:
            await web.SockSite(runner, sock).start()
        self._loop = asyncio.get_running_loop()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            if self._store is not None:
                await self._store.close()

    async def _dispatch(self, request: web.Request) -> web.Response:
        handler = {
            "/status/live": self._live,
            "/status/ready": self._ready,
            "/metrics": self._metrics,
        }.get(request.path)
        if handler is None:
            return _json({"message": "Not found"}, 404)
        if request.method not in ("GET", "HEAD"):
            return _json({"message": "Method not allowed"}, 405, Allow="GET, HEAD")
        return await handler()

    async def _live(self) -> web.Response:
        reasons = await self._live_reasons()
        if reasons:
            return _json({"status": "not live", "reasons": reasons}, 503)
        return _json({"status": "live"}, 200)

    async def _ready(self) -> web.Response:
        slots, settings, stopping = self.health.snapshot()
        live, store = await asyncio.gather(self._live_reasons(), self._store_reason(settings))
        reasons = ["the gateway is stopping: its workers drain"] if stopping else []
        reasons += [reason for view in slots if (reason := _not_ready(view))]
        reasons += live + ([store] if store else [])
        if reasons:
            return _json({"status": "not ready", "reasons": reasons}, 503)
        return _json({"status": "ready"}, 200)

    async def _metrics(self) -> web.Response:
        _, settings, _ = self.health.snapshot()
        if not settings.status.metrics:
            return _json({"message": "Not found"}, 404)
        reachable = await self._store_reason(settings) is None
        body = await scrape(settings.server.tls_cert_file, reachable, self._metrics_dir)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _live_reasons(self) -> list[str]:
        """Why the gateway is not live (Rule 2); empty when it is."""
        slots, _, _ = self.health.snapshot()
        now = time.monotonic()
        reasons = [
            f"slot {view.index}: worker {view.pid} has not reported ready in"
            f" {self.health.start_seconds:g} s"
            for view in slots
            if not view.ready and view.pid is not None
            if now - view.started > self.health.start_seconds
        ]
        return reasons + await self._ping_reasons()

    async def _ping_reasons(self) -> list[str]:
        round_ = self.health.ask()
        while True:
            targets, answered = self.health.result(round_)
            if targets is not None and answered >= targets.keys():
                return []
            if time.monotonic() - round_.asked >= PING_SECONDS:
                break
            await asyncio.sleep(CHECK_SECONDS)
        if targets is None:
            return [f"the supervisor did not answer a ping in {PING_SECONDS:g} s"]
        return [
            f"slot {slot}: worker {pid} did not answer a ping in {PING_SECONDS:g} s"
            for pid, slot in sorted(targets.items(), key=lambda item: item[1])
            if pid not in answered
        ]

    async def _store_reason(self, settings: Settings) -> str | None:
        """None when the store answers within STORE_SECONDS; why not otherwise."""
        backend = settings.store.backend
        try:
            store = await asyncio.wait_for(self._opened(settings.store), STORE_SECONDS)
            answers = await asyncio.wait_for(store.ping(), STORE_SECONDS)
        except TimeoutError:
            return f"store: the {backend} store did not answer in {STORE_SECONDS:g} s"
        except (StoreError, OSError) as exc:
            return f"store: the {backend} store cannot be opened: {exc}"
        return None if answers else f"store: the {backend} store does not answer"

    async def _opened(self, settings: StoreSettings) -> Store:
        """The listener's own store, (re)opened for the settings in force (a reload may change
        them)."""
        assert self._store_lock is not None  # noqa: S101 - set before the first request
        async with self._store_lock:
            if self._store is not None and self._store_settings != settings:
                store, self._store = self._store, None
                await store.close()
            if self._store is None:
                self._store = await open_store(settings)
                self._store_settings = settings
            return self._store


def _not_ready(view: SlotView) -> str | None:
    if view.pid is None:
        return f"slot {view.index}: no worker (restarting)"
    if not view.ready:
        return f"slot {view.index}: worker {view.pid} is starting"
    return None


def _json(body: dict[str, Any], status: int, **headers: str) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )
