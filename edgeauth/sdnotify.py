"""systemd's notify protocol (sd_notify(3)), without a dependency: one datagram per state.

Rule: silent and harmless when not run by systemd (no NOTIFY_SOCKET), and a failed send is
logged, never raised: the gateway serves whether or not systemd listens.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 2_000_000 if usec.isdigit() and int(usec) else 0.0
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> None:
        if not self._address:
            return
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def ping(self, healthy: bool) -> None:
        """WATCHDOG=1 at half of WATCHDOG_USEC, and only while the workers are healthy."""
        if not self.watchdog_seconds or not healthy:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_seconds:
            self._last_ping = now
            self.send("WATCHDOG=1")
