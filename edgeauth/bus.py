"""The revocation bus between the workers of one host: a push, ahead of the revocation log.

Each worker holds one end of a datagram socketpair whose other end the supervisor holds; a
worker that revokes sends the dead digests (32 bytes each, at most MAX_DIGESTS a datagram),
and the supervisor relays them to every other worker, which evicts at once (≈1 ms).
Rule: the bus is an accelerator, never the guarantee: a datagram that cannot be sent without
blocking is dropped, and the revocation log that every worker follows catches it.
Rule: a datagram of PING_BYTES (never a multiple of DIGEST_BYTES) is the supervisor's liveness
ping; the worker's event loop echoes it back unchanged, so an answer proves that loop runs.
The other way a worker reaches its supervisor, a SIGHUP asking for a reload, needs its pid:
the supervisor puts it in each worker's environment (supervisor_pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

DIGEST_BYTES = 32
MAX_DIGESTS = 1024  # 32 KiB a datagram
MAX_DATAGRAM = DIGEST_BYTES * MAX_DIGESTS
PING_BYTES = 1  # the ping carries a one-byte round number, echoed as the pong
# A stopping worker's last word: it accepts no more connections (neither 1 byte nor 32k).
STOPPED_ACCEPTING = b"stopped"


def is_ping(frame: bytes) -> bool:
    return len(frame) == PING_BYTES


def frames(digests: Sequence[bytes]) -> list[bytes]:
    """Digests packed into datagrams of at most MAX_DIGESTS each."""
    return [b"".join(digests[i : i + MAX_DIGESTS]) for i in range(0, len(digests), MAX_DIGESTS)]


def digests_of(frame: bytes) -> list[bytes]:
    return [frame[i : i + DIGEST_BYTES] for i in range(0, len(frame), DIGEST_BYTES)]


def send_nowait(sock: socket.socket, frame: bytes) -> bool:
    """Send without blocking; False (dropped) when the peer's queue is full or gone."""
    try:
        sock.send(frame)
    except (BlockingIOError, ConnectionError, OSError):
        return False
    return True


# Set in each worker's environment to the supervisor's pid: how a worker finds whom to ask for
# a reload, and knows it has a supervisor at all (an in-process Gateway has none).
SUPERVISOR_ENV = "EDGEAUTH_SUPERVISOR_PID"


def supervisor_pid() -> int | None:
    """In a worker: the pid of the supervisor that started it, which reloads on SIGHUP; None in
    a process no supervisor started (an in-process Gateway), or once it is gone."""
    pid = os.environ.get(SUPERVISOR_ENV, "")
    return int(pid) if pid.isdigit() and int(pid) == os.getppid() else None


class WorkerBus:
    """A worker's end of the bus."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        sock.setblocking(False)

    def stopped_accepting(self) -> None:
        """Tell the supervisor this worker's listeners are closed: during a reload it waits
        for that before it reports the new configuration live."""
        send_nowait(self._sock, STOPPED_ACCEPTING)

    def publish(self, digests: Sequence[bytes]) -> None:
        for frame in frames(digests):
            if not send_nowait(self._sock, frame):
                log.debug("revocation bus full: the log will carry %d digests", len(frame) // 32)

    def attach(self, on_digests: Callable[[Sequence[bytes]], None]) -> None:
        """Evict what other workers revoke, as soon as it arrives."""

        def readable() -> None:
            while True:
                try:
                    frame = self._sock.recv(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    asyncio.get_running_loop().remove_reader(self._sock.fileno())
                    return
                if is_ping(frame):
                    send_nowait(self._sock, frame)
                elif frame:
                    on_digests(digests_of(frame))

        asyncio.get_running_loop().add_reader(self._sock.fileno(), readable)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
