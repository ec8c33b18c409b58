"""Revocation everywhere at once: an admin DELETE reaches every worker's cache (design §8).

Real processes: `edgeauth serve` with 2 workers sharing one SQLite store. The token is first
cached in both workers; after the DELETE's 204 every worker must refuse it. The bound itself
is measured by `python -m benchmarks.revocation`, not asserted here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from edgeauth import tls
from tests.conftest import Backend, ServeProcess, eventually, read_access_log, write_config
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

ROUNDS = 40


async def _fresh_get(url: str, token: str, client_ssl: ssl.SSLContext) -> int:
    """One request on a new connection, so that the kernel picks a worker anew."""
    connector = aiohttp.TCPConnector(ssl=client_ssl, force_close=True)
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status


async def _statuses_by_worker(
    tmp_path: Path, url: str, token: str, client_ssl: ssl.SSLContext
) -> dict[int, set[int]]:
    before = len(read_access_log(tmp_path))
    for _ in range(ROUNDS):
        await _fresh_get(url, token, client_ssl)
    entries: list[dict[str, Any]] = []
    for _ in range(50):  # the access log is written in batches every 0.2 s
        entries = read_access_log(tmp_path)[before:]
        if len(entries) >= ROUNDS:
            break
        await asyncio.sleep(0.1)
    seen: dict[int, set[int]] = {}
    for entry in entries:
        seen.setdefault(entry["worker"], set()).add(entry["status"])
    return seen


async def test_admin_delete_makes_every_worker_refuse_a_token_it_had_cached(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [events_service(backend)],
        consumers=consumers(tmp_path),
        tables={"admin": {"listen": "127.0.0.1:0"}},
        workers=2,
    )
    gw = serve(config)
    admin_url = next(entry for entry in gw.log if entry.get("msg") == "ready")["admin"][0]
    admin_token = (tmp_path / "admin.token").read_text().strip()
    api = f"{gw.url}/events"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session:
        login = {
            "client_id": "clientid",
            "client_secret": SECRET,
            "grant_type": "password",
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "1",
        }
        async with session.post(f"{api}/oauth2/token", json=login) as resp:
            token = (await resp.json())["access_token"]

        served = await _statuses_by_worker(tmp_path, api, token, client_ssl)
        assert len(served) == 2, served  # both workers validated (and cached) it
        assert all(statuses == {200} for statuses in served.values()), served

        headers = {"Authorization": f"Bearer {admin_token}"}
        async with session.delete(f"{admin_url}/oauth2_tokens/{token}", headers=headers) as r:
            assert r.status == 204
        refused: dict[int, set[int]] = {}

        async def every_worker_refuses() -> bool:
            nonlocal refused
            refused = await _statuses_by_worker(tmp_path, api, token, client_ssl)
            return len(refused) == 2 and all(statuses == {401} for statuses in refused.values())

        await eventually(every_worker_refuses)  # a loaded machine delays the workers' polls
        assert len(refused) == 2, refused
        assert all(statuses == {401} for statuses in refused.values()), refused
