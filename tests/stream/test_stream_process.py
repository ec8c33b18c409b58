"""Stream routes in the real process tree (`edgeauth serve`): volume with flat memory, a slow
reader, and reloads that keep established connections.

Upstreams and clients are blocking sockets in threads of the test; the worker's memory is read
from /proc (VmRSS).
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import ssl
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomli_w

from edgeauth import tls
from tests.conftest import ServeProcess, write_config

GiB = 1 << 30
CHUNK = 4 << 20


def stream_config(
    directory: Path, dev_cert: tls.DevCertificate, streams: list[dict[str, Any]], **server: Any
) -> Path:
    path = write_config(directory, dev_cert, [], workers=1, **server)
    doc = tomllib.loads(path.read_text())
    path.write_text(tomli_w.dumps({**doc, "streams": streams}))
    return path


def stream_port(gw: ServeProcess, scheme: str = "tcp") -> int:
    """The port of the gateway's one stream listener, which its ready line shows with what a
    client speaks there: tcp:// for a `tls = false` stream, tls:// otherwise."""
    ready = next(e for e in gw.log if e.get("msg") == "ready")
    (url,) = ready["streams"]
    assert url.startswith(f"{scheme}://127.0.0.1:"), url
    return int(url.rsplit(":", 1)[1])


def rss(pid: int) -> int:
    """The resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Server:
    """A TCP upstream on a thread per connection, each served by `handle(conn)`."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._handle = handle
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._handle(conn)

    def close(self) -> None:
        self.sock.close()


def echo(conn: socket.socket) -> None:
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    while n := conn.recv_into(buffer):
        conn.sendall(view[:n])
    conn.shutdown(socket.SHUT_WR)


def tagged(tag: bytes) -> Callable[[socket.socket], None]:
    """An echo that first says which upstream it is."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(tag)
        echo(conn)

    return handle


@pytest.fixture
def servers() -> Iterator[Callable[[Callable[[socket.socket], None]], Server]]:
    started: list[Server] = []

    def start(handle: Callable[[socket.socket], None]) -> Server:
        started.append(Server(handle))
        return started[-1]

    yield start
    for server in started:
        server.close()


class Sampler:
    """The worker's largest VmRSS while it runs, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_a_gib_each_way_leaves_the_workers_memory_flat(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Any, servers: Any
) -> None:
    backend = servers(echo)
    config = stream_config(
        tmp_path,
        dev_cert,
        [{"name": "bulk", "listen": "127.0.0.1:0", "tls": False, "upstream": backend.url}],
    )
    gw = serve(config)
    (worker,) = gw.worker_pids()
    client = socket.create_connection(("127.0.0.1", stream_port(gw)))
    block = bytes(CHUNK)
    client.sendall(block)  # a first round trip grows the allocator's pools: measured after it
    received = 0
    buffer = bytearray(CHUNK)
    while received < CHUNK:
        received += client.recv_into(buffer)
    baseline = rss(worker)
    sampler = Sampler(worker)

    def send() -> None:
        for _ in range(GiB // CHUNK - 1):
            client.sendall(block)
        client.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    while n := client.recv_into(buffer):
        received += n
    sender.join()
    peak = sampler.stop()
    client.close()
    assert received == GiB
    assert peak - baseline < 16 << 20, f"worker RSS grew by {(peak - baseline) >> 20} MiB"
    (line,) = stream_lines(tmp_path, 1)
    assert (line["bytes_in"], line["bytes_out"]) == (GiB, GiB)


def test_a_slow_reader_holds_back_the_upstream_instead_of_growing_memory(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Any, servers: Any
) -> None:
    """A TLS client that reads nothing: the worker stops reading the upstream once its
    buffers are full, so what the upstream manages to send stays bounded."""
    sent = [0]

    def firehose(conn: socket.socket) -> None:
        block = bytes(1 << 20)
        while sent[0] < 512 << 20:
            conn.sendall(block)
            sent[0] += len(block)

    backend = servers(firehose)
    config = stream_config(
        tmp_path, dev_cert, [{"name": "slow", "listen": "127.0.0.1:0", "upstream": backend.url}]
    )
    gw = serve(config)
    (worker,) = gw.worker_pids()
    baseline = rss(worker)
    ctx = ssl.create_default_context(cafile=str(dev_cert.ca_file))
    client = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", stream_port(gw, "tls"))), server_hostname="localhost"
    )
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    sampler = Sampler(worker)
    held, deadline = -1, time.monotonic() + 15
    while sent[0] != held and time.monotonic() < deadline:  # until half a second goes by
        held = sent[0]  # without the upstream getting another MiB out
        time.sleep(0.5)
    assert sent[0] == held, "the upstream kept sending to a client that reads nothing"
    assert held < 64 << 20
    peak = sampler.stop()
    assert peak - baseline < 32 << 20, f"worker RSS grew by {(peak - baseline) >> 20} MiB"
    assert client.recv(1 << 16)  # and it flows again once read
    client.close()


def stream_lines(directory: Path, count: int, within: float = 10.0) -> list[dict[str, Any]]:
    """The access log's stream lines, once there are `count` (the worker writes in batches)."""
    deadline = time.monotonic() + within
    while True:
        path = directory / "access.log"
        lines = [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []
        found = [x for x in lines if x.get("type") == "stream"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def wait_for_log(
    gw: ServeProcess, check: Callable[[dict[str, Any]], bool], within: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for entry in list(gw.log):
            if check(entry):
                return entry
        time.sleep(0.05)
    raise AssertionError(f"no such log line in {gw.log}")


def test_a_reload_keeps_established_connections_and_a_stop_ends_them(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Any, servers: Any
) -> None:
    first, second = servers(tagged(b"A")), servers(tagged(b"B"))
    table = {"name": "iris", "listen": "127.0.0.1:0", "tls": False, "upstream": first.url}
    config = stream_config(tmp_path, dev_cert, [table], drain_seconds=1)
    gw = serve(config)
    port = stream_port(gw)
    old = socket.create_connection(("127.0.0.1", port))
    assert recv_exactly(old, 1) == b"A"

    stream_config(tmp_path, dev_cert, [{**table, "upstream": second.url}], drain_seconds=1)
    gw.proc.send_signal(signal.SIGHUP)
    wait_for_log(gw, lambda e: e.get("msg") == "configuration reloaded")
    old.sendall(b"still here")
    assert recv_exactly(old, 10) == b"still here"  # relayed by the retiring worker
    new = socket.create_connection(("127.0.0.1", port))
    assert recv_exactly(new, 1) == b"B"  # the new settings for new connections
    new.close()

    moved = {**table, "upstream": second.url, "listen": "127.0.0.1:1"}
    stream_config(tmp_path, dev_cert, [moved], drain_seconds=1)
    gw.proc.send_signal(signal.SIGHUP)
    refused = wait_for_log(gw, lambda e: str(e.get("msg", "")).startswith("reload refused"))
    assert "streams[].listen: a reload cannot change it" in refused["msg"]
    old.sendall(b"and now")
    assert recv_exactly(old, 7) == b"and now"

    assert gw.stop(signal.SIGTERM) == 0
    old.settimeout(10)  # drain_seconds is 1: a connection still open after 10 s fails the test
    assert old.recv(100) == b""  # closed after drain_seconds
    old.close()
    reasons = sorted(x["close_reason"] for x in stream_lines(tmp_path, 2))
    assert reasons == ["client_closed", "shutdown"]


def admin_worker(gw: ServeProcess, token: str) -> int:
    """The pid of the worker that answers the admin API on a connection of its own."""
    admin = next(e for e in gw.log if e.get("msg") == "ready")["admin"][0]
    host, port = admin.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/status", headers={"Authorization": f"Bearer {token}"})
        return int(orjson.loads(conn.getresponse().read())["worker"])
    finally:
        conn.close()


def test_a_retiring_worker_stops_answering_the_admin_api_while_it_relays(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Any, servers: Any
) -> None:
    """The admin listener is HTTP: a worker retiring after a reload closes it once HTTP has
    drained, not when its last stream connection ends (an hour later, say), so the admin API
    and the console never answer for the settings a reload replaced."""
    first, second = servers(tagged(b"A")), servers(tagged(b"B"))
    table = {"name": "iris", "listen": "127.0.0.1:0", "tls": False, "upstream": first.url}
    config = stream_config(tmp_path, dev_cert, [table], drain_seconds=1)
    gw = serve(config)
    (retiring,) = gw.worker_pids()
    token = (tmp_path / "admin.token").read_text().strip()
    held = socket.create_connection(("127.0.0.1", stream_port(gw)))
    assert recv_exactly(held, 1) == b"A"
    stream_config(tmp_path, dev_cert, [{**table, "upstream": second.url}], drain_seconds=1)
    gw.proc.send_signal(signal.SIGHUP)
    wait_for_log(gw, lambda e: e.get("msg") == "draining" and e.get("retiring") is True)
    deadline = time.monotonic() + 10
    answered: list[int] = []
    while time.monotonic() < deadline:  # fresh connections, shared by whoever accepts them
        answered = [admin_worker(gw, token) for _ in range(30)]
        if retiring not in answered:
            break
        time.sleep(0.2)
    assert retiring not in answered
    held.sendall(b"still here")
    assert recv_exactly(held, 10) == b"still here"  # relayed by the retiring worker all along
    held.close()


def test_a_retiring_worker_relays_a_busy_connection_no_longer_than_stream_retire_seconds(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Any, servers: Any
) -> None:
    """A connection with a byte every so often never idles out: after a reload the old worker
    relays it for stream_retire_seconds, then closes it as a stop does."""
    first, second = servers(tagged(b"A")), servers(tagged(b"B"))
    table = {
        "name": "iris",
        "listen": "127.0.0.1:0",
        "tls": False,
        "upstream": first.url,
        "idle_timeout_seconds": 1,
    }
    keys = {"drain_seconds": 0.2, "stream_retire_seconds": 1.5}
    config = stream_config(tmp_path, dev_cert, [table], **keys)
    gw = serve(config)
    port = stream_port(gw)
    busy = socket.create_connection(("127.0.0.1", port))
    busy.settimeout(5)
    assert recv_exactly(busy, 1) == b"A"
    echoed: list[float] = []  # when each tick came back

    def tick() -> None:
        with contextlib.suppress(OSError, AssertionError):
            while True:
                busy.sendall(b"tick")
                assert recv_exactly(busy, 4) == b"tick"
                echoed.append(time.monotonic())
                time.sleep(0.2)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    stream_config(tmp_path, dev_cert, [{**table, "upstream": second.url}], **keys)
    gw.proc.send_signal(signal.SIGHUP)
    draining = wait_for_log(gw, lambda e: e.get("msg") == "draining" and e.get("retiring") is True)
    retired = time.monotonic()
    assert draining["stream_retire_seconds"] == 1.5
    ticker.join(timeout=10)
    assert not ticker.is_alive()  # the connection was closed
    busy.close()
    assert 1.0 < echoed[-1] - retired < 5.0  # relayed past the idle timeout, then cut
    (line,) = stream_lines(tmp_path, 1)
    assert line["close_reason"] == "shutdown"
    new = socket.create_connection(("127.0.0.1", port))
    assert recv_exactly(new, 1) == b"B"
    new.close()
