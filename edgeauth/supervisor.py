"""The supervisor: binds the listeners once, runs N worker processes, keeps them running.

Rule 1: every worker slot gets its own SO_REUSEPORT socket per listen address, held open by
the supervisor, so the kernel spreads connections evenly and a restarting worker's share
waits in its backlog instead of being refused.
Rule 2: a worker that dies is restarted, with a backoff if it keeps dying young.
Rule 3: SIGTERM/SIGINT are passed on to the workers, which drain; the supervisor exits 0
once they are gone (or killed after `drain_seconds` plus a grace period).
Rule 4: SIGHUP reloads, whoever sends it: systemd (`systemctl reload`), an operator, or a
worker whose admin API has just written a new config file (POST /config, bus.supervisor_pid).
A SIGHUP that arrives during a reload makes one more reload after it.
Rule 5: the supervisor serves the status listener (edgeauth/status.py) from a thread, and its
own loop answers that listener's ping rounds, pinging each serving worker over its bus,
whenever it waits (in the main loop, and while workers start during a start or a reload).
What serves is published to it before it starts (no worker yet: not ready), and a listener
that cannot serve stops the start (exit 69) rather than be advertised.
Rule 6: a reload retires the old workers with SIGUSR2, a stop with SIGTERM: both drain HTTP
the same way, but a retiring worker keeps relaying its open stream connections until they end
(or a SIGTERM, a stop, cuts them after drain_seconds), so a reload never cuts a stream.
Rule 7: the supervisor's own figures (restarts, reloads) are written to the shared metrics
directory after each change, for whichever process answers /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from edgeauth import tls
from edgeauth.bootstrap import prepare_store, reload_problems
from edgeauth.bus import (
    MAX_DATAGRAM,
    STOPPED_ACCEPTING,
    SUPERVISOR_ENV,
    is_ping,
    send_nowait,
)
from edgeauth.config import Address, Settings, load_settings
from edgeauth.config.checks import stream_addresses
from edgeauth.errors import ConfigError, StoreError
from edgeauth.exitcodes import EX_UNAVAILABLE
from edgeauth.metrics import MULTIPROC_ENV, SupervisorFigures, process_dead
from edgeauth.sdnotify import Notifier
from edgeauth.status import Health, SlotView, StatusListener, StatusListenerError, ping_frame

log = logging.getLogger(__name__)

CERT_WARNING_DAYS = 14
READY_TIMEOUT_SECONDS = 30.0
KILL_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1


class ListenError(Exception):
    """An address that cannot be listened on, named with the config key that sets it."""

    def __init__(self, key: str, address: Address, cause: OSError) -> None:
        super().__init__(f"{address} ({key}): {cause.strerror or cause}")


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address.host else socket.AF_INET


def ensure_free(address: Address) -> None:
    """Fail (OSError EADDRINUSE) if anything listens there already, even with SO_REUSEPORT:
    a second edgeauth started by mistake must not silently share the port with the first."""
    if address.port == 0:
        return
    with socket.socket(_family(address), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address.host, address.port))


def bind(address: Address, port: int | None = None) -> socket.socket:
    """A listening socket for `address` (with `port` overriding a 0 port), SO_REUSEPORT set."""
    family = _family(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address.host, address.port if port is None else port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass
class Slot:
    """One worker position: its sockets outlive the processes that serve them."""

    index: int
    tls: list[socket.socket]
    plain: list[socket.socket]
    admin: list[socket.socket]
    streams: list[socket.socket]  # one per stream_addresses(settings), in that order
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    not_before: float = 0.0
    ready: bool = False  # its current worker has reported ready
    ready_fd: int | None = field(default=None, repr=False)
    bus: socket.socket | None = field(default=None, repr=False)  # the supervisor's end

    @property
    def sockets(self) -> list[socket.socket]:
        return self.tls + self.plain + self.admin + self.streams


# (kind, scheme) of each group of listeners a worker slot holds
GROUPS = ("tls", "plain", "admin", "stream")
# the config key behind each kind of listener, for errors that name it
KEYS = {
    "tls": "server.listen",
    "plain": "server.http_listen",
    "admin": "admin.listen",
    "status": "status.listen",
    "stream": "streams[].listen",
}


def _addresses(settings: Settings, kind: str) -> tuple[Address, ...]:
    server = settings.server
    return {
        "tls": server.listen,
        "plain": server.http_listen,
        "admin": (settings.admin.listen,),
        "status": settings.status.listen,
        "stream": stream_addresses(settings),
    }[kind]


def _bind(kind: str, address: Address, port: int | None = None) -> socket.socket:
    try:
        return bind(address, port)
    except OSError as exc:
        raise ListenError(KEYS[kind], address, exc) from exc


def ensure_all_free(settings: Settings) -> None:
    """ListenError for the first configured address something already listens on."""
    for kind in KEYS:
        for addr in _addresses(settings, kind):
            try:
                ensure_free(addr)
            except OSError as exc:
                raise ListenError(KEYS[kind], addr, exc) from exc


def bind_status(settings: Settings) -> tuple[list[socket.socket], list[str]]:
    """The status listener's sockets (held by the supervisor alone) and their URLs."""
    socks = [_bind("status", addr) for addr in settings.status.listen]
    return socks, [f"http://{_host(s.getsockname()[0])}:{s.getsockname()[1]}" for s in socks]


def bind_slots(settings: Settings) -> tuple[list[Slot], dict[str, list[str]]]:
    """Bind every slot's sockets; port 0 is resolved once and shared by all slots."""
    ports: dict[tuple[str, int, str], int] = {}
    slots: list[Slot] = []
    for index in range(settings.server.workers):
        groups: dict[str, list[socket.socket]] = {kind: [] for kind in GROUPS}
        for kind in GROUPS:
            for addr in _addresses(settings, kind):
                key = (addr.host, addr.port, kind)
                sock = _bind(kind, addr, ports.get(key))
                ports.setdefault(key, sock.getsockname()[1])
                groups[kind].append(sock)
        slots.append(Slot(index, groups["tls"], groups["plain"], groups["admin"], groups["stream"]))
    admin_tls = settings.admin.tls_cert_file is not None
    scheme = {
        "tls": "https",
        "plain": "http",
        "admin": "https" if admin_tls else "http",
        "stream": "tls",  # what a client speaks there: TLS, terminated or passed through
    }
    plain_streams = {(a.host, a.port) for s in settings.streams if not s.tls for a in s.listen}
    urls: dict[str, list[str]] = {"listen": [], "admin": [], "streams": []}
    group = {"admin": "admin", "stream": "streams"}
    for (host, configured, kind), port in ports.items():
        plain = kind == "stream" and (host, configured) in plain_streams
        shown = "tcp" if plain else scheme[kind]
        urls[group.get(kind, "listen")].append(f"{shown}://{_host(host)}:{port}")
    return slots, urls


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _close(bus: socket.socket | None, ready_fd: int | None) -> None:
    if bus is not None:
        bus.close()
    if ready_fd is not None:
        os.close(ready_fd)


def warn_if_expiring(cert_file: Path) -> None:
    """Log a warning when the listener's certificate expires within CERT_WARNING_DAYS."""
    left = tls.expires_at(cert_file) - time.time()
    if left < CERT_WARNING_DAYS * 86400:
        log.warning(
            "the TLS certificate expires soon",
            extra={"fields": {"file": str(cert_file), "days_left": round(left / 86400, 1)}},
        )


# a worker serving during a reload: (slot index, process, its bus, whether it had reported ready)
Serving = tuple[int, subprocess.Popen[bytes] | None, socket.socket | None, bool]


class Supervisor:
    """Runs and restarts the workers of one `edgeauth serve`."""

    def __init__(self, settings: Settings, config: Path) -> None:
        self.settings = settings
        self.config = config
        self._stopping = False
        self._reload_asked = False
        self._draining: list[subprocess.Popen[bytes]] = []
        self._slots: list[Slot] = []
        self._previous: list[Serving] | None = None  # during a reload: the workers serving
        self.notify = Notifier()
        # every worker's metrics in one directory, summed by whichever answers /metrics
        self._metrics_dir = tempfile.mkdtemp(prefix="edgeauth-metrics-")
        self._figures = SupervisorFigures()
        self._health = Health(settings, READY_TIMEOUT_SECONDS)
        self._worker_env = {
            **os.environ,
            MULTIPROC_ENV: self._metrics_dir,
            SUPERVISOR_ENV: str(os.getpid()),
        }

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._reload_asked = True

    def _on_usr1(self, signum: int, frame: FrameType | None) -> None:
        """logrotate: every worker reopens its access and audit log files."""
        for proc in self._live():
            proc.send_signal(signal.SIGUSR1)

    def run(self) -> int:
        try:
            return self._run()
        finally:
            self._health.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        warn_if_expiring(self.settings.server.tls_cert_file)
        try:
            asyncio.run(prepare_store(self.settings, starting=True))
        except (StoreError, OSError) as exc:
            log.error("cannot prepare the store or generated secrets: %s", exc)
            return EX_UNAVAILABLE
        try:
            ensure_all_free(self.settings)
            slots, urls = bind_slots(self.settings)
            status_socks, urls["status"] = bind_status(self.settings)
        except ListenError as exc:
            log.error("cannot listen on %s", exc)
            return EX_UNAVAILABLE
        self._figures.publish(self._metrics_dir)
        self._slots = slots
        self._publish()  # before the listener answers: no slot has a worker yet
        listener = StatusListener(self._health, status_socks, self._metrics_dir)
        try:
            listener.start()
        except StatusListenerError as exc:
            listener.stop()
            where = ", ".join(urls["status"])
            log.error("cannot serve the status listener on %s (status.listen): %s", where, exc)
            return EX_UNAVAILABLE
        try:
            return self._supervise(slots, urls)
        finally:
            listener.stop()

    def _supervise(self, slots: list[Slot], urls: dict[str, list[str]]) -> int:
        for slot in slots:
            self._spawn(slot)
        failed = self._await_ready(slots)
        if failed is not None:
            self._terminate(slots)
            return failed
        log.info("ready", extra={"fields": {**urls, "workers": len(slots)}})
        self.notify.ready(self._status())
        while not self._stopping:
            self._relay(slots)
            self._reap(slots)
            if self._reload_asked:
                self._reload_asked = False
                self._reload(slots)
            self.notify.ping(healthy=all(s.proc is not None for s in slots))
        self.notify.stopping()
        log.info(
            "stopping", extra={"fields": {"drain_seconds": self.settings.server.drain_seconds}}
        )
        self._publish()
        self._terminate(slots)
        return 0

    def _status(self) -> str:
        return f"{len(self._live())} workers serving; config {self.config.name}"

    def _live(self) -> list[subprocess.Popen[bytes]]:
        """The workers serving: ready, and during a reload the old ones (a worker still
        starting has no SIGUSR1 handler yet: the signal would kill it)."""
        return [proc for _, proc, _, ready in self._serving() if proc is not None and ready]

    def _reload(self, slots: list[Slot]) -> None:
        """SIGHUP: validate the file, start new workers with it, then let the old ones drain.

        A config that fails validation is logged with all its problems and the running one
        stays. Listener addresses and the worker count are bound at start: changing them needs
        a restart, and such a config is refused here rather than half applied.
        """
        new = self._load_for_reload()
        if new is None:
            self._reloaded(ok=False)
            return
        self.notify.reloading()
        try:
            asyncio.run(prepare_store(new))
        except (StoreError, OSError) as exc:
            log.error("reload refused: cannot prepare the new configuration: %s", exc)
            self.notify.ready(self._status())
            self._reloaded(ok=False)
            return
        old = [(slot.proc, slot.bus, slot.ready_fd) for slot in slots]
        self._previous = [(s.index, s.proc, s.bus, s.ready) for s in slots]
        try:
            for slot in slots:
                slot.bus = slot.ready_fd = None  # kept in `old` until the new workers are ready
                self._spawn(slot)
            if self._await_ready(slots) is not None:
                self._roll_back(slots, old)
                return
        finally:
            self._previous = None
        for proc, _, _ in old:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGUSR2)  # retire (Rule 6)
                self._draining.append(proc)
        self._await_stopped_accepting(old)
        for _, bus, ready_fd in old:
            _close(bus, ready_fd)
        self.settings = new
        log.info("configuration reloaded", extra={"fields": {"workers": len(slots)}})
        self._reloaded(ok=True)
        self.notify.ready(self._status())

    def _await_stopped_accepting(
        self, old: list[tuple[subprocess.Popen[bytes] | None, socket.socket | None, int | None]]
    ) -> None:
        """Until every old worker has closed its listeners (or exited), one of them may still
        accept a new connection and answer it with the old configuration: READY=1 waits.
        Bounded by the handshake timeout the old worker gives connections it has accepted."""
        waiting = {
            bus.fileno(): (proc, bus)
            for proc, bus, _ in old
            if proc is not None and bus is not None and proc.poll() is None
        }
        deadline = time.monotonic() + self.settings.server.handshake_timeout_seconds + 1.0
        while waiting and time.monotonic() < deadline:
            readable, _, _ = select.select(list(waiting), [], [], POLL_SECONDS)
            for fd in readable:
                proc, bus = waiting[fd]
                try:
                    frame = bus.recv(MAX_DATAGRAM)
                except OSError:
                    frame = STOPPED_ACCEPTING  # its end is gone: nothing accepts there
                if frame == STOPPED_ACCEPTING or not frame:
                    del waiting[fd]
            for fd, (proc, _) in list(waiting.items()):
                if proc.poll() is not None:
                    del waiting[fd]

    def _reloaded(self, ok: bool) -> None:
        self._figures.reloaded(ok)
        self._figures.publish(self._metrics_dir)

    def _roll_back(
        self,
        slots: list[Slot],
        old: list[tuple[subprocess.Popen[bytes] | None, socket.socket | None, int | None]],
    ) -> None:
        """New workers failed to start: stop them and keep the old ones serving."""
        log.error("reload refused: the new workers did not start; the running config stays")
        assert self._previous is not None  # noqa: S101 - set by _reload around the new workers
        for slot, (proc, bus, ready_fd), serving in zip(slots, old, self._previous, strict=True):
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
            _close(slot.bus, slot.ready_fd)
            slot.proc, slot.bus, slot.ready_fd, slot.ready = proc, bus, ready_fd, serving[3]
        self._reloaded(ok=False)
        self.notify.ready(self._status())

    def _load_for_reload(self) -> Settings | None:
        """The new config, or None after logging every reason it cannot be reloaded."""
        try:
            new = load_settings(self.config)
        except ConfigError as exc:
            problems = list(exc.problems)
        else:
            problems = reload_problems(self.settings, new)
            if not problems:
                return new
        for problem in problems:
            log.error("reload refused: %s", problem)
        return None

    def _spawn(self, slot: Slot) -> None:
        read_fd, write_fd = os.pipe()
        if slot.bus is not None:
            slot.bus.close()
        slot.bus, worker_bus = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        slot.bus.setblocking(False)
        fds = [s.fileno() for s in slot.sockets]
        cmd = [
            sys.executable,
            "-m",
            "edgeauth",
            "_worker",
            "-c",
            str(self.config),
            "--tls-fds",
            ",".join(str(s.fileno()) for s in slot.tls),
            "--plain-fds",
            ",".join(str(s.fileno()) for s in slot.plain),
            "--admin-fds",
            ",".join(str(s.fileno()) for s in slot.admin),
            "--stream-fds",
            ",".join(str(s.fileno()) for s in slot.streams),
            "--ready-fd",
            str(write_fd),
            "--bus-fd",
            str(worker_bus.fileno()),
        ]
        slot.proc = subprocess.Popen(  # noqa: S603
            cmd, pass_fds=[*fds, write_fd, worker_bus.fileno()], env=self._worker_env
        )
        os.close(write_fd)
        worker_bus.close()
        if slot.ready_fd is not None:
            os.close(slot.ready_fd)
        slot.ready_fd = read_fd
        slot.ready = False
        slot.started = time.monotonic()
        log.info("worker started", extra={"fields": {"slot": slot.index, "worker": slot.proc.pid}})

    def _await_ready(self, slots: list[Slot]) -> int | None:
        """Wait for every first worker to report ready; a worker's exit status if one died."""
        pending = {slot.ready_fd: slot for slot in slots if slot.ready_fd is not None}
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while pending and not self._stopping:
            for fd in self._wait(slots, list(pending)):
                slot = pending.pop(fd)
                if not self._read_ready(slot):
                    code = slot.proc.wait() if slot.proc else 1
                    log.error("worker failed to start", extra={"fields": {"status": code}})
                    return code or 1
            if time.monotonic() > deadline:
                log.error("workers did not become ready in time")
                return 1
        return None

    def _read_ready(self, slot: Slot) -> bool:
        """Read the ready byte of `slot`'s worker: False if it closed its pipe without it."""
        assert slot.ready_fd is not None  # noqa: S101 - only slots with a ready pipe are read
        slot.ready = os.read(slot.ready_fd, 1) == b"R"
        os.close(slot.ready_fd)
        slot.ready_fd = None
        return slot.ready

    def _relay(self, slots: list[Slot]) -> None:
        """One wait of the main loop; notes the readiness of workers restarted by _reap."""
        starting = {slot.ready_fd: slot for slot in slots if slot.ready_fd is not None}
        for fd in self._wait(slots, list(starting)):
            self._read_ready(starting[fd])  # a worker that died first is _reap's

    def _wait(self, slots: list[Slot], fds: list[int]) -> list[int]:
        """Wait up to POLL_SECONDS; meanwhile pass each worker's revocations to every other
        worker, answer the status listener's ping round (Rule 5). Returns the readable `fds`."""
        self._publish()
        ends = self._buses(slots)
        wake = self._health.wake_fd()
        try:
            readable, _, _ = select.select([*ends, wake, *fds], [], [], POLL_SECONDS)
        except InterruptedError:
            return []
        for fd in readable:
            if fd in ends:
                self._receive(ends, fd)
        if wake in readable:
            self._ping()
        return [fd for fd in readable if fd in fds]

    def _buses(self, slots: list[Slot]) -> dict[int, tuple[int, socket.socket]]:
        """Every bus the supervisor holds, by fd: (the pid of its worker, the socket)."""
        held = [(slot.proc, slot.bus) for slot in slots]
        held += [(proc, bus) for _, proc, bus, _ in self._previous or ()]
        return {
            bus.fileno(): (proc.pid, bus)
            for proc, bus in held
            if proc is not None and bus is not None
        }

    def _receive(self, ends: dict[int, tuple[int, socket.socket]], fd: int) -> None:
        """A worker's datagram: a pong for the status listener, or digests for the others."""
        pid, source = ends[fd]
        try:
            frame = source.recv(MAX_DATAGRAM)
        except OSError:
            return
        if is_ping(frame):
            self._health.pong(pid, frame)
            return
        if frame == STOPPED_ACCEPTING:
            return
        for _, bus in ends.values():
            if bus is not source:
                send_nowait(bus, frame)

    def _serving(self) -> list[Serving]:
        """Each slot's serving worker: during a reload, the old ones until the new are ready."""
        if self._previous is not None:
            return self._previous
        return [(s.index, s.proc, s.bus, s.ready) for s in self._slots]

    def _ping(self) -> None:
        number = self._health.round_asked()
        targets = {}
        for index, proc, bus, ready in self._serving():
            if proc is not None and bus is not None and ready:
                send_nowait(bus, ping_frame(number))
                targets[proc.pid] = index
        self._health.pinged(number, targets)

    def _publish(self) -> None:
        """Tell the status listener what serves (Rule 5)."""
        views = tuple(
            SlotView(
                index, proc.pid if proc is not None else None, ready, self._slots[index].started
            )
            for index, proc, _, ready in self._serving()
        )
        self._health.publish(views, self.settings, stopping=self._stopping)

    def _reap(self, slots: list[Slot]) -> None:
        for old in self._draining:
            if old.poll() is not None:
                process_dead(old.pid)
        self._draining = [old for old in self._draining if old.poll() is None]
        now = time.monotonic()
        for slot in slots:
            proc = slot.proc
            if proc is not None and proc.poll() is not None:
                log.error(
                    "worker died; restarting",
                    extra={
                        "fields": {
                            "slot": slot.index,
                            "worker": proc.pid,
                            "status": proc.returncode,
                        }
                    },
                )
                process_dead(proc.pid)
                young = now - slot.started < 1.0
                slot.failures = slot.failures + 1 if young else 0
                slot.not_before = now + min(10.0, 0.1 * 2**slot.failures) if young else now
                slot.proc, slot.ready = None, False
            if slot.proc is None and now >= slot.not_before:
                self._spawn(slot)
                self._figures.restarts += 1
                self._figures.publish(self._metrics_dir)

    def _terminate(self, slots: list[Slot]) -> None:
        """SIGTERM every worker, wait for the drain, kill what is left."""
        live = [s.proc for s in slots if s.proc is not None and s.proc.poll() is None]
        live += [proc for proc in self._draining if proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        for slot in slots:  # with the workers' copies closing too, new connections are refused
            for sock in slot.sockets:
                sock.close()
        deadline = time.monotonic() + self.settings.server.drain_seconds + KILL_GRACE_SECONDS
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker did not drain in time; killing", extra={"fields": {"worker": proc.pid}}
                )
                proc.kill()
                proc.wait()
        for slot in slots:
            if slot.ready_fd is not None:
                os.close(slot.ready_fd)
                slot.ready_fd = None
            if slot.bus is not None:
                slot.bus.close()
                slot.bus = None
