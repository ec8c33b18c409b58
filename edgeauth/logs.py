"""Logging: JSON lines for the process log, and the batched access log (design §9).

Rule 1: one JSON object per line, formatted with orjson.
Rule 2: the access log never costs the hot path a syscall: lines are buffered and written in
batches by one background thread, so a slow disk or pipe never blocks the event loop. A
request only copies its fields into the batch; the batch is formatted when it is flushed, in
one pass with one orjson call and each `ts` formatted once per millisecond, which costs the
worker a fraction of formatting a line per request.
Rule 3: tokens, secrets and query strings never reach a log line; the proxy logs the path only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
FLUSH_BYTES = 64 * 1024
# What an entry counts towards FLUSH_BYTES besides its path: about the least a line takes
# without it (310 to 360 bytes), so a batch holds at most FLUSH_BYTES // LINE_BYTES entries,
# about as many as FLUSH_BYTES of formatted lines held when each was counted by its length.
LINE_BYTES = 320
# Between two entries of a batch dumped as one JSON array. No string can hold it: orjson
# writes a `"` inside a string as `\"`, so `{"` only ever opens an object, and only an entry
# starts with "level".
_BETWEEN = b'},{"level":'
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class Entry(Protocol):
    """What the access log takes: a finished exchange, or a closed stream connection."""

    logged_ns: int  # when it was recorded, set by AccessLog.record
    path: str  # a request's path ("" for a stream): counted towards FLUSH_BYTES

    def entry(self, worker: int) -> dict[str, Any]:
        """The line's fields, "level" first (the batch is split on it)."""
        ...


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _second(second: int) -> str:
    """`second` since the epoch as _now_iso() writes it, up to the dot before the milliseconds
    (a datetime and its isoformat cost as much as formatting a whole entry: once a second)."""
    stamp = _EPOCH + dt.timedelta(seconds=second)
    return stamp.isoformat(timespec="seconds").replace("+00:00", ".")


def _iso(ms: int) -> str:
    """`ms` since the epoch as _now_iso() writes that millisecond."""
    second, milli = divmod(ms, 1000)
    return f"{_second(second)}{milli:03d}Z"


def _lines(batch: list[Entry], worker: int) -> bytes:
    """The batch as JSON lines, each entry's `ts` (when it was logged) added last."""
    entries: list[dict[str, Any]] = []
    last_ms, stamp = -1, ""
    last_second, prefix = -1, ""
    for ex in batch:
        ms = ex.logged_ns // 1_000_000
        if ms != last_ms:
            second, milli = divmod(ms, 1000)
            if second != last_second:
                last_second, prefix = second, _second(second)
            last_ms, stamp = ms, f"{prefix}{milli:03d}Z"
        fields = ex.entry(worker)
        fields["ts"] = stamp
        entries.append(fields)
    try:
        array = orjson.dumps(entries)
    except orjson.JSONEncodeError:
        return _one_by_one(entries)
    return array[1:-1].replace(_BETWEEN, b'}\n{"level":') + b"\n"


def _one_by_one(entries: list[dict[str, Any]]) -> bytes:
    """The lines orjson can write (it refuses a lone surrogate): a bad entry loses itself only."""
    lines = []
    for fields in entries:
        try:
            lines.append(orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE))
        except orjson.JSONEncodeError:
            log.error(
                "access-log entry not written (%s)",
                fields.get("request_id") or f"stream {fields.get('stream')}",
            )
    return b"".join(lines)


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
        self._batch: list[Entry] = []
        self._worker = 0  # the writing process, set by open()
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
        self._worker = os.getpid()
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

    def record(self, ex: Entry) -> None:
        """Queue the access-log entry of a finished exchange or stream connection, stamped now
        (exchange.py Rule 3)."""
        if not self.enabled:
            return
        ex.logged_ns = time.time_ns()
        self._batch.append(ex)
        self._size += LINE_BYTES + len(ex.path)
        if self._size >= FLUSH_BYTES:
            self.flush()
        elif self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Format the batch and hand its lines to the writer thread."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._batch or self._executor is None:
            return
        data = _lines(self._batch, self._worker)
        self._batch.clear()
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
