"""The status listener for load balancers (`[status] listen`, issue 15): live, ready, metrics.

One `edgeauth serve` with 2 workers is shared by the module's tests (each leaves it serving);
the listener off, a taken address and an unreachable PostgreSQL store start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomli_w

from edgeauth import tls
from edgeauth.config import load_settings
from edgeauth.config.checks import restart_needed
from tests.conftest import ServeProcess, write_config
from tests.store.conftest import PG_DSN, pg_connect

DEADLINE = 30.0


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    """One bounded HTTP request: (status, body), an error status included."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def until(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` until it returns something truthy, or fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample line `name{labels}` of a Prometheus text body."""
    line = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert line is not None, f"{name}{labels} not in /metrics"
    return float(line.group(1))


def ready_line(proc: ServeProcess) -> dict[str, Any]:
    return next(entry for entry in proc.log if entry.get("msg") == "ready")


def listening_ports(pid: int) -> set[int]:
    """The TCP ports on which process `pid` holds a listening socket (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if (target := os.readlink(fd)).startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Node:
    """The shared gateway: its process, its status URL, its config to rewrite."""

    def __init__(self, proc: ServeProcess, config: Path) -> None:
        self.proc = proc
        self.config = config
        self.status = ready_line(proc)["status"][0]
        self.admin = ready_line(proc)["admin"][0]
        self.token = (config.parent / "admin.token").read_text().strip()
        self.original = config.read_text()

    def admin_metrics(self) -> str:
        code, body = get(f"{self.admin}/metrics", {"Authorization": f"Bearer {self.token}"})
        assert code == 200, body
        return body.decode()

    def serving(self) -> dict[int, int]:
        """slot -> the pid of its current worker (the last started; a reload leaves the old
        ones draining beside them)."""
        started = [e for e in self.proc.log if e.get("msg") == "worker started"]
        return {int(e["slot"]): int(e["worker"]) for e in started}

    def reload(self, text: str) -> None:
        self.config.write_text(text)
        self.proc.proc.send_signal(signal.SIGHUP)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, dev_cert: tls.DevCertificate) -> Iterator[Node]:
    directory = tmp_path_factory.mktemp("status")
    config = write_config(directory, dev_cert, [], workers=2)
    proc = ServeProcess(config)
    try:
        yield Node(proc, config)
    finally:
        proc.stop(signal.SIGKILL)


def test_live_and_ready_answer_a_load_balancer_without_a_token(node: Node) -> None:
    assert get(f"{node.status}/status/live") == (200, b'{"status":"live"}')
    assert get(f"{node.status}/status/ready") == (200, b'{"status":"ready"}')
    assert get(f"{node.status}/status/live", method="HEAD")[0] == 200
    code, body = get(f"{node.status}/status/ready", method="POST")
    assert (code, orjson.loads(body)) == (405, {"message": "Method not allowed"})
    code, body = get(f"{node.status}/status")
    assert (code, orjson.loads(body)) == (404, {"message": "Not found"})
    # the supervisor holds the status socket; the workers do not
    port = int(node.status.rsplit(":", 1)[1])
    assert port in listening_ports(node.proc.proc.pid)
    assert all(port not in listening_ports(pid) for pid in node.serving().values())


def test_metrics_only_with_status_metrics_and_reloads_are_counted(node: Node) -> None:
    code, body = get(f"{node.status}/metrics")
    assert (code, orjson.loads(body)) == (404, {"message": "Not found"})
    before = node.admin_metrics()
    failures = sample(before, "edgeauth_config_reloads_total", '{result="failure"}')
    successes = sample(before, "edgeauth_config_reloads_total", '{result="success"}')
    loaded = sample(before, "edgeauth_config_last_reload_success_timestamp_seconds")
    assert loaded > 0  # set at start

    node.reload(node.original + "\n[nonsense\n")
    until(
        lambda: (
            sample(node.admin_metrics(), "edgeauth_config_reloads_total", '{result="failure"}')
            == failures + 1
        ),
        "the failed reload to be counted",
    )
    doc = tomllib.loads(node.original)
    doc["status"]["metrics"] = True
    node.reload(tomli_w.dumps(doc))
    text = until(
        lambda: (r := get(f"{node.status}/metrics"))[0] == 200 and r[1].decode(),
        "the status listener's /metrics after the reload",
    )
    assert sample(text, "edgeauth_config_reloads_total", '{result="success"}') == successes + 1
    assert sample(text, "edgeauth_config_reloads_total", '{result="failure"}') == failures + 1
    assert sample(text, "edgeauth_config_last_reload_success_timestamp_seconds") > loaded
    assert sample(text, "edgeauth_datastore_reachable") == 1
    assert re.search(r'^edgeauth_build_info\{version="[^"]+",python="[^"]+"\} 1$', text, re.M)
    # the same figures, whichever worker answers the admin API
    for _ in range(4):
        admin = node.admin_metrics()
        assert sample(admin, "edgeauth_config_reloads_total", '{result="success"}') == successes + 1


def test_a_killed_worker_makes_ready_503_until_restarted_and_is_counted(node: Node) -> None:
    restarts = sample(node.admin_metrics(), "edgeauth_worker_restarts_total")
    slot, victim = 1, node.serving()[1]
    os.kill(victim, signal.SIGKILL)

    def not_ready() -> dict[str, Any] | None:
        code, body = get(f"{node.status}/status/ready")
        return orjson.loads(body) if code == 503 else None

    answer = until(not_ready, "ready to answer 503")
    assert answer["status"] == "not ready"
    assert any(reason.startswith(f"slot {slot}: ") for reason in answer["reasons"]), answer
    until(lambda: get(f"{node.status}/status/ready")[0] == 200, "ready again")
    assert node.serving()[slot] != victim
    assert sample(node.admin_metrics(), "edgeauth_worker_restarts_total") == restarts + 1


def test_a_stopped_worker_makes_live_503_naming_it(node: Node) -> None:
    slot, victim = 0, node.serving()[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        code, body = get(f"{node.status}/status/live")
        assert code == 503
        assert orjson.loads(body) == {
            "status": "not live",
            "reasons": [f"slot {slot}: worker {victim} did not answer a ping in 1 s"],
        }
        assert get(f"{node.status}/status/ready")[0] == 503
    finally:
        os.kill(victim, signal.SIGCONT)
    until(lambda: get(f"{node.status}/status/live")[0] == 200, "live again")
    assert node.serving()[slot] == victim  # it was never restarted


def test_a_reload_cannot_move_the_status_listener(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(tmp_path, dev_cert, [], tables={"status": {"listen": "127.0.0.1:8100"}})
    running = load_settings(config)
    write_config(tmp_path, dev_cert, [], tables={"status": {"listen": ""}})
    assert restart_needed(running, load_settings(config)) == [
        "config.toml: status.listen: a reload cannot change it (running: 127.0.0.1:8100);"
        " restart instead"
    ]


def test_an_empty_status_listen_listens_nowhere(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(tmp_path, dev_cert, [], tables={"status": {"listen": ""}})
    proc = ServeProcess(config)
    try:
        line = ready_line(proc)
        assert line["status"] == []
        expected = {int(url.rsplit(":", 1)[1]) for url in line["listen"] + line["admin"]}
        assert listening_ports(proc.proc.pid) == expected
    finally:
        proc.stop()


def test_a_taken_status_address_fails_the_start_naming_it(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(
            tmp_path, dev_cert, [], tables={"status": {"listen": f"127.0.0.1:{port}"}}
        )
        done = subprocess.run(
            [sys.executable, "-m", "edgeauth", "serve", "-c", str(config)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 69, stderr
    assert f"cannot listen on 127.0.0.1:{port} (status.listen): Address already in use" in stderr


async def _database_sql(*statements: str) -> None:
    admin = await pg_connect()
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


async def _cut_off(name: str) -> None:
    """No new connection to database `name`, and those it has are ended."""
    await _database_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    admin = await pg_connect()
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
    finally:
        await admin.close()


def test_ready_says_when_the_store_does_not_answer(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    name = f"edgeauth_status_{secrets.token_hex(4)}"
    asyncio.run(_database_sql(f"CREATE DATABASE {name}"))
    try:
        dsn = PG_DSN.rsplit("/", 1)[0] + f"/{name}"
        config = write_config(
            tmp_path, dev_cert, [], tables={"store": {"backend": "postgres", "dsn": dsn}}
        )
        proc = ServeProcess(config)
        try:
            status = ready_line(proc)["status"][0]
            assert get(f"{status}/status/ready")[0] == 200
            asyncio.run(_cut_off(name))
            _, body = until(
                lambda: (r := get(f"{status}/status/ready"))[0] == 503 and r,
                "ready to answer 503",
            )
            assert orjson.loads(body) == {
                "status": "not ready",
                "reasons": ["store: the postgres store does not answer"],
            }
            assert get(f"{status}/status/live")[0] == 200  # the processes are fine
            asyncio.run(_database_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            until(lambda: get(f"{status}/status/ready")[0] == 200, "ready again")
        finally:
            proc.stop(signal.SIGKILL)
    finally:
        asyncio.run(_database_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
