"""Running as a service (design §9): sd_notify, SIGHUP reload, SIGUSR1 log reopening.

A fake NOTIFY_SOCKET is a real unix datagram socket of the test; the gateway is real
processes (`edgeauth serve`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import tomli_w

from edgeauth import tls
from tests.conftest import Backend, ServeProcess, service, write_config


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    yield sock
    sock.close()


def _messages(sock: socket.socket, until: str, limit: float = 30.0) -> list[str]:
    """Datagrams received until one contains `until` (bounded by `limit` seconds)."""
    seen: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if until in seen[-1]:
            return seen
    raise AssertionError(f"no {until!r} in {seen}")


async def _get(url: str, client_ssl: ssl.SSLContext) -> int:
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as resp:
        return resp.status


def _add_route(config: Path, name: str, path: str) -> None:
    doc = tomllib.loads(config.read_text())
    doc["services"][0]["routes"].append({"name": name, "paths": [path], "strip_path": True})
    config.write_text(tomli_w.dumps(doc))


async def test_notify_ready_watchdog_reload_and_stopping(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
    notify_socket: socket.socket,
) -> None:
    config = write_config(tmp_path, dev_cert, [service("tools", backend.url, ["/tools"])])
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    gw = serve(config, env=env)
    ready = _messages(notify_socket, "READY=1")
    assert any("STATUS=" in m for m in ready)
    assert await _get(f"{gw.url}/tools/echo", client_ssl) == 200  # it serves once READY
    assert _messages(notify_socket, "WATCHDOG=1")

    _add_route(config, "new-route", "/new")
    gw.proc.send_signal(signal.SIGHUP)
    reload = _messages(notify_socket, "READY=1")
    reloading = next(m for m in reload if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in reloading
    assert await _get(f"{gw.url}/new/echo", client_ssl) == 200  # the new config is live

    gw.proc.send_signal(signal.SIGTERM)
    assert _messages(notify_socket, "STOPPING=1")
    assert gw.stop() == 0


async def test_reload_under_steady_keepalive_traffic_loses_no_request(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(
        tmp_path, dev_cert, [service("tools", backend.url, ["/tools"])], workers=2
    )
    gw = serve(config)
    statuses: list[int] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def steady(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.get(f"{gw.url}/tools/echo") as resp:
                    await resp.read()
                    statuses.append(resp.status)
            except aiohttp.ClientError as exc:
                errors.append(repr(exc))

    connector = aiohttp.TCPConnector(ssl=client_ssl, limit=4)
    async with aiohttp.ClientSession(connector=connector) as session:
        loops = [asyncio.create_task(steady(session)) for _ in range(4)]
        await asyncio.sleep(0.5)
        _add_route(config, "new-route", "/new")
        gw.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            await asyncio.sleep(0.1)
            if any(e.get("msg") == "configuration reloaded" for e in gw.log):
                break
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*loops)
        async with session.get(f"{gw.url}/new/echo") as resp:
            assert resp.status == 200
    assert any(e.get("msg") == "configuration reloaded" for e in gw.log)
    assert errors == []
    assert statuses
    assert set(statuses) == {200}


async def test_a_bad_config_on_sighup_keeps_the_old_one_and_logs_every_problem(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(tmp_path, dev_cert, [service("tools", backend.url, ["/tools"])])
    gw = serve(config)
    good = config.read_text()
    config.write_text(
        good.replace("[server]", "[server]\nworkerz = 2\nhandshake_timeout_seconds = -1")
    )
    gw.proc.send_signal(signal.SIGHUP)
    problems: list[str] = []
    for _ in range(100):
        problems = [str(e.get("msg")) for e in gw.log if "reload refused" in str(e.get("msg"))]
        if len(problems) >= 2:
            break
        await asyncio.sleep(0.1)
    assert any("workerz" in p for p in problems)
    assert any("handshake_timeout_seconds" in p for p in problems)
    assert await _get(f"{gw.url}/tools/echo", client_ssl) == 200
    assert gw.proc.poll() is None


async def test_sigusr1_reopens_the_access_log(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(tmp_path, dev_cert, [service("tools", backend.url, ["/tools"])])
    gw = serve(config)
    log = tmp_path / "access.log"
    assert await _get(f"{gw.url}/tools/echo", client_ssl) == 200
    for _ in range(50):
        if log.exists() and log.stat().st_size:
            break
        await asyncio.sleep(0.1)
    os.rename(log, tmp_path / "access.log.1")
    gw.proc.send_signal(signal.SIGUSR1)
    for _ in range(50):
        await asyncio.sleep(0.1)
        assert await _get(f"{gw.url}/tools/echo", client_ssl) == 200
        if log.exists() and log.stat().st_size:
            break
    assert log.exists()
    assert b'"status":200' in log.read_bytes()
    assert gw.proc.poll() is None


async def test_metrics_count_the_requests_of_every_worker(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [service("tools", backend.url, ["/tools"])],
        tables={"admin": {"listen": "127.0.0.1:0"}},
        workers=2,
    )
    gw = serve(config)
    admin = next(e for e in gw.log if e.get("msg") == "ready")["admin"][0]
    sent = 40
    for _ in range(sent):  # fresh connections: the kernel spreads them over both workers
        assert await _get(f"{gw.url}/tools/echo", client_ssl) == 200
    token = (tmp_path / "admin.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    counted = observed = 0.0
    text = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # each worker moves its tallies into the shared files every 250 ms
            async with session.get(f"{admin}/metrics", headers=headers) as resp:
                assert resp.status == 200
                text = await resp.text()
            counted = _sample_sum(text, "edgeauth_http_requests_total{", 'service="tools"')
            observed = _sample_sum(text, "edgeauth_request_latency_ms_count{", 'service="tools"')
            if counted >= sent and observed >= sent:
                break
            await asyncio.sleep(0.1)
        async with session.get(f"{admin}/status/ready", headers=headers) as resp:
            assert resp.status == 200
    assert counted == sent
    assert observed == sent  # the histogram's count, from the bulk bucket adds
    buckets = _sample_sum(text, "edgeauth_request_latency_ms_bucket{", 'le="+Inf"', "tools")
    assert buckets == sent


def _sample_sum(text: str, prefix: str, *needles: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix) and all(needle in line for needle in needles)
    )
