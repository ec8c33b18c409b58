"""One real gateway (`edgeauth serve`, TLS on 127.0.0.1) in front of one recording upstream,
for a whole test module: run an example through both and judge it (tests/fuzz/oracle.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from edgeauth import tls
from edgeauth.config import schema
from tests.conftest import ServeProcess, write_config
from tests.fuzz import answers, oracle
from tests.fuzz.client import Outcome, converse, parse
from tests.fuzz.model import Conversation, Example, Unit
from tests.fuzz.strategies import FORM_TOKEN_PLACEHOLDER, TOKEN_PLACEHOLDER
from tests.fuzz.upstream import Answer, RecordingUpstream

CONSUMER = "fuzzer"
CLIENT_ID = "fuzzclient"
CLIENT_SECRET = "fuzz-secret-1"
HOLD_BOUND = 1.5  # how long an upstream connection may go on holding part of a request
FLUSH_PATH = "/zz-flush/" + "f" * 8150  # eight of these fill the access log's 64 KiB batch


def _has(cls: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cls))


def optional_keys(cls: type, wanted: dict[str, Any]) -> dict[str, Any]:
    """The keys of `wanted` that the config schema knows (others are being added now)."""
    return {k: v for k, v in wanted.items() if _has(cls, k)}


class Harness:
    def __init__(
        self, directory: Path, dev_cert: tls.DevCertificate, client_ssl: ssl.SSLContext
    ) -> None:
        self.directory = directory
        self.ctx = client_ssl
        self.script: dict[str, tuple[str, bool]] = {}
        self.upstream = RecordingUpstream(self._answer_for)
        self.upstream.start()
        url = f"http://127.0.0.1:{self.upstream.port}"
        timeouts = {"connect_timeout_seconds": 1.0, "read_timeout_seconds": 1.5, "retries": 0}
        timeouts |= optional_keys(schema.ServiceSettings, {"pool_timeout_seconds": 1.0})
        self.case_insensitive = _has(schema.RouteSettings, "case_insensitive")
        protected_route: dict[str, Any] = {
            "name": "priv-route",
            "paths": ["/app/admin"],
            "strip_path": False,
        }
        if self.case_insensitive:
            protected_route["case_insensitive"] = True
        services = [
            {
                "name": "pub",
                "url": url,
                "routes": [{"name": "pub-route", "paths": ["/app"], "strip_path": False}],
                **timeouts,
            },
            {
                "name": "priv",
                "url": url,
                "routes": [protected_route],
                "oauth2": {
                    "enable_client_credentials": True,
                    "scopes": ["read"],
                    "accept_token_in_body": True,
                },
                **timeouts,
            },
        ]
        consumers = [
            {
                "username": CONSUMER,
                "oauth2": [
                    {
                        "name": "fuzz-app",
                        "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET,
                        "redirect_uris": ["https://fuzz.example/cb"],
                    }
                ],
            }
        ]
        server: dict[str, Any] = {
            "workers": 1,
            "handshake_timeout_seconds": 2.0,
            "header_timeout_seconds": 1.0,
            "keepalive_timeout_seconds": 3.0,
            "drain_seconds": 1.0,
        }
        server |= optional_keys(
            schema.ServerSettings, {"body_timeout_seconds": 1.0, "request_timeout_seconds": 4.0}
        )
        self.server_keys = server
        config = write_config(directory, dev_cert, services, consumers=consumers, **server)
        self.gateway = ServeProcess(config)
        self.port = self.gateway.port
        self.log = oracle.AccessLog(directory / "access.log")
        self.pids = sorted(self.gateway.worker_pids())
        self.token = self._get_token()
        assert len(self.token) == len(FORM_TOKEN_PLACEHOLDER)  # the framing relies on it
        self.rss_start = self.rss()
        self.examples = 0
        self.failures_seen = 0
        # FUZZ_SURVEY=path: record every distinct failure (smallest example of each) and go
        # on, instead of stopping at the first; written to `path` as JSON at the end.
        self.survey_path = os.environ.get("FUZZ_SURVEY")
        self.survey: dict[str, dict[str, Any]] = {}

    # -- setup --------------------------------------------------------------------------

    def _answer_for(self, method: str, marker: str | None) -> Answer:
        kind, early = self.script.get(marker or "", ("normal", False))
        return answers.answer(kind, method, marker, early=early)

    def _get_token(self) -> bytes:
        form = (
            f"grant_type=client_credentials&client_id={CLIENT_ID}"
            f"&client_secret={CLIENT_SECRET}&scope=read"
        )
        request = (
            "POST /app/admin/oauth2/token HTTP/1.1\r\nHost: fuzz.example\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n{form}"
        ).encode()
        unit = Unit("m0x", "POST", request, True, False)
        out = converse(self.port, self.ctx, Conversation((unit,)), b"", b"")
        parsed = parse(out.data, (unit,), out.eof)
        assert parsed.responses, out.data
        resp = parsed.responses[0]
        assert resp.status == 200, (resp.status, resp.body)
        token = orjson.loads(resp.body)["access_token"]
        assert isinstance(token, str)
        return token.encode()

    def close(self) -> None:
        grown = (self.rss() - self.rss_start) / 2**20 if self.gateway.proc.poll() is None else 0
        print(  # past pytest's capture: the run's figures
            f"\nfuzz: {self.examples} examples, {self.failures_seen} failing, "
            f"worker RSS {grown:+.1f} MiB",
            file=sys.__stderr__,
        )
        if self.survey_path:
            Path(self.survey_path).write_bytes(
                orjson.dumps(self.survey, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            )
        self.gateway.stop(signal.SIGKILL)
        self.upstream.stop()

    # -- one example --------------------------------------------------------------------

    def run(self, example: Example) -> list[str]:
        self.examples += 1
        self.script = {u.marker: (u.answer, u.early) for u in example.units()}
        outcomes: list[Outcome] = []
        for conv in example.conversations:
            sent = self._with_form_token(conv)
            outcomes.append(converse(self.port, self.ctx, sent, self.token, TOKEN_PLACEHOLDER))
        self._flush_log()
        held = self._held()
        conns = self.upstream.take(close=True)
        failures = oracle.judge(
            example,
            outcomes,
            conns,
            held,
            self.log,
            consumer=CONSUMER,
            case_insensitive=self.case_insensitive,
        )
        failures += self.check_workers()
        self.script = {}
        if failures:
            self.failures_seen += 1
            if self.survey_path:
                self._record(example, failures)
                return []
        return failures

    def _with_form_token(self, conv: Conversation) -> Conversation:
        """The token in place of its form-body placeholder (same length: framing intact)."""
        units = tuple(
            dataclasses.replace(u, raw=u.raw.replace(FORM_TOKEN_PLACEHOLDER, self.token))
            for u in conv.units
        )
        return dataclasses.replace(conv, units=units)

    def _record(self, example: Example, failures: list[str]) -> None:
        size = sum(len(u.raw) for u in example.units())
        for line in failures:
            key = signature(line)
            known = self.survey.get(key)
            if known is None or size < known["size"]:
                self.survey[key] = {"size": size, "failure": line, "example": example.describe()}

    def _flush_log(self) -> None:
        """Eight long-path requests fill the access log's batch, so it is written now rather
        than after its timer (the oracle still polls with a bound)."""
        line = f"GET {FLUSH_PATH} HTTP/1.1\r\nHost: fuzz.example\r\n\r\n".encode()
        units = tuple(Unit(f"f{i}", "GET", line, False, False) for i in range(8))
        converse(self.port, self.ctx, Conversation(units, pipelined=True), b"", b"")

    def _held(self) -> list[int]:
        """Upstream connections still open with part of a request after HOLD_BOUND."""
        deadline = time.monotonic() + HOLD_BOUND
        while True:
            held = self.upstream.open_with_pending()
            if not held or time.monotonic() > deadline:
                return held
            time.sleep(0.02)

    # -- (d) ----------------------------------------------------------------------------

    def check_workers(self) -> list[str]:
        if self.gateway.proc.poll() is not None:
            return [f"(d) the gateway exited with {self.gateway.proc.returncode}"]
        pids = sorted(self.gateway.worker_pids())
        if pids != self.pids:
            old, self.pids = self.pids, pids
            return [f"(d) worker pids changed from {old} to {pids}: a worker died"]
        return []

    def rss(self) -> int:
        """The workers' resident set, in bytes."""
        total = 0
        for pid in self.pids:
            status = Path(f"/proc/{pid}/status")
            if not status.exists():
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total


def signature(failure: str) -> str:
    """A failure line without its particulars: what kind of failure it is."""
    text = re.sub(r"b?'[^']*'|b?\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)", "_", failure)
    return re.sub(r"[0-9a-f]{6,}|\d+", "N", text)[:160]
