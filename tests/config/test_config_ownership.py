"""One owner per setting (issue 14): `[[consumers]]` in config.toml owns what it declares.

Real `edgeauth serve` processes, a real store (SQLite, and PostgreSQL where marked), the admin
API and the token endpoint over real sockets; config.toml is rewritten and the supervisor sent
SIGHUP, as `systemctl reload` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgeauth import tls
from edgeauth.models import MANAGED_TAG
from tests.admin.conftest import Reply, call
from tests.conftest import Backend, ServeProcess, write_config
from tests.oauth.conftest import PROVISION_KEY, events_service
from tests.store.conftest import pg_schema

Entry = dict[str, Any]


def app(client_id: str, secret: str, **extra: Any) -> dict[str, Any]:
    """A `[[consumers.oauth2]]` table."""
    return {"name": f"{client_id}-name", "client_id": client_id, "client_secret": secret, **extra}


def consumer(username: str, *apps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A `[[consumers]]` table."""
    return {"username": username, "oauth2": list(apps), **extra}


@dataclass
class Node:
    """One `edgeauth serve`, its config file, and clients for its two listeners."""

    proc: ServeProcess
    rewrite: Callable[[list[dict[str, Any]]], None]
    admin_url: str
    admin_token: str
    http: aiohttp.ClientSession
    proxy: aiohttp.ClientSession

    async def admin(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return await call(self.http, method, self.admin_url + path, headers=headers, **kwargs)

    async def token(self, client_id: str, secret: str) -> Reply:
        body = {
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "1",
        }
        return await call(self.proxy, "POST", f"{self.proc.url}/events/oauth2/token", json=body)

    async def refused(self, client_id: str, secret: str) -> bool:
        reply = await self.token(client_id, secret)
        return reply.status == 400 and reply.body["error"] == "invalid_client"

    async def issued(self, client_id: str, secret: str) -> str:
        reply = await self.token(client_id, secret)
        assert reply.status == 200, reply.text
        return str(reply.body["access_token"])

    async def proxied(self, access_token: str) -> int:
        headers = {"Authorization": f"Bearer {access_token}"}
        return (
            await call(self.proxy, "GET", f"{self.proc.url}/events/echo", headers=headers)
        ).status

    async def reload(self, consumers: list[dict[str, Any]]) -> list[Entry]:
        """Rewrite config.toml with these consumers, SIGHUP, and return what was logged until
        the reload was done."""
        mark = len(self.proc.log)
        self.rewrite(consumers)
        self.proc.proc.send_signal(signal.SIGHUP)
        return await logged_until(self.proc, "configuration reloaded", mark)


async def logged_until(proc: ServeProcess, msg: str, mark: int = 0) -> list[Entry]:
    for _ in range(300):
        entries = proc.log[mark:]
        refused = [e for e in entries if "reload refused" in str(e.get("msg"))]
        assert not refused, refused
        if any(e.get("msg") == msg for e in entries):
            return entries
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {msg!r} in {proc.log[mark:]}")


def only(entries: list[Entry], msg: str) -> Entry:
    found = [e for e in entries if e.get("msg") == msg]
    assert len(found) == 1, (msg, entries)
    return found[0]


Start = Callable[[list[dict[str, Any]]], Awaitable[Node]]


@contextlib.asynccontextmanager
async def store_tables(backend: str) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """The config tables that put the store on `backend` (a fresh PostgreSQL schema)."""
    if backend == "sqlite":
        yield {}
        return
    async with pg_schema() as schema:
        yield {"store": {"backend": "postgres", "dsn": schema.dsn, "pool_size": 2}}


BOTH = pytest.mark.parametrize("start", ["sqlite", "postgres"], indirect=True)


@pytest.fixture(params=["sqlite"])
async def start(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> AsyncIterator[Start]:
    """`await start(consumers)`: a node on the given store backend with these `[[consumers]]`
    (SQLite; the tests marked BOTH run on PostgreSQL too)."""
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with (
        store_tables(request.param) as tables,
        aiohttp.ClientSession() as http,
        aiohttp.ClientSession(connector=connector) as proxy,
    ):

        def rewrite(consumers: list[dict[str, Any]]) -> None:
            services = [events_service(backend)]
            write_config(tmp_path, dev_cert, services, consumers=consumers, tables=tables)

        async def begin(consumers: list[dict[str, Any]]) -> Node:
            rewrite(consumers)
            proc = serve(tmp_path / "config.toml")
            ready = next(e for e in proc.log if e.get("msg") == "ready")
            token = (tmp_path / "admin.token").read_text().strip()
            return Node(proc, rewrite, ready["admin"][0], token, http, proxy)

        yield begin


# config owns what it declares ----------------------------------------------------------------
async def test_declared_entities_are_tagged_managed_beside_their_own_tags(start: Start) -> None:
    declared = [consumer("ClientApp", app("clientid", "s1", tags=["web"]), tags=["team-a"])]
    node = await start(declared)
    created = node.proc.log
    assert only(created, "config created a consumer")["username"] == "ClientApp"
    assert only(created, "config created an application")["client_id"] == "clientid"
    stored = await node.admin("GET", "/consumers/ClientApp")
    assert stored.body["tags"] == ["team-a", MANAGED_TAG]
    cred = await node.admin("GET", "/oauth2/clientid")
    assert cred.body["tags"] == ["web", MANAGED_TAG]
    assert cred.body["consumer"] == {"id": stored.body["id"]}
    access = await node.issued("clientid", "s1")

    unchanged = await node.reload(declared)
    assert not [e for e in unchanged if str(e.get("msg")).startswith("config ")]
    assert await node.proxied(access) == 200  # an unchanged secret keeps its hash and tokens


async def test_admin_created_entities_that_config_later_declares_are_left_alone(
    start: Start,
) -> None:
    node = await start([consumer("Keeper", app("keeperapp", "k1"))])
    alice = await node.admin("PUT", "/consumers/alice", json={"custom_id": "a-admin"})
    assert alice.status in (200, 201), alice.text
    made = await node.admin(
        "POST",
        "/consumers/alice/oauth2",
        json={"name": "AliceApp", "client_id": "aliceapp", "client_secret": "admin-secret"},
    )
    assert made.status == 201, made.text
    access = await node.issued("aliceapp", "admin-secret")

    entries = await node.reload(
        [
            consumer("Keeper", app("keeperapp", "k1")),
            consumer("alice", app("aliceapp", "config-secret"), custom_id="a-config"),
            consumer("carol", app("carolapp", "c1")),
            consumer("erin", app("erinapp", "e1"), custom_id="a-admin"),  # alice's custom_id
        ]
    )
    skipped = only(
        entries,
        "config.toml declares a consumer that the admin API created: left"
        " as it is, with the applications declared under it; remove it from"
        " config.toml, or delete it through the admin API for config to create it",
    )
    assert (skipped["username"], skipped["skipped"]) == ("alice", ["aliceapp"])
    refused = only(
        entries,
        "config.toml declares a consumer the store refuses: not applied, nor its applications",
    )
    assert refused["username"] == "erin"
    assert only(entries, "config created a consumer")["username"] == "carol"

    kept = await node.admin("GET", "/consumers/alice")
    assert (kept.body["custom_id"], kept.body["tags"]) == ("a-admin", None)
    assert (await node.admin("GET", "/oauth2/aliceapp")).body["tags"] is None
    assert await node.proxied(access) == 200
    assert (await node.token("aliceapp", "admin-secret")).status == 200
    assert await node.refused("aliceapp", "config-secret")
    assert (await node.admin("GET", "/consumers/erin")).status == 404
    assert (await node.token("carolapp", "c1")).status == 200


@BOTH
async def test_a_secret_set_through_the_admin_api_survives_start_and_reload(
    start: Start,
) -> None:
    """The bug: a seeded app's secret changed with PATCH went back to the file's on SIGHUP,
    its tokens revoked and nothing logged. An app the admin API owns is config's no more."""
    node = await start([])
    await node.admin("PUT", "/consumers/ops")
    made = await node.admin(
        "POST",
        "/consumers/ops/oauth2",
        json={"name": "OpsApp", "client_id": "opsapp", "client_secret": "first"},
    )
    assert made.status == 201, made.text
    declared = [consumer("ops", app("opsapp", "from-file"))]
    await node.reload(declared)
    patched = await node.admin("PATCH", "/oauth2/opsapp", json={"client_secret": "second"})
    assert patched.status == 200, patched.text
    access = await node.issued("opsapp", "second")

    entries = await node.reload(declared)
    assert any(e.get("username") == "ops" and e.get("level") == "warning" for e in entries)
    assert not [e for e in entries if e.get("msg") == "config updated an application"]
    assert await node.proxied(access) == 200
    assert (await node.token("opsapp", "second")).status == 200
    assert await node.refused("opsapp", "from-file")


@BOTH
async def test_a_config_change_to_a_managed_secret_is_applied_on_reload_and_logged(
    start: Start,
) -> None:
    uris = ["https://app.example/cb"]
    node = await start([consumer("ClientApp", app("clientid", "old", redirect_uris=uris))])
    live = [await node.issued("clientid", "old") for _ in range(2)]
    revoked = await node.issued("clientid", "old")
    gone = await call(
        node.proxy,
        "POST",
        f"{node.proc.url}/events/oauth2/revoke",
        data={"token": revoked, "client_id": "clientid", "client_secret": "old"},
    )
    assert gone.status == 200, gone.text

    changed = app("clientid", "new", redirect_uris=["https://app.example/new"])
    entries = await node.reload([consumer("ClientApp", changed)])
    update = only(entries, "config updated an application")
    assert update["client_id"] == "clientid"
    assert update["changed"] == ["client_secret", "redirect_uris"]
    assert update["tokens_revoked"] == 2  # the live ones, not the one revoked before
    assert [await node.proxied(token) for token in live] == [401, 401]
    assert await node.refused("clientid", "old")
    assert (await node.token("clientid", "new")).status == 200
    stored = await node.admin("GET", "/oauth2/clientid")
    assert stored.body["redirect_uris"] == ["https://app.example/new"]


async def test_what_config_no_longer_declares_is_deleted_with_its_tokens(start: Start) -> None:
    node = await start(
        [
            consumer("ClientApp", app("clientid", "s1"), app("retired", "r1")),
            consumer("Gone", app("goneapp", "g1")),
        ]
    )
    retired = await node.issued("retired", "r1")
    await node.issued("goneapp", "g1")
    entries = await node.reload([consumer("ClientApp", app("clientid", "s1"))])
    deleted = [
        (e["client_id"], e["tokens_revoked"])
        for e in entries
        if e.get("msg") == "config deleted an application that config.toml no longer declares"
    ]
    assert sorted(deleted) == [("goneapp", 1), ("retired", 1)]
    gone = only(entries, "config deleted a consumer that config.toml no longer declares")
    assert gone["username"] == "Gone"
    assert await node.proxied(retired) == 401
    assert (await node.admin("GET", "/oauth2/retired")).status == 404
    assert (await node.admin("GET", "/consumers/Gone")).status == 404
    assert (await node.token("clientid", "s1")).status == 200


async def test_a_consumer_no_longer_declared_stays_while_it_holds_an_application(
    start: Start,
) -> None:
    """An application moved to a consumer that the admin API owns cannot move (that consumer
    is not config's); its old, undeclared consumer keeps it rather than delete it."""
    node = await start([consumer("Old", app("mover", "m1"))])
    await node.admin("PUT", "/consumers/NewOwner")
    access = await node.issued("mover", "m1")
    entries = await node.reload([consumer("NewOwner", app("mover", "m1"))])
    held = only(
        entries,
        "config.toml no longer declares a consumer that still holds applications: left as it"
        " is until it holds none",
    )
    assert (held["username"], held["applications"]) == ("Old", ["mover"])
    assert (await node.admin("GET", "/consumers/Old")).status == 200
    assert await node.proxied(access) == 200


async def test_a_start_after_an_upgrade_adopts_what_is_exactly_as_declared(start: Start) -> None:
    """A version before the managed tag seeded untagged entities. The first start on a store
    with nothing managed adopts those that are exactly what config declares: tagged, logged,
    their tokens kept. Anything else stays the admin API's."""
    node = await start([])
    await node.admin("PUT", "/consumers/legacy", json={"custom_id": "l-1"})
    await node.admin("PUT", "/consumers/other")
    for owner, body in (
        ("legacy", {"name": "legacyapp-name", "client_id": "legacyapp", "client_secret": "l1"}),
        ("other", {"name": "otherapp-name", "client_id": "otherapp", "client_secret": "o-admin"}),
    ):
        made = await node.admin("POST", f"/consumers/{owner}/oauth2", json=body)
        assert made.status == 201, made.text
    access = await node.issued("legacyapp", "l1")
    node.proc.stop()

    declared = [
        consumer("legacy", app("legacyapp", "l1"), custom_id="l-1"),
        consumer("other", app("otherapp", "o-config")),
    ]
    node = await start(declared)
    adopted = [e["username"] for e in node.proc.log if e.get("msg") == "config adopted a consumer"]
    assert sorted(adopted) == ["legacy", "other"]
    assert only(node.proc.log, "config adopted an application")["client_id"] == "legacyapp"
    assert (await node.admin("GET", "/oauth2/legacyapp")).body["tags"] == [MANAGED_TAG]
    assert await node.proxied(access) == 200  # adopted as it was: nothing revoked
    # `other` is adopted (as declared) but its application's secret is not the file's: the
    # admin API's still.
    assert (await node.admin("GET", "/oauth2/otherapp")).body["tags"] is None
    assert (await node.token("otherapp", "o-admin")).status == 200
    assert (await node.admin("DELETE", "/oauth2/legacyapp")).status == 409
