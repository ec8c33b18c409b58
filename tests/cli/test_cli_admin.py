"""`edgeauth consumers | apps | tokens` as an operator types them, against a real
`edgeauth serve` (design §6, §10): real subprocesses, the admin URL and token found from the
same config.toml, tokens obtained and refused on the proxy listener.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgeauth import tls
from edgeauth.admin_client import url_from_settings
from edgeauth.config import load_settings
from tests.conftest import Backend, ServeProcess, write_config
from tests.oauth.conftest import PROVISION_KEY, consumers, events_service

EX_API = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_CONFIG = 78
SEEDED = 120  # more than one page (100) of consumers besides the walkthrough's two


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def edgeauth(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m edgeauth <args>` in a thread, so the in-process backend keeps serving;
    stdin is not a terminal (as in a script: `consumers rm` does not ask)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "edgeauth", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=60,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result
    assert result.stderr == "", result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Failed with `code`, nothing on stdout, exactly one line on stderr holding `words`."""
    assert result.returncode == code, result
    assert result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("edgeauth: "), result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr


def pairs(text: str) -> dict[str, str]:
    """`  key  value` lines of a created entity."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("  "):
            key, _, value = line.strip().partition(" ")
            found[key] = value.strip()
    return found


def rows(text: str) -> list[dict[str, str]]:
    """An aligned table back into dicts, cutting each line at the header's column starts."""
    header, *lines = text.splitlines()
    names = header.split()
    starts = [header.index(name) for name in names]
    ends = [*starts[1:], None]
    return [
        {name: line[a:b].strip() for name, a, b in zip(names, starts, ends, strict=True)}
        for line in lines
    ]


def config_for(
    tmp_path: Path, dev_cert: tls.DevCertificate, backend: Backend, **admin: Any
) -> Path:
    seeded = [{"username": f"seed-{n:03d}"} for n in range(SEEDED)]
    return write_config(
        tmp_path,
        dev_cert,
        [events_service(backend)],
        consumers=[*consumers(tmp_path), *seeded],
        tables={"admin": {"listen": f"127.0.0.1:{free_port()}", **admin}},
    )


class Proxy:
    """The proxy listener, as a client app sees it."""

    def __init__(self, gw: ServeProcess, session: aiohttp.ClientSession) -> None:
        self.api = f"{gw.url}/events"
        self.session = session

    async def token(self, client_id: str, secret: str, user: str) -> str:
        login = {
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": user,
        }
        async with self.session.post(f"{self.api}/oauth2/token", data=login) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            return str(body["access_token"])

    async def status(self, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.get(self.api, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def refused(self, token: str) -> bool:
        for _ in range(20):  # revocation is immediate with one worker; allow a little slack
            if await self.status(token) == 401:
                return True
            await asyncio.sleep(0.1)
        return False


async def test_an_operator_session(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    client_ssl: ssl.SSLContext,
    serve: Callable[..., ServeProcess],
) -> None:
    config = str(config_for(tmp_path, dev_cert, backend))
    gw = serve(Path(config))
    c = ("-c", config)

    added = ok(
        await edgeauth("consumers", "add", "alice", "--custom-id", "a-1", "--tag", "ops", *c)
    )
    assert added.splitlines()[0] == "created consumer alice"
    assert pairs(added)["custom_id"] == "a-1"

    listed = rows(ok(await edgeauth("consumers", "list", *c)))
    assert len(listed) == 2 + SEEDED + 1  # every page, not only the first 100
    (alice,) = [row for row in listed if row["USERNAME"] == "alice"]
    assert (alice["CUSTOM_ID"], alice["TAGS"], alice["ID"]) == ("a-1", "ops", pairs(added)["id"])
    tagged = json.loads(ok(await edgeauth("consumers", "list", "--tags", "ops", "--json", *c)))
    assert [entry["username"] for entry in tagged["data"]] == ["alice"]

    made = ok(
        await edgeauth(
            "apps", "add", "alice", "--name", "web", "--redirect-uri", "https://web.example/cb", *c
        )
    )
    app = pairs(made)
    client_id, secret = app["client_id"], app["client_secret"]
    assert secret
    assert "not shown again" in made
    public = ok(await edgeauth("apps", "add", "alice", "--name", "mobile", "--public", *c))
    assert "client_secret" not in pairs(public)
    assert pairs(public)["client_type"] == "public"
    apps = rows(ok(await edgeauth("apps", "list", *c)))
    (web,) = [row for row in apps if row["CLIENT_ID"] == client_id]
    assert (web["CONSUMER"], web["NAME"], web["TYPE"]) == ("alice", "web", "confidential")
    assert secret not in ok(await edgeauth("apps", "list", "--consumer", "alice", "--json", *c))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session:
        proxy = Proxy(gw, session)
        first = await proxy.token(client_id, secret, "user-7")
        second = await proxy.token(client_id, secret, "user-7")
        assert await proxy.status(first) == 200

        tokens = rows(ok(await edgeauth("tokens", "list", "--user", "user-7", *c)))
        shown = sorted(row["TOKEN"] for row in tokens)  # a short prefix, never the token
        size = len(shown[0].removesuffix("..."))
        assert shown == sorted(f"{t[:size]}..." for t in (first, second))
        assert {(row["APP"], row["CONSUMER"], row["STATUS"]) for row in tokens} == {
            (client_id, "alice", "active")
        }
        data = json.loads(ok(await edgeauth("tokens", "list", "--app", client_id, "--json", *c)))
        assert len(data["data"]) == 2
        (first_id,) = [t["id"] for t in data["data"] if first.startswith(t["access_token_prefix"])]

        revoked = ok(await edgeauth("tokens", "revoke", first_id, *c))
        assert revoked.startswith("revoked token ")
        assert await proxy.refused(first)
        assert await proxy.status(second) == 200

        bulk = ok(await edgeauth("tokens", "revoke", "--user", "user-7", *c))
        assert bulk == "revoked 1 token\n"
        assert await proxy.refused(second)
        still = await edgeauth("tokens", "list", "--user", "user-7", "--active", "--json", *c)
        assert json.loads(ok(still))["data"] == []

        third = await proxy.token(client_id, secret, "user-8")
        assert await proxy.status(third) == 200
        removed = ok(await edgeauth("apps", "rm", client_id, *c))
        assert removed == f"deleted application web (client_id {client_id}) and its tokens\n"
        assert await proxy.refused(third)

    gone = ok(await edgeauth("consumers", "rm", "alice", "--json", *c))
    assert json.loads(gone)["username"] == "alice"
    usernames = {
        e["username"]
        for e in json.loads(ok(await edgeauth("consumers", "list", "--json", *c)))["data"]
    }
    assert "alice" not in usernames
    assert len(usernames) == 2 + SEEDED
    one_line_error(await edgeauth("consumers", "rm", "alice", *c), EX_API, "consumer not found")


async def test_failures_are_one_line_with_their_exit_status(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    serve: Callable[..., ServeProcess],
) -> None:
    config = str(config_for(tmp_path, dev_cert, backend))
    serve(Path(config))
    c = ("-c", config)

    one_line_error(
        await edgeauth("apps", "add", "nobody", "--name", "x", *c),
        EX_API,
        "consumer not found: nobody",
    )
    one_line_error(
        await edgeauth("tokens", "revoke", "--consumer", "nobody", *c), EX_API, "not found"
    )
    one_line_error(await edgeauth("tokens", "list", "--app", "nope", *c), EX_API, "not found")
    one_line_error(
        await edgeauth("tokens", "revoke", "0" * 8 + "-0000-0000-0000-" + "0" * 12, *c),
        EX_API,
        "token not found",
    )
    one_line_error(
        await edgeauth("consumers", "add", "ClientApp", *c), EX_API, 'username "ClientApp"'
    )
    one_line_error(
        await edgeauth("apps", "add", "ClientApp", "--name", "x", "--client-id", "clientid", *c),
        EX_API,
        'client_id "clientid"',
    )
    one_line_error(
        await edgeauth("apps", "add", "ClientApp", "--name", "x", "--redirect-uri", "nope", *c),
        EX_API,
        "redirect_uris",
    )
    wrong = tmp_path / "wrong.token"
    wrong.write_text("wrong\n")
    one_line_error(
        await edgeauth("consumers", "list", "--admin-token-file", str(wrong), *c),
        EX_API,
        "refused the admin token",
        f"--admin-token-file ({wrong})",
    )
    # both overrides given: no configuration needed at all
    one_line_error(
        await edgeauth(
            "consumers",
            "list",
            "--admin-url",
            "http://127.0.0.1:1",
            "--admin-token-file",
            str(wrong),
            "-c",
            str(tmp_path / "absent.toml"),
        ),
        EX_UNAVAILABLE,
        "cannot reach the admin API at http://127.0.0.1:1",
    )
    one_line_error(
        await edgeauth("tokens", "list", "--admin-url", "http://127.0.0.1:1", *c),
        EX_UNAVAILABLE,
        "cannot reach",
    )
    usage = await edgeauth("tokens", "revoke", *c)
    assert usage.returncode == EX_USAGE


async def test_configuration_problems_exit_78(
    tmp_path: Path, dev_cert: tls.DevCertificate, backend: Backend
) -> None:
    missing = await edgeauth("consumers", "list", "-c", str(tmp_path / "absent.toml"))
    assert missing.returncode == EX_CONFIG
    assert "absent.toml" in missing.stderr
    config = str(config_for(tmp_path, dev_cert, backend))  # never served: no admin token yet
    one_line_error(await edgeauth("consumers", "list", "-c", config), EX_CONFIG, "admin.token_file")


async def test_admin_tls_is_found_from_the_config_and_verified(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    serve: Callable[..., ServeProcess],
) -> None:
    config = config_for(
        tmp_path,
        dev_cert,
        backend,
        tls_cert_file=str(dev_cert.cert_file),
        tls_key_file=str(dev_cert.key_file),
    )
    serve(config)
    url = url_from_settings(load_settings(config))
    assert url.startswith("https://127.0.0.1:")
    listed = rows(ok(await edgeauth("consumers", "list", "-c", str(config))))
    assert "ClientApp" in {row["USERNAME"] for row in listed}
    # an --admin-url is verified by host name too (the development certificate has localhost)
    by_name = url.replace("127.0.0.1", "localhost")
    ok(await edgeauth("consumers", "list", "-c", str(config), "--admin-url", by_name))
    one_line_error(
        await edgeauth("consumers", "list", "-c", str(config), "--admin-url", "http" + url[5:]),
        EX_UNAVAILABLE,
        "https listener reached over http?",
    )
    # a configuration naming another certificate does not trust this listener
    other = tls.generate_dev_certificate(tmp_path / "other")
    wrong = write_config(
        tmp_path / "other",
        other,
        [events_service(backend)],
        tables={
            "admin": {
                "listen": url.removeprefix("https://"),
                "token_file": str(tmp_path / "admin.token"),
                "tls_cert_file": str(other.cert_file),
                "tls_key_file": str(other.key_file),
            }
        },
    )
    one_line_error(
        await edgeauth("consumers", "list", "-c", str(wrong)),
        EX_UNAVAILABLE,
        "certificate verification failed",
    )


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("0.0.0.0:8001", "https://127.0.0.1:8001"),
        ("[::]:8001", "https://[::1]:8001"),
        ("[::1]:9001", "https://[::1]:9001"),
    ],
)
def test_wildcard_admin_listen_is_reached_on_loopback(
    tmp_path: Path, dev_cert: tls.DevCertificate, listen: str, url: str
) -> None:
    config = write_config(
        tmp_path,
        dev_cert,
        [{"name": "s", "url": "http://127.0.0.1:9/", "routes": [{"name": "r", "paths": ["/"]}]}],
        tables={
            "admin": {
                "listen": listen,
                "allow_remote": True,
                "tls_cert_file": str(dev_cert.cert_file),
                "tls_key_file": str(dev_cert.key_file),
            }
        },
    )
    assert url_from_settings(load_settings(config)) == url
