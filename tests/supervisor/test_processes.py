"""`edgeauth serve` as real processes: supervisor, workers, restarts, drain (design §9).

The backend runs in-process; the gateway is a real process tree started by the `serve`
fixture. Waits are bounded polls on an outcome (a pid set, a log line), never timings.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import tomli_w

from edgeauth import tls
from tests.conftest import (
    Backend,
    ServeProcess,
    read_access_log,
    service,
    write_config,
)

Serve = Callable[..., ServeProcess]


async def _until(predicate: Callable[[], bool], what: str, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.05)


def _fresh_session(client_ssl: ssl.SSLContext) -> aiohttp.ClientSession:
    """Every request on a new TCP+TLS connection, so the kernel picks a worker each time."""
    connector = aiohttp.TCPConnector(ssl=client_ssl, force_close=True)
    return aiohttp.ClientSession(connector=connector)


async def _get_statuses(
    session: aiohttp.ClientSession, url: str, count: int, parallel: int = 8
) -> list[int]:
    gate = asyncio.Semaphore(parallel)

    async def one() -> int:
        async with gate, session.get(url) as resp:
            await resp.read()
            return resp.status

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _workers_in_log(directory: Path, path: str) -> set[int]:
    return {int(e["worker"]) for e in read_access_log(directory) if e["path"] == path}


async def test_two_workers_both_serve_and_are_children_of_the_supervisor(
    backend: Backend,
    serve: Serve,
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
) -> None:
    config = write_config(tmp_path, dev_cert, [service("tools", backend.url, ["/"])], workers=2)
    proc = serve(config)
    pids = proc.worker_pids()
    assert len(pids) == 2
    assert proc.proc.pid not in pids
    async with _fresh_session(client_ssl) as session:
        statuses = await _get_statuses(session, f"{proc.url}/echo", 60)
    assert statuses == [200] * 60
    await _until(lambda: len(read_access_log(tmp_path)) >= 60, "60 access-log lines")
    entries = read_access_log(tmp_path)
    assert len(entries) == 60
    assert {int(e["worker"]) for e in entries} == set(pids)
    assert all(e["status"] == 200 and e["tls_version"] for e in entries)


async def test_a_killed_worker_is_replaced_and_the_new_one_serves(
    backend: Backend,
    serve: Serve,
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
) -> None:
    config = write_config(tmp_path, dev_cert, [service("tools", backend.url, ["/"])], workers=2)
    proc = serve(config)
    before = proc.worker_pids()
    assert len(before) == 2
    victim, survivor = before
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        now = proc.worker_pids()
        return len(now) == 2 and victim not in now and survivor in now

    await _until(replaced, "a replacement worker")
    (newcomer,) = set(proc.worker_pids()) - {survivor}
    assert proc.proc.poll() is None  # the supervisor itself lives on
    async with _fresh_session(client_ssl) as session:
        statuses = await _get_statuses(session, f"{proc.url}/echo/after", 40)
    assert statuses == [200] * 40
    await _until(
        lambda: len([e for e in read_access_log(tmp_path) if e["path"] == "/echo/after"]) >= 40,
        "40 access-log lines",
    )
    assert _workers_in_log(tmp_path, "/echo/after") == {survivor, newcomer}
    assert any(e.get("msg") == "worker died; restarting" for e in proc.log)


async def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0(
    backend: Backend,
    serve: Serve,
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
) -> None:
    config = write_config(
        tmp_path, dev_cert, [service("tools", backend.url, ["/"])], workers=2, drain_seconds=10
    )
    proc = serve(config)
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def slow() -> tuple[int, Any]:
            async with session.get(f"{proc.url}/slow/2000") as resp:
                return resp.status, await resp.json()

        in_flight = asyncio.create_task(slow())
        try:
            await _until(lambda: backend.stats["slow_started"] == 1, "the slow request started")
            proc.proc.send_signal(signal.SIGTERM)
            await _until(
                lambda: sum(e.get("msg") == "draining" for e in proc.log) == 2,
                "both workers draining",
            )
            # A new connection now is refused, reset or left unanswered: never served.
            async with _fresh_session(client_ssl) as fresh:
                try:
                    async with asyncio.timeout(1.5), fresh.get(f"{proc.url}/echo") as resp:
                        late: int | str = resp.status
                except (TimeoutError, aiohttp.ClientError, ssl.SSLError, OSError) as exc:
                    late = type(exc).__name__
            assert not isinstance(late, int), f"a connection after SIGTERM was served: {late}"
            assert await asyncio.wait_for(in_flight, 15) == (200, {"slept_ms": 2000})
        finally:
            in_flight.cancel()
    code = await asyncio.to_thread(proc.stop)
    assert code == 0
    assert backend.stats["slow_finished"] == 1
    assert backend.stats["slow_cancelled"] == 0


async def test_serve_with_a_broken_config_exits_78_listing_every_problem(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [service("tools", "http://127.0.0.1:9/", ["/"])],
        workerz=2,
        max_connections="many",
    )
    doc: dict[str, Any] = tomllib.loads(config.read_text())
    doc["log"]["level"] = "verbose"
    config.write_text(tomli_w.dumps(doc))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "edgeauth", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 78, result.stderr
    for key in ("server.workerz", "server.max_connections", "log.level"):
        assert key in result.stderr, (key, result.stderr)
    assert '"workers"' in result.stderr  # the did-you-mean hint
    assert "ready" not in result.stderr


def test_a_second_serve_on_a_taken_port_exits_69_instead_of_sharing_it(
    tmp_path: Path, dev_cert: tls.DevCertificate
) -> None:
    """SO_REUSEPORT would let a second instance share the port; the supervisor refuses."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, dev_cert, [], listen=f"127.0.0.1:{port}")
        done = subprocess.run(
            [sys.executable, "-m", "edgeauth", "serve", "-c", str(config)],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 69
    assert b"cannot listen" in done.stderr
