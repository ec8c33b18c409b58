"""The status listener for load balancers (`[status] listen`): served by the supervisor, no token.

`GET /status/live`, `GET /status/ready` and, with `[status] metrics = true` and metrics enabled,
`GET /metrics`.
Rule 1: it runs in a thread of the supervisor with an event loop of its own, on sockets the
supervisor bound at start. It never touches a worker or a bus itself: it reads what the
supervisor publishes in `Health` and asks the supervisor's loop for a ping round through it.
Rule 2: live = the supervisor's loop and every serving worker's event loop answer one ping
round (the bus, edgeauth/bus.py) within PING_SECONDS; a worker still starting counts as live
until it has had `start_seconds` to report ready.
Rule 3: ready = live, every one of `server.workers` slots has a worker that reported ready
(nothing published yet counts as starting), the supervisor is not stopping, and the store
answers within STORE_SECONDS.
Rule 4: a ping round still waiting for answers serves every probe that arrives meanwhile, so a
burst of probes costs the workers one round at a time; a complete round is never reused. A
probe awaits its round's event, which the supervisor's thread sets when the last pong arrives.
Rule 5: one store check at a time, its answer reused for STORE_CACHE_SECONDS: a probe flood
is not a flood of store queries. The client gets a generic reason (no driver text: it holds
hosts, users, paths); the detail is logged once each time it changes.
Rule 6: at most MAX_CONNECTIONS connections at once (beyond: a 503 and close), and a
connection must send a whole request within IDLE_SECONDS (aiohttp's keepalive timeout, which
also runs from the connection's start); aiohttp bounds the header block (8190-byte lines and
fields, 128 headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from edgeauth.admin.http import json
from edgeauth.config import Settings, StoreSettings
from edgeauth.errors import StoreError
from edgeauth.metrics import scrape
from edgeauth.store import open_store
from edgeauth.store.base import Store

log = logging.getLogger(__name__)

PING_SECONDS = 1.0
STORE_SECONDS = 2.0
STORE_CACHE_SECONDS = 1.0  # how long a store answer serves later probes (Rule 5)
THREAD_SECONDS = 5.0  # the longest the supervisor waits for the listener to start or stop
MAX_CONNECTIONS = 64
IDLE_SECONDS = 5.0
_BUSY_BODY = b'{"message":"Too many connections to the status listener"}'
BUSY_ANSWER = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class StatusListenerError(Exception):
    """The status listener's thread did not come to serve (the supervisor then exits)."""


@dataclass(frozen=True, slots=True)
class SlotView:
    """One worker slot as the supervisor last published it."""

    index: int
    pid: int | None  # the worker serving the slot; None before the first or while restarting
    ready: bool  # that worker has reported ready
    started: float  # time.monotonic() when that worker was started; 0.0 before the first


@dataclass
class _Round:
    number: int
    asked: float  # time.monotonic()
    targets: dict[int, int] | None = None  # pid -> slot; None until the supervisor pinged
    answered: frozenset[int] = frozenset()
    loop: asyncio.AbstractEventLoop | None = None  # the listener's, for `done`
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def complete(self) -> bool:
        return self.targets is not None and self.answered >= self.targets.keys()

    def wake(self) -> None:
        """From the supervisor's thread: the probes awaiting this round may look (Rule 4)."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the listener's loop has ended
                self.loop.call_soon_threadsafe(self.done.set)


class Health:
    """What the supervisor's thread and the listener's thread share, under one lock."""

    def __init__(self, settings: Settings, start_seconds: float) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._slots: tuple[SlotView, ...] = ()  # nothing published yet: starting (Rule 3)
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
            current = self._round
            if current.number != number or current.targets is not None:
                return
            current.targets = targets
            complete = current.complete()
        if complete:
            current.wake()

    def pong(self, pid: int, frame: bytes) -> None:
        with self._lock:
            current = self._round
            if frame != ping_frame(current.number) or current.complete():
                return
            current.answered |= {pid}
            complete = current.complete()
        if complete:
            current.wake()

    def close(self) -> None:
        self._wake_listener.close()
        self._wake_supervisor.close()

    # the listener's side --------------------------------------------------------------
    def snapshot(self) -> tuple[tuple[SlotView, ...], Settings, bool]:
        with self._lock:
            return self._slots, self._settings, self._stopping

    def ask(self) -> _Round:
        """The ping round in flight, or a new one (Rule 4); called on the listener's loop."""
        with self._lock:
            now = time.monotonic()
            current = self._round
            if now - current.asked < PING_SECONDS and not current.complete():
                return current
            self._round = _Round(self._round.number + 1, now, loop=asyncio.get_running_loop())
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


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted until the connection is lost (Rule 6)."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._inner.connection_lost(exc)


class _Busy(asyncio.Protocol):
    """A connection past MAX_CONNECTIONS: a 503, then closed (Rule 6)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)  # noqa: S101 - a TCP transport
        transport.write(BUSY_ANSWER)
        transport.close()


class StatusListener:
    """The aiohttp server of the status listener, in its own thread (Rule 1)."""

    def __init__(self, health: Health, sockets: list[socket.socket], metrics_dir: str) -> None:
        self.health = health
        self._sockets = sockets
        self._metrics_dir = metrics_dir
        self._thread = threading.Thread(target=self._run, name="status-listener", daemon=True)
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._connections = 0
        self._store: Store | None = None
        self._store_settings: StoreSettings | None = None
        self._store_lock: asyncio.Lock | None = None
        self._store_task: asyncio.Task[str | None] | None = None
        self._store_answer: tuple[float, StoreSettings, str | None] | None = None
        self._store_detail: str | None = None  # the last logged store problem (Rule 5)

    def start(self) -> None:
        """Serve, or raise StatusListenerError: a listener that does not serve must not be
        advertised as the gateway's."""
        self._thread.start()
        if not self._started.wait(THREAD_SECONDS):
            raise StatusListenerError(f"it did not start in {THREAD_SECONDS:g} s")
        if self._failure is not None:
            raise StatusListenerError(str(self._failure) or type(self._failure).__name__)

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
        except Exception as exc:
            if not self._started.is_set():
                self._failure = exc  # start() reports it
            else:
                log.exception("the status listener stopped")
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._stop, self._store_lock = asyncio.Event(), asyncio.Lock()
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
            keepalive_timeout=IDLE_SECONDS,
        )
        await runner.setup()
        loop = asyncio.get_running_loop()
        servers: list[asyncio.Server] = []
        try:
            for sock in self._sockets:
                servers.append(await loop.create_server(self._protocol(runner), sock=sock))
            self._loop = loop
            self._started.set()
            await self._stop.wait()
        finally:
            for server in servers:
                server.close()
            await runner.cleanup()
            if self._store_task is not None:
                self._store_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._store_task  # done with the store before it is closed
            if self._store is not None:
                await self._store.close()

    def _protocol(self, runner: web.AppRunner) -> Callable[[], asyncio.Protocol]:
        """aiohttp's protocol factory, capped at MAX_CONNECTIONS (Rule 6)."""
        server = runner.server
        assert server is not None  # noqa: S101 - set by runner.setup()

        def release() -> None:
            self._connections -= 1

        def protocol() -> asyncio.Protocol:
            if self._connections >= MAX_CONNECTIONS:
                return _Busy()
            self._connections += 1
            return _Counted(server(), release)

        return protocol

    async def _dispatch(self, request: web.Request) -> web.Response:
        handler = {
            "/status/live": self._live,
            "/status/ready": self._ready,
            "/metrics": self._metrics,
        }.get(request.path)
        if handler is None:
            return json({"message": "Not found"}, 404)
        if request.method not in ("GET", "HEAD"):
            response = json({"message": "Method not allowed"}, 405)
            response.headers["Allow"] = "GET, HEAD"
            return response
        return await handler()

    async def _live(self) -> web.Response:
        reasons = await self._live_reasons()
        if reasons:
            return json({"status": "not live", "reasons": reasons}, 503)
        return json({"status": "live"}, 200)

    async def _ready(self) -> web.Response:
        _, settings, _ = self.health.snapshot()
        live, store = await asyncio.gather(self._live_reasons(), self._store_reason(settings))
        slots, settings, stopping = self.health.snapshot()  # as it is now, after the waits
        reasons = ["the gateway is stopping: its workers drain"] if stopping else []
        reasons += _slot_reasons(slots, settings.server.workers)
        reasons += live + ([store] if store else [])
        if reasons:
            return json({"status": "not ready", "reasons": reasons}, 503)
        return json({"status": "ready"}, 200)

    async def _metrics(self) -> web.Response:
        """Served with status.metrics, and like the admin API's only while metrics are on."""
        _, settings, _ = self.health.snapshot()
        if not (settings.status.metrics and settings.metrics.enabled):
            return json({"message": "Not found"}, 404)
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
        left = PING_SECONDS - (time.monotonic() - round_.asked)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(round_.done.wait(), max(0.0, left))
        targets, answered = self.health.result(round_)
        if targets is None:
            return [f"the supervisor did not answer a ping in {PING_SECONDS:g} s"]
        return [
            f"slot {slot}: worker {pid} did not answer a ping in {PING_SECONDS:g} s"
            for pid, slot in sorted(targets.items(), key=lambda item: item[1])
            if pid not in answered
        ]

    async def _store_reason(self, settings: Settings) -> str | None:
        """None when the store answers; why not otherwise (Rule 5)."""
        answer = self._store_answer
        if answer is not None and answer[1] == settings.store and _fresh(answer[0]):
            return answer[2]
        if self._store_task is None or self._store_task.done():
            self._store_task = asyncio.create_task(self._check_store(settings.store))
        return await asyncio.shield(self._store_task)

    async def _check_store(self, settings: StoreSettings) -> str | None:
        reason, detail = await self._ask_store(settings)
        if detail != self._store_detail:
            self._store_detail = detail
            fields = {"backend": settings.backend, "problem": detail}
            if detail is None:
                log.info("the status listener reaches the store again", extra={"fields": fields})
            else:
                log.warning("the status listener cannot reach the store", extra={"fields": fields})
        self._store_answer = (time.monotonic(), settings, reason)
        return reason

    async def _ask_store(self, settings: StoreSettings) -> tuple[str | None, str | None]:
        """(the reason a client is shown, the detail for the log); both None when it answers."""
        backend = settings.backend
        try:
            store = await asyncio.wait_for(self._opened(settings), STORE_SECONDS)
            answers = await asyncio.wait_for(store.ping(), STORE_SECONDS)
        except TimeoutError:
            late = f"did not answer in {STORE_SECONDS:g} s"
            return f"store: the {backend} store {late}", late
        except (StoreError, OSError) as exc:
            return f"store: the {backend} store does not answer", f"cannot be opened: {exc}"
        if answers:
            return None, None
        return f"store: the {backend} store does not answer", "a query failed"

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


def _fresh(answered: float) -> bool:
    return time.monotonic() - answered < STORE_CACHE_SECONDS


def _slot_reasons(slots: tuple[SlotView, ...], workers: int) -> list[str]:
    """Why the workers are not all ready (Rule 3): each slot's, or the count's."""
    reasons = [reason for view in slots if (reason := _not_ready(view))]
    ready = sum(1 for view in slots if view.ready and view.pid is not None)
    if not reasons and ready != workers:
        reasons.append(f"starting: {ready} of {workers} workers ready")
    return reasons


def _not_ready(view: SlotView) -> str | None:
    if view.pid is None:
        state = "restarting" if view.started else "starting"
        return f"slot {view.index}: no worker ({state})"
    if not view.ready:
        return f"slot {view.index}: worker {view.pid} is starting"
    return None
