"""Logging: JSON lines for the process log, and the batched access log (design §9).

Rule 1: one JSON object per line, formatted with orjson.
Rule 2: the access log never costs the hot path a syscall: lines are buffered and written in
batches by one background thread, so a slow disk or pipe never blocks the event loop.
Rule 3: tokens, secrets and query strings never reach a log line; the proxy logs the path only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

FLUSH_SECONDS = 0.2
FLUSH_BYTES = 64 * 1024


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Process log records as JSON lines, with extra fields passed via `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _now_iso(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup_logging(level: str) -> None:
    """Route the process log to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True


class AccessLog:
    """Buffered access log writer: `record()` is cheap, the write happens off the loop."""

    def __init__(self, target: str) -> None:
        self.enabled = target != "off"
        self._target = target
        self._fd = -1
        self._buffer: list[bytes] = []
        self._size = 0
        self._handle: asyncio.TimerHandle | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        if not self.enabled:
            return
        if self._target == "stdout":
            self._fd = sys.stdout.fileno()
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._fd = os.open(self._target, flags, 0o640)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")

    def reopen(self) -> None:
        """After logrotate moved the file: flush, then write to a fresh file by that name."""
        if not self.enabled or self._target == "stdout" or self._executor is None:
            return
        self.flush()
        self._executor.submit(self._swap)

    def _swap(self) -> None:
        with self._lock:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            fd = os.open(self._target, flags, 0o640)
            old, self._fd = self._fd, fd
            os.close(old)

    def record(self, entry: dict[str, Any]) -> None:
        """Queue one access-log entry; `ts` and `level` are added here."""
        if not self.enabled:
            return
        entry["ts"] = _now_iso()
        line = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        self._buffer.append(line)
        self._size += len(line)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the buffered lines to the writer thread."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._buffer or self._executor is None:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self._executor.submit(self._write, data)

    def _write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._fd, view)
                except OSError:
                    return
                view = view[written:]

    def close(self) -> None:
        """Flush what is buffered and wait for the writer thread."""
        self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._fd > 2:
            os.close(self._fd)
        self._fd = -1
