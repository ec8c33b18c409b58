"""The console's world: the walkthrough's gateway with `[admin] ui = true` and an audit log
file, a browser-like client (its own cookie jar, no admin token, redirects not followed) and
the admin API client that fills the store.

`console` starts with an empty store; `full_console` adds the walkthrough's consumers and
applications (made through the admin API) and live tokens of two users.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.admin.conftest import AdminWorld, Reply, call, create_by_api
from tests.conftest import Backend, GatewayFactory, RunningGateway, service
from tests.oauth.conftest import SECRET, consumers, events_service

CSRF = re.compile(r'name="csrf" value="([^"]*)"')
ONE_TIME = re.compile(r'id="one-time-secret"[^>]*>([^<]*)<')
CLIENT_ID = re.compile(r'id="client-id"[^>]*>([^<]*)<')


@dataclass
class Console:
    gw: RunningGateway
    world: AdminWorld
    http: aiohttp.ClientSession  # the browser: cookies kept, no admin token
    base: str  # the admin listener's origin
    audit_path: Path

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await call(self.http, "GET", self.base + path, allow_redirects=False, **kwargs)

    async def post(self, path: str, data: dict[str, str], **kwargs: Any) -> Reply:
        return await call(
            self.http, "POST", self.base + path, data=data, allow_redirects=False, **kwargs
        )

    async def sign_in(self) -> Reply:
        reply = await self.post("/ui/login", {"token": self.gw.admin_token})
        assert reply.status == 303, reply.text
        return reply

    async def csrf(self, path: str = "/ui/") -> str:
        page = await self.get(path)
        assert page.status == 200, page.text
        found = CSRF.search(page.text)
        assert found is not None, page.text
        return found.group(1)

    async def submit(self, path: str, data: dict[str, str], **kwargs: Any) -> Reply:
        """A console form post with this session's CSRF token."""
        return await self.post(path, {**data, "csrf": await self.csrf()}, **kwargs)

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [orjson.loads(line) for line in self.audit_path.read_bytes().splitlines()]


def one_time_secret(html: str) -> str:
    found = ONE_TIME.search(html)
    assert found is not None, html
    return unescape(found.group(1))


def client_id_of(html: str) -> str:
    found = CLIENT_ID.search(html)
    assert found is not None, html
    return unescape(found.group(1))


def browser() -> aiohttp.ClientSession:
    """Cookies from an IP address kept (aiohttp's jar refuses them unless `unsafe`)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def console_services(backend: Backend) -> list[dict[str, Any]]:
    return [
        events_service(backend),
        service("public", backend.url + "/pub", ["/public"], strip_path=False),
    ]


async def start_console(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    **admin: Any,
) -> tuple[RunningGateway, Path]:
    audit_path = tmp_path / "audit.log"
    tables = {"admin": {"ui": True, **admin}, "log": {"audit_log": str(audit_path)}}
    gw = await gateway(console_services(backend), tables=tables)
    return gw, audit_path


@pytest.fixture
async def console(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, client: aiohttp.ClientSession
) -> AsyncIterator[Console]:
    gw, audit_path = await start_console(backend, gateway, tmp_path, client)
    async with aiohttp.ClientSession(headers=gw.admin_headers) as api, browser() as http:
        world = AdminWorld(gw, backend, api, client)
        yield Console(gw, world, http, gw.admin_url, audit_path)


async def fill(c: Console, tmp_path: Path) -> dict[str, str]:
    """The walkthrough's consumers and applications, and live tokens for users 1 and 2;
    returns the token values (none may appear in a page)."""
    await create_by_api(c.world, consumers(tmp_path))
    first = await c.world.password_token("clientid", SECRET, userid="1", scope="read")
    second = await c.world.password_token("clientid", SECRET, userid="2")
    return {
        "access-1": first["access_token"],
        "refresh-1": first["refresh_token"],
        "access-2": second["access_token"],
        "secret": SECRET,
    }


@pytest.fixture
async def full_console(console: Console, tmp_path: Path) -> tuple[Console, dict[str, str]]:
    return console, await fill(console, tmp_path)
