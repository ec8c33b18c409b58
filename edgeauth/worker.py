"""One worker process: a uvloop event loop running the Gateway on inherited sockets.

Rule 1: the worker reports ready (one byte on its ready pipe) only once it is accepting.
Rule 2: SIGTERM or SIGINT drains in-flight requests up to `drain_seconds` and exits 0.
Rule 3: a worker whose supervisor is gone stops by itself rather than serve unsupervised.
Rule 4: SIGUSR2 retires the worker after a reload: it stops accepting and drains HTTP as for
SIGTERM, but relays its open stream connections until they end; a SIGTERM (or the supervisor
going) meanwhile gives them `drain_seconds` more, then closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Sequence

import uvloop

from edgeauth.config import Settings
from edgeauth.logs import setup_logging
from edgeauth.server import Gateway

log = logging.getLogger(__name__)

PARENT_CHECK_SECONDS = 1.0


def run_worker(
    settings: Settings,
    tls_fds: Sequence[int],
    plain_fds: Sequence[int],
    admin_fds: Sequence[int],
    ready_fd: int | None,
    bus_fd: int | None = None,
    *,
    stream_fds: Sequence[int] = (),
) -> int:
    """Serve until told to stop; returns the process exit status."""
    setup_logging(settings.log.level)
    groups = (tls_fds, plain_fds, admin_fds, stream_fds)
    socks = [[socket.socket(fileno=fd) for fd in fds] for fds in groups]
    bus = None if bus_fd is None else socket.socket(fileno=bus_fd)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(Gateway(settings, bus=bus), socks, ready_fd))
    return 0


def _reopen_logs(gateway: Gateway) -> None:
    gateway.access_log.reopen()
    gateway.audit_log.reopen()


async def _serve(gateway: Gateway, socks: list[list[socket.socket]], ready_fd: int | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    retire = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR2, retire.set)
    loop.add_signal_handler(signal.SIGUSR1, _reopen_logs, gateway)  # logrotate
    tls_socks, plain_socks, admin_socks, stream_socks = socks
    await gateway.start(tls_socks, plain_socks, admin_socks, stream_socks)
    gc.collect()
    gc.freeze()  # start-up objects never need scanning again: shorter GC pauses
    if ready_fd is not None:
        os.write(ready_fd, b"R")
        os.close(ready_fd)
    log.debug("worker serving")
    watch = loop.create_task(_watch_parent(stop))
    either = [loop.create_task(stop.wait()), loop.create_task(retire.wait())]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    for task in either:
        task.cancel()
    retiring = retire.is_set() and not stop.is_set()
    drain = gateway.settings.server.drain_seconds
    log.info("draining", extra={"fields": {"drain_seconds": drain, "retiring": retiring}})
    await gateway.stop(drain, streams_until=stop if retiring else None)
    watch.cancel()


async def _watch_parent(stop: asyncio.Event) -> None:
    """Rule 3: a stop when the supervisor is gone (the worker was re-parented)."""
    parent = os.getppid()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            log.warning("supervisor is gone; stopping")
            stop.set()
