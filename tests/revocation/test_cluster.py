"""Several gateway nodes on one PostgreSQL database (design §7, §8; issue 7).

Two `edgeauth serve` processes (2 workers each) share one fresh schema of the test server.
A real TCP relay between node B and PostgreSQL lets the test cut B off from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgeauth import tls
from tests.conftest import Backend, ServeProcess, eventually, write_config
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service
from tests.store.conftest import PgSchema, pg_connect, pg_schema

LISTENER = "edgeauth-revocation-listener"


class Relay:
    """A TCP relay to PostgreSQL that the test can cut and restore (a real network hop).

    It runs its own event loop in a thread: the test's loop blocks while `serve` starts.
    `client_ports` are the local ports of its open connections to PostgreSQL, which
    pg_stat_activity shows as client_port: they tell this node's sessions from those of
    other tests on the same server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.client_ports: set[int] = set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._pipes.update((writer, up_writer))
        client_port = up_writer.get_extra_info("sockname")[1]
        self.client_ports.add(client_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.client_ports.discard(client_port)


@pytest.fixture
def relay() -> Iterator[Relay]:
    made = Relay(("127.0.0.1", 5432))
    made.start()
    yield made
    made.close()


@pytest.fixture
async def schema() -> AsyncIterator[PgSchema]:
    async with pg_schema() as made:
        yield made


def _config(directory: Path, dev_cert: tls.DevCertificate, backend: Backend, dsn: str) -> Path:
    directory.mkdir()
    return write_config(
        directory,
        dev_cert,
        [events_service(backend, enable_authorization_code=True)],
        consumers=consumers(directory),
        tables={
            "store": {"backend": "postgres", "dsn": dsn, "pool_size": 4},
            "admin": {"listen": "127.0.0.1:0"},
        },
        workers=2,
    )


async def _status(session: aiohttp.ClientSession, url: str, token: str, fresh: bool = False) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    if fresh:
        connector = aiohttp.TCPConnector(ssl=session.connector._ssl, force_close=True)  # type: ignore[union-attr]
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.get(url, headers=headers) as r,
        ):
            return r.status
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


async def _login(session: aiohttp.ClientSession, url: str, user: str = "1") -> dict[str, Any]:
    body = {
        "client_id": "clientid",
        "client_secret": SECRET,
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": user,
    }
    async with session.post(f"{url}/events/oauth2/token", json=body) as resp:
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc


async def _everywhere(session: aiohttp.ClientSession, url: str, token: str, want: int) -> bool:
    """20 requests on fresh connections (both workers of the node) all answer `want`."""
    statuses = [await _status(session, f"{url}/events", token, fresh=True) for _ in range(20)]
    return set(statuses) == {want}


async def test_two_nodes_share_tokens_revocations_and_races(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
    schema: PgSchema,
) -> None:
    a = serve(_config(tmp_path / "a", dev_cert, backend, schema.dsn))
    b = serve(_config(tmp_path / "b", dev_cert, backend, schema.dsn))
    admin_a = next(e for e in a.log if e.get("msg") == "ready")["admin"][0]
    token_a = (tmp_path / "a" / "admin.token").read_text().strip()
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session:
        # a token issued on A works on B, and is cached there
        issued = await _login(session, a.url)
        access = issued["access_token"]
        assert await _everywhere(session, b.url, access, 200)
        # a DELETE on A: B refuses it (every worker) well within the bound
        headers = {"Authorization": f"Bearer {token_a}"}
        async with session.delete(f"{admin_a}/oauth2_tokens/{access}", headers=headers) as r:
            assert r.status == 204
        # B hears of it at once; polled, with a deadline for slow machines
        assert await eventually(lambda: _everywhere(session, b.url, access, 401))

        # 50 concurrent refreshes of one refresh token, spread over both nodes
        pair = await _login(session, a.url, user="2")
        refresh = {
            "client_id": "clientid",
            "client_secret": SECRET,
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
        }

        async def one(url: str) -> int:
            async with session.post(f"{url}/events/oauth2/token", json=refresh) as resp:
                return resp.status

        statuses = await asyncio.gather(*(one(n.url) for n in (a, b) for _ in range(25)))
        assert sorted(statuses).count(200) == 1

        # one code exchanged on both nodes at once
        authorize = {
            "client_id": "clientid",
            "response_type": "code",
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "3",
        }
        async with session.post(f"{a.url}/events/oauth2/authorize", json=authorize) as resp:
            code = (await resp.json())["redirect_uri"].split("code=")[1].split("&")[0]
        exchange = {
            "client_id": "clientid",
            "client_secret": SECRET,
            "grant_type": "authorization_code",
            "code": code,
        }

        async def swap(url: str) -> int:
            async with session.post(f"{url}/events/oauth2/token", json=exchange) as resp:
                return resp.status

        swaps = await asyncio.gather(*(swap(n.url) for n in (a, b) for _ in range(10)))
        assert swaps.count(200) == 1


async def test_a_lost_listener_makes_the_node_distrust_its_cache_until_it_is_back(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
    schema: PgSchema,
    relay: Relay,
) -> None:
    via_relay = schema.dsn.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    b = serve(_config(tmp_path / "b", dev_cert, backend, via_relay))
    db = await pg_connect(schema.dsn)
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:

            async def cached_then_silently_revoked() -> str:
                """A token cached by B, then revoked behind edgeauth's back (no log, no
                NOTIFY): only a node that reads the store can notice."""
                access = str((await _login(session, b.url))["access_token"])
                assert await _status(session, f"{b.url}/events", access) == 200
                await db.execute("UPDATE tokens SET revoked_at = 1 WHERE prefix = $1", access[:6])
                return access

            # control: with the listener up, B trusts its cache (the silent revoke goes unseen)
            trusted = await cached_then_silently_revoked()
            assert await _status(session, f"{b.url}/events", trusted) == 200

            quiet = await cached_then_silently_revoked()
            killed = await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1 AND client_port = ANY($2::int[])",  # B's only
                LISTENER,
                sorted(relay.client_ports),
            )
            assert killed >= 2  # one listener per worker

            async def refused(token: str) -> bool:
                return await _status(session, f"{b.url}/events", token) == 401

            # within a few keep-alive checks (a deadline for slow machines)
            assert await eventually(lambda: refused(quiet), within=15.0)

            async def listening_again() -> bool:  # the listeners reconnect by themselves
                back = await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND client_port = ANY($2::int[])",
                    LISTENER,
                    sorted(relay.client_ports),
                )
                return bool(back >= 2)

            assert await eventually(listening_again)

            async def trusted_again() -> bool:
                again = await cached_then_silently_revoked()
                return await _status(session, f"{b.url}/events", again) == 200

            # connected is not yet listening: poll until the cache is used
            assert await eventually(trusted_again)
    finally:
        await db.close()


async def test_store_outage_gives_503_never_a_forward_and_service_resumes(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
    schema: PgSchema,
    relay: Relay,
) -> None:
    dsn = schema.dsn.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    node = serve(_config(tmp_path / "n", dev_cert, backend, dsn))
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(connector=connector) as session:
        cached = str((await _login(session, node.url))["access_token"])
        uncached = str((await _login(session, node.url, user="9"))["access_token"])
        assert await _status(session, f"{node.url}/events", cached) == 200
        before = backend.stats.copy()

        relay.cut()
        seen: set[int] = set()
        for _ in range(40):
            seen.add(await _status(session, f"{node.url}/events", uncached))
            seen.add(await _status(session, f"{node.url}/events", cached))
            await asyncio.sleep(0.05)
        assert 503 in seen
        assert 200 not in seen or seen <= {200, 503}
        last = await _status(session, f"{node.url}/events", cached)
        assert last == 503  # the cached token too, once the listener is gone
        async with session.post(
            f"{node.url}/events/oauth2/token",
            json={
                "client_id": "clientid",
                "client_secret": SECRET,
                "grant_type": "password",
                "provision_key": PROVISION_KEY,
                "authenticated_userid": "1",
            },
        ) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"] == "temporarily_unavailable"
        assert backend.stats == before  # nothing was forwarded during the outage

        relay.start()

        async def served() -> bool:
            return await _status(session, f"{node.url}/events", uncached) == 200

        assert await eventually(served)
