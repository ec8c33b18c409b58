"""The status listener for load balancers (`[status] listen`, issue 15): live, ready, metrics.

One `edgeauth serve` with 2 workers is shared by the module's tests (each leaves it serving);
the listener off, a taken address, a start and stop watched from outside and an unreachable
PostgreSQL store start their own; a listener that cannot serve, and /metrics with metrics
disabled, run in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
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
from edgeauth.bootstrap import prepare_store
from edgeauth.config import Address, load_settings
from edgeauth.config.checks import restart_needed
from edgeauth.status import (
    MAX_CONNECTIONS,
    STORE_CACHE_SECONDS,
    Health,
    StatusListener,
    StatusListenerError,
)
from edgeauth.supervisor import bind
from tests.conftest import GatewayFactory, ServeProcess, service, write_config
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


def _store_lines(proc: ServeProcess) -> list[dict[str, Any]]:
    return [e for e in proc.log if e.get("logger") == "edgeauth.status" and "problem" in e]


def test_ready_says_when_the_store_does_not_answer_and_logs_why_once(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    name = f"edgeauth_status_{secrets.token_hex(4)}"
    asyncio.run(_database_sql(f"CREATE DATABASE {name}"))
    not_ready = {"status": "not ready", "reasons": ["store: the postgres store does not answer"]}
    try:
        dsn = PG_DSN.rsplit("/", 1)[0] + f"/{name}"
        config = write_config(
            tmp_path, dev_cert, [], tables={"store": {"backend": "postgres", "dsn": dsn}}
        )
        proc = ServeProcess(config)
        try:
            status = ready_line(proc)["status"][0]
            # cut off before the listener ever opened its store: opening it fails, and the
            # driver's text (database, host, user) stays out of the answer
            asyncio.run(_cut_off(name))
            for _ in range(2):  # two store checks, one past the cached answer
                code, body = get(f"{status}/status/ready")
                assert (code, orjson.loads(body)) == (503, not_ready)
                time.sleep(STORE_CACHE_SECONDS)
            assert get(f"{status}/status/live")[0] == 200  # the processes are fine
            asyncio.run(_database_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            until(lambda: get(f"{status}/status/ready")[0] == 200, "ready again")
            lines = until(lambda: len(r := _store_lines(proc)) >= 2 and r, "the log lines")
            assert [line["msg"] for line in lines] == [
                "the status listener cannot reach the store",
                "the status listener reaches the store again",
            ]
            assert name in lines[0]["problem"], lines  # the detail is in the log
            # an open store whose queries fail answers the same
            asyncio.run(_cut_off(name))
            _, body = until(
                lambda: (r := get(f"{status}/status/ready"))[0] == 503 and r,
                "ready to answer 503",
            )
            assert orjson.loads(body) == not_ready
            asyncio.run(_database_sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            until(lambda: get(f"{status}/status/ready")[0] == 200, "ready again")
        finally:
            proc.stop(signal.SIGKILL)
    finally:
        asyncio.run(_database_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def _read_all(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (bounded by DEADLINE)."""
    sock.settimeout(DEADLINE)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_connections_past_the_cap_are_turned_away_and_silent_ones_closed(node: Node) -> None:
    address = node.status.removeprefix("http://").rsplit(":", 1)
    where = (address[0], int(address[1]))
    held = [socket.create_connection(where) for _ in range(MAX_CONNECTIONS)]
    try:
        with socket.create_connection(where) as extra:
            answer = _read_all(extra)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), answer
        assert orjson.loads(body) == {"message": "Too many connections to the status listener"}
        # none of the held connections sends a request: each is closed unanswered
        assert [_read_all(sock) for sock in held] == [b""] * MAX_CONNECTIONS
    finally:
        for sock in held:
            sock.close()
    assert get(f"{node.status}/status/live")[0] == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(url: str) -> tuple[int, dict[str, Any]] | None:
    """(status, body) of GET `url`; None while nothing answers there."""
    try:
        code, body = get(url)
    except (urllib.error.URLError, ConnectionError):
        return None
    return code, orjson.loads(body)


def _log(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            entries.append(orjson.loads(line))
    return [entry for entry in entries if isinstance(entry, dict)]


def _start_answers(ready: str, proc: subprocess.Popen[bytes], stderr: Path) -> set[str]:
    """Probe `ready` from before the start until it answers 200, which must come after the
    supervisor logged "ready"; the reasons of the 503s before it."""
    reasons: set[str] = set()
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert proc.poll() is None, stderr.read_text()
        answer = _probe(ready)
        if answer is None:
            continue
        code, body = answer
        if code == 200:
            logged = [entry.get("msg") for entry in _log(stderr)]
            assert "ready" in logged, f"200 before the ready line:\n{stderr.read_text()}"
            return reasons
        assert code == 503, body
        reasons.update(body["reasons"])
    raise AssertionError(f"ready never answered 200:\n{stderr.read_text()}")


def test_ready_is_503_until_the_ready_line_and_again_while_stopping(
    tmp_path: Path, dev_cert: tls.DevCertificate, client_ssl: ssl.SSLContext
) -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    port = _free_port()
    config = write_config(
        tmp_path,
        dev_cert,
        [service("slow", f"http://127.0.0.1:{upstream.getsockname()[1]}", ["/slow"])],
        workers=2,
        drain_seconds=30,
        tables={"status": {"listen": f"127.0.0.1:{port}"}},
    )
    ready = f"http://127.0.0.1:{port}/status/ready"
    assert _probe(ready) is None
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeauth", "serve", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        reasons = _start_answers(ready, proc, stderr)
        assert reasons, "no probe came before the workers were ready"
        assert all(
            re.fullmatch(r"slot [01]: (no worker \(starting\)|worker \d+ is starting)", r)
            for r in reasons
        ), reasons

        # a request held in flight by its upstream keeps the gateway draining after SIGTERM
        listen = next(e for e in _log(stderr) if e.get("msg") == "ready")["listen"][0]
        client = client_ssl.wrap_socket(
            socket.create_connection(("127.0.0.1", int(listen.rsplit(":", 1)[1]))),
            server_hostname="localhost",
        )
        client.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        upstream.settimeout(DEADLINE)
        held, _ = upstream.accept()
        proc.send_signal(signal.SIGTERM)
        _, body = until(
            lambda: (a := _probe(ready)) is not None and a[0] == 503 and a,
            "ready to answer 503 while the workers drain",
        )
        assert "the gateway is stopping: its workers drain" in body["reasons"], body
        held.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        held.close()
        with client:
            assert _read_all(client).startswith(b"HTTP/1.1 200 "), "the drain cut the request"
        assert proc.wait(timeout=60) == 0, stderr.read_text()
    finally:
        upstream.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_listener_that_cannot_serve_fails_its_start(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    settings = load_settings(write_config(tmp_path, dev_cert, []))
    health = Health(settings, 30.0)
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("127.0.0.1", 0))
    listener = StatusListener(health, [datagram], str(tmp_path))
    try:
        with pytest.raises(StatusListenerError) as info:
            listener.start()
        assert str(info.value)
    finally:
        listener.stop()
        health.close()
    assert datagram.fileno() == -1  # stop() closed it


async def test_metrics_disabled_is_404_on_the_admin_api_and_the_status_listener(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    running = await gateway([], tables={"metrics": {"enabled": False}, "status": {"metrics": True}})
    code, body = await asyncio.to_thread(get, f"{running.admin_url}/metrics", running.admin_headers)
    assert (code, orjson.loads(body)) == (404, {"message": "Not found"})
    health = Health(running.settings, 30.0)
    sock = bind(Address("127.0.0.1", 0))
    listener = StatusListener(health, [sock], str(tmp_path))
    listener.start()
    try:
        code, body = await asyncio.to_thread(
            get, f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
        )
    finally:
        listener.stop()
        health.close()
    assert (code, orjson.loads(body)) == (404, {"message": "Not found"})


def test_ready_is_503_while_no_worker_has_been_published(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    """The listener as the supervisor starts it: every ping round answered (there is no
    worker to ping yet) and the store open, but no slot published: not ready."""
    settings = load_settings(write_config(tmp_path, dev_cert, [], workers=2))
    asyncio.run(prepare_store(settings))
    health = Health(settings, 30.0)
    sock = bind(Address("127.0.0.1", 0))
    listener = StatusListener(health, [sock], str(tmp_path))
    answering = threading.Event()

    def answer_pings() -> None:  # what the supervisor's loop does with no worker serving
        while not answering.is_set():
            if select.select([health.wake_fd()], [], [], 0.05)[0]:
                health.pinged(health.round_asked(), {})

    pinger = threading.Thread(target=answer_pings)
    pinger.start()
    listener.start()
    try:
        status = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert get(f"{status}/status/live") == (200, b'{"status":"live"}')
        code, body = get(f"{status}/status/ready")
        assert (code, orjson.loads(body)) == (
            503,
            {"status": "not ready", "reasons": ["starting: 0 of 2 workers ready"]},
        )
    finally:
        listener.stop()
        answering.set()
        pinger.join()
        health.close()
