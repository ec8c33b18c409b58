"""One worker process: a uvloop event loop running the Gateway on inherited sockets.

Rule 1: the worker reports ready (one byte on its ready pipe) only once it is accepting.
Rule 2: SIGTERM or SIGINT drains in-flight requests up to `drain_seconds` and exits 0.
Rule 3: a worker whose supervisor is gone stops by itself rather than serve unsupervised.
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
) -> int:
    """Serve until told to stop; returns the process exit status."""
    setup_logging(settings.log.level)
    socks = [[socket.socket(fileno=fd) for fd in fds] for fds in (tls_fds, plain_fds, admin_fds)]
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
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _reopen_logs, gateway)  # logrotate
    await gateway.start(*socks)
    gc.collect()
    gc.freeze()  # start-up objects never need scanning again: shorter GC pauses
    if ready_fd is not None:
        os.write(ready_fd, b"R")
        os.close(ready_fd)
    log.debug("worker serving")
    parent = os.getppid()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            log.warning("supervisor is gone; stopping")
            break
    log.info("draining", extra={"fields": {"drain_seconds": gateway.settings.server.drain_seconds}})
    await gateway.stop(gateway.settings.server.drain_seconds)
