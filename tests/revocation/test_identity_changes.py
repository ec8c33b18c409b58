"""Identity headers follow the consumer and the application on every worker (issue 13,
points 3 and 4).

Real processes: `edgeauth serve` with 2 workers on one SQLite store, the sample backend
echoing what it received. A token's identity (X-Consumer-Username, X-Consumer-Custom-ID,
X-Credential-Identifier) and the anonymous consumer's are cached by every worker; after an
admin rename each worker must send the new values, never ones that may by then name another
consumer; after the anonymous consumer is deleted, each worker must refuse (401).
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from edgeauth import tls
from edgeauth.anonymous import MISSING_SECONDS
from tests.conftest import Backend, ServeProcess, read_access_log, write_config
from tests.oauth.conftest import PROVISION_KEY, SECRET, events_service

ROUNDS = 30
IDENTITY = ("x-consumer-username", "x-consumer-custom-id", "x-credential-identifier")
ANONYMOUS = ("x-consumer-username", "x-consumer-custom-id")


class Node:
    """A running `serve` with its admin API, asked on fresh connections (so that the kernel
    spreads them over both workers)."""

    def __init__(self, proc: ServeProcess, directory: Path, client_ssl: ssl.SSLContext) -> None:
        self.proc = proc
        self.directory = directory
        self.ssl = client_ssl
        self.admin = next(e for e in proc.log if e.get("msg") == "ready")["admin"][0]
        token = (directory / "admin.token").read_text().strip()
        self.admin_headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, f"{self.admin}{path}", json=body, headers=self.admin_headers
            ) as resp,
        ):
            assert resp.status < 300, await resp.text()
            return resp.status

    async def token(self) -> str:
        login = {
            "client_id": "clientid",
            "client_secret": SECRET,
            "grant_type": "password",
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "user-1",
        }
        connector = aiohttp.TCPConnector(ssl=self.ssl)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(f"{self.proc.url}/events/oauth2/token", json=login) as resp,
        ):
            assert resp.status == 200, await resp.text()
            return str((await resp.json())["access_token"])

    async def _get(self, token: str | None) -> tuple[int, dict[str, str]]:
        connector = aiohttp.TCPConnector(ssl=self.ssl, force_close=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"{self.proc.url}/events/echo", headers=headers) as resp,
        ):
            if resp.status != 200:
                return resp.status, {}
            echo = await resp.json()
            return 200, {str(k).lower(): str(v) for k, v in echo["headers"]}

    async def seen_by_worker(
        self, token: str | None, names: tuple[str, ...]
    ) -> dict[int, set[tuple[int, tuple[str | None, ...]]]]:
        """(status, the named headers' values) of ROUNDS requests, by the worker that served
        each (from the access log, in request order)."""
        before = len(read_access_log(self.directory))
        answers = []
        for _ in range(ROUNDS):
            status, headers = await self._get(token)
            answers.append((status, tuple(headers.get(name) for name in names)))
        entries: list[dict[str, Any]] = []
        for _ in range(50):  # the access log is written in batches every 0.2 s
            logged = read_access_log(self.directory)[before:]
            entries = [e for e in logged if e["path"] == "/events/echo"]
            if len(entries) >= ROUNDS:
                break
            await asyncio.sleep(0.1)
        assert len(entries) == ROUNDS
        seen: dict[int, set[tuple[int, tuple[str | None, ...]]]] = {}
        for entry, answer in zip(entries, answers, strict=True):
            assert entry["status"] == answer[0]
            seen.setdefault(entry["worker"], set()).add(answer)
        assert len(seen) == 2, seen  # both workers answered (and cached)
        return seen

    async def settled(
        self, token: str | None, names: tuple[str, ...], want: tuple[int, tuple[str | None, ...]]
    ) -> dict[int, set[tuple[int, tuple[str | None, ...]]]]:
        """seen_by_worker, asked again until every worker answers `want`: a worker applies a
        change within its poll interval, which a loaded machine may stretch (a deadline)."""
        seen = await self.seen_by_worker(token, names)
        for _ in range(20):
            if all(answers == {want} for answers in seen.values()):
                break
            await asyncio.sleep(0.2)
            seen = await self.seen_by_worker(token, names)
        return seen


def _start(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
    **oauth2: Any,
) -> Node:
    config = write_config(
        tmp_path,
        dev_cert,
        [events_service(backend, **oauth2)],
        tables={"admin": {"listen": "127.0.0.1:0"}},
        workers=2,
    )
    return Node(serve(config), tmp_path, client_ssl)


async def _people(node: Node) -> None:
    """ClientApp with its application, and Guest: the admin API's own (what config.toml
    declares, the admin API may not rename)."""
    await node.call("POST", "/consumers", {"username": "ClientApp", "custom_id": "client-app-1"})
    app = {"name": "SampleApp", "client_id": "clientid", "client_secret": SECRET}
    await node.call("POST", "/consumers/ClientApp/oauth2", app)
    await node.call("POST", "/consumers", {"username": "Guest", "custom_id": "guest-1"})


async def test_renaming_a_consumer_or_client_id_changes_every_workers_identity_headers(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    node = _start(tmp_path, dev_cert, backend, client_ssl, serve)
    await _people(node)
    token = await node.token()
    before = await node.seen_by_worker(token, IDENTITY)
    old = (200, ("ClientApp", "client-app-1", "clientid"))
    assert all(answers == {old} for answers in before.values()), before

    await node.call("PATCH", "/consumers/ClientApp", {"username": "Renamed", "custom_id": "r-1"})
    await asyncio.sleep(0.2)  # many times the workers' revocation poll interval
    consumer = (200, ("Renamed", "r-1", "clientid"))
    renamed = await node.settled(token, IDENTITY, consumer)  # cached again, by both workers
    assert all(answers == {consumer} for answers in renamed.values()), renamed

    await node.call("PATCH", "/oauth2/clientid", {"client_id": "renamed-client"})
    # The old names now belong to someone else.
    await node.call("POST", "/consumers", {"username": "ClientApp", "custom_id": "client-app-1"})
    await asyncio.sleep(0.2)  # many times the workers' revocation poll interval

    new = (200, ("Renamed", "r-1", "renamed-client"))
    after = await node.settled(token, IDENTITY, new)
    assert all(answers == {new} for answers in after.values()), after


async def test_the_anonymous_consumer_follows_changes_and_deletion_on_every_worker(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    node = _start(tmp_path, dev_cert, backend, client_ssl, serve, anonymous="Guest")
    await _people(node)
    first = await node.seen_by_worker(None, ANONYMOUS)
    assert all(answers == {(200, ("Guest", "guest-1"))} for answers in first.values()), first

    await node.call("PATCH", "/consumers/Guest", {"custom_id": "guest-2"})
    await asyncio.sleep(0.2)
    patched = await node.settled(None, ANONYMOUS, (200, ("Guest", "guest-2")))
    assert all(answers == {(200, ("Guest", "guest-2"))} for answers in patched.values()), patched

    await node.call("DELETE", "/consumers/Guest")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    deleted = await node.settled(None, ANONYMOUS, (401, (None, None)))
    assert all(answers == {(401, (None, None))} for answers in deleted.values()), deleted
    # Missing is remembered: not one store read and one error line per request.
    errors = [e for e in node.proc.log if "does not exist" in str(e.get("msg"))]
    bound = 2 * (math.ceil((time.monotonic() - started) / MISSING_SECONDS) + 1)
    assert 2 <= len(errors) <= bound < ROUNDS, errors

    # A new consumer under the same name is the anonymous consumer (within MISSING_SECONDS).
    await node.call("POST", "/consumers", {"username": "Guest", "custom_id": "guest-3"})
    await asyncio.sleep(MISSING_SECONDS + 0.2)
    again = await node.settled(None, ANONYMOUS, (200, ("Guest", "guest-3")))
    assert all(answers == {(200, ("Guest", "guest-3"))} for answers in again.values()), again
