"""The admin audit log: one JSON line per admin write and per refused admin authentication.

Rule 1: a line holds only the fields its caller hands over (admin/trail.py: who, what, how it
ended), never a request body, a query string, a secret or a token value.
Rule 2: `log.level` never filters it: lines skip the logging hierarchy and go straight to
their own handler, in the process log's JSON style (`logger` is "edgeauth.audit").
Rule 3: `log.audit_log` is "stderr" (beside the process log), "off", or a file opened with
O_APPEND and mode 0640, reopened on SIGUSR1 (logrotate) like the access log.
Rule 4: a line is written synchronously, in one small write: admin writes are rare, so the
event loop never waits long, and a line is on disk before the next admin request is read.
Rule 5: every line stays well under PIPE_BUF (4096 bytes: admin/trail.py bounds each field),
so the lines of several workers sharing one stderr pipe never interleave: the kernel writes
a pipe write of at most PIPE_BUF bytes whole, and stderr writes each line in one flush.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from edgeauth.logs import JsonFormatter

log = logging.getLogger(__name__)

LOGGER = "edgeauth.audit"
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
MODE = 0o640


class _AppendFile(logging.Handler):
    """One line, one write(2) on a file opened O_APPEND: workers appending to the same file
    never interleave within a line."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._fd = os.open(path, FLAGS, MODE)

    def emit(self, record: logging.LogRecord) -> None:
        data = (self.format(record) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            log.warning("cannot write the audit log %s: %s", self.path, exc)

    def reopen(self) -> None:
        """After logrotate moved the file: write to a fresh file by that name."""
        try:
            fd = os.open(self.path, FLAGS, MODE)
        except OSError as exc:
            log.warning("cannot reopen the audit log %s: %s", self.path, exc)
            return
        old, self._fd = self._fd, fd
        os.close(old)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class AuditLog:
    """The audit destination of one process; `record()` does nothing until `open()`."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._handler: logging.Handler | None = None

    def open(self) -> None:
        if self.target == "off" or self._handler is not None:
            return
        handler = (
            logging.StreamHandler(sys.stderr)
            if self.target == "stderr"
            else _AppendFile(self.target)
        )
        handler.setFormatter(JsonFormatter())
        self._handler = handler

    def reopen(self) -> None:
        if isinstance(self._handler, _AppendFile):
            self._handler.reopen()

    def record(self, msg: str, fields: dict[str, Any]) -> None:
        """Write one line now, whatever the process log's level (Rule 2)."""
        if self._handler is None:
            return
        attrs = {"name": LOGGER, "levelno": logging.INFO, "levelname": "INFO", "msg": msg}
        self._handler.handle(logging.makeLogRecord({**attrs, "fields": fields}))

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            self._handler = None
