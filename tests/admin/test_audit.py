"""The admin audit log: one JSON line per admin write (any outcome) and per refused admin
authentication (any method); never a body, a query string, a secret or a token value; not
filtered by log.level; a file reopened on SIGUSR1.

In-process gateways write to a real file; `edgeauth serve` runs as a process where the
destination is stderr or where logrotate's signal matters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from edgeauth import __version__, crypto, tls
from edgeauth.exchange import CLIP_CHARS
from tests.admin.conftest import Reply, call
from tests.conftest import (
    Backend,
    GatewayFactory,
    RunningGateway,
    ServeProcess,
    free_port_refused,
    service,
    write_config,
)
from tests.oauth.conftest import events_service

FIELDS = {
    "ts",
    "level",
    "logger",
    "msg",
    "pid",
    "peer",
    "method",
    "path",
    "entity",
    "entity_id",
    "status",
    "outcome",
    "user_agent",
    "client",
}
SECRET = "audit-secret-" + "q" * 30
TOKEN = "audit-token-" + "v" * 32
WRONG = "not-the-admin-token-" + "w" * 20


def _parse(raw: bytes) -> list[dict[str, Any]]:
    lines = []
    for line in filter(bytes.strip, raw.splitlines()):
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise AssertionError(f"not a JSON line: {line!r}\n{raw.decode()}") from exc
    return lines


@dataclass
class Audited:
    gw: RunningGateway
    http: aiohttp.ClientSession  # admin token attached
    path: Path
    seen: int = 0

    async def admin(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await call(self.http, method, self.gw.admin_url + path, **kwargs)

    def raw(self) -> bytes:
        return self.path.read_bytes() if self.path.exists() else b""

    def new_lines(self) -> list[dict[str, Any]]:
        """The lines written since the last call: written before the answer, so already there."""
        lines = _parse(self.raw())
        fresh, self.seen = lines[self.seen :], len(lines)
        return fresh

    def one_line(self) -> dict[str, Any]:
        fresh = self.new_lines()
        assert len(fresh) == 1, fresh
        assert set(fresh[0]) == FIELDS, fresh[0]
        return fresh[0]


@pytest.fixture
async def audited(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path
) -> AsyncIterator[Audited]:
    path = tmp_path / "audit.log"
    gw = await gateway([events_service(backend)], tables={"log": {"audit_log": str(path)}})
    async with aiohttp.ClientSession(headers=gw.admin_headers) as http:
        yield Audited(gw, http, path)


def _is(line: dict[str, Any], **expected: Any) -> None:
    assert {k: line[k] for k in expected} == expected, line


def _label(text: str) -> str:
    return "sha256:" + crypto.digest(text).hex()[:16]


async def test_consumer_and_application_writes_one_line_each_without_secrets(
    audited: Audited,
) -> None:
    made = await audited.admin("POST", "/consumers?custom_id=ignored", json={"username": "ann"})
    assert made.status == 201, made.text
    line = audited.one_line()
    _is(line, msg="admin write", logger="edgeauth.audit", level="info", method="POST")
    _is(line, path="/consumers", entity="consumer", entity_id=made.body["id"], status=201)
    _is(line, outcome="ok", peer="127.0.0.1", client="other")
    assert line["user_agent"].startswith("Python/")  # aiohttp's own
    when = dt.datetime.fromisoformat(line["ts"])
    assert line["ts"].endswith("Z")
    assert when.utcoffset() == dt.timedelta(0)
    assert (audited.path.stat().st_mode & 0o777) == 0o640

    patched = await audited.admin("PATCH", "/consumers/ann", json={"custom_id": "c-1"})
    assert patched.status == 200, patched.text
    _is(audited.one_line(), method="PATCH", path="/consumers/ann", entity_id="ann", status=200)

    body = {"name": "App", "client_id": "ann-app", "client_secret": SECRET}
    app = await audited.admin("POST", "/default/consumers/ann/oauth2", json=body)
    assert app.status == 201, app.text
    assert app.body["client_secret"] == SECRET  # shown once to the caller, never logged
    line = audited.one_line()
    _is(line, path="/default/consumers/ann/oauth2", entity="oauth2_credential")
    _is(line, entity_id=app.body["id"], status=201, outcome="ok")

    renamed = await audited.admin("PATCH", "/oauth2/ann-app", json={"client_secret": SECRET * 2})
    assert renamed.status == 200, renamed.text
    _is(audited.one_line(), path="/oauth2/ann-app", entity="oauth2_credential", entity_id="ann-app")

    gone = await audited.admin("DELETE", "/consumers/ann/oauth2/ann-app")
    assert gone.status == 204
    line = audited.one_line()
    _is(line, method="DELETE", entity="oauth2_credential", entity_id="ann-app", status=204)

    assert (await audited.admin("DELETE", f"/consumers/{made.body['id']}")).status == 204
    _is(audited.one_line(), entity="consumer", entity_id=made.body["id"], status=204)
    raw = audited.raw()
    assert SECRET.encode() not in raw
    assert b"client_secret" not in raw
    assert b"custom_id" not in raw  # neither the body nor the query string


async def test_token_values_never_appear_only_ids_or_digests(audited: Audited) -> None:
    assert (await audited.admin("POST", "/consumers", json={"username": "bo"})).status == 201
    app = await audited.admin("POST", "/consumers/bo/oauth2", json={"name": "A", "client_id": "a"})
    body = {"credential": "a", "service": "events", "access_token": TOKEN, "expires_in": 600}
    made = await audited.admin("POST", "/oauth2_tokens", json=body)
    assert app.status == made.status == 201, made.text
    token_id = made.body["id"]
    audited.new_lines()

    patched = await audited.admin("PATCH", f"/oauth2_tokens/{TOKEN}", json={"scope": "read"})
    assert patched.status == 200, patched.text
    line = audited.one_line()
    _is(line, path=f"/oauth2_tokens/{token_id}", entity="oauth2_token", entity_id=token_id)

    revoked = await audited.admin("DELETE", f"/default/oauth2_tokens/{TOKEN}")
    assert revoked.status == 204
    line = audited.one_line()
    _is(line, path=f"/default/oauth2_tokens/{token_id}", entity_id=token_id, outcome="ok")

    unknown = "never-issued-" + "u" * 30  # Kong's 204 for a token that does not exist
    assert (await audited.admin("DELETE", f"/oauth2_tokens/{unknown}")).status == 204
    label = _label(unknown)
    _is(audited.one_line(), path=f"/oauth2_tokens/{label}", entity_id=label)

    missing = await audited.admin("PATCH", f"/oauth2_tokens/{unknown}", json={"scope": "read"})
    assert missing.status == 404
    _is(audited.one_line(), entity_id=label, status=404, outcome="error")

    stray = await audited.admin("POST", f"/oauth2_tokens/{TOKEN}/x")  # no such route
    assert stray.status in (404, 405)
    line = audited.one_line()
    assert line["path"].startswith("/oauth2_tokens/sha256:"), line
    assert TOKEN.encode() not in audited.raw()
    assert TOKEN[:12].encode() not in audited.raw()


async def test_failed_writes_are_logged_with_their_status(audited: Audited) -> None:
    bad = await audited.admin("POST", "/consumers", json={"username": 5})
    assert bad.status == 400
    _is(audited.one_line(), entity="consumer", entity_id=None, status=400, outcome="error")

    missing = await audited.admin("PATCH", "/consumers/nobody", json={"custom_id": "x"})
    assert missing.status == 404  # a key that names nothing may be anything: its digest
    line = audited.one_line()
    _is(line, entity="consumer", entity_id=_label("nobody"), status=404, outcome="error")
    _is(line, path=f"/consumers/{_label('nobody')}")

    assert (await audited.admin("POST", "/consumers", json={"username": "dup"})).status == 201
    audited.new_lines()
    clash = await audited.admin("POST", "/consumers", json={"username": "dup"})
    assert clash.status == 409
    _is(audited.one_line(), entity="consumer", status=409, outcome="error")

    declared = await audited.admin("DELETE", "/services/events")
    assert declared.status == 405
    _is(audited.one_line(), entity="service", entity_id=_label("events"), status=405)

    off = await audited.admin("POST", "/config", data=b"x = 1")
    assert off.status == 403
    _is(audited.one_line(), entity="config", entity_id=None, status=403, outcome="error")

    nowhere = await audited.admin("PUT", "/nothing/here")
    assert nowhere.status in (404, 405)
    _is(audited.one_line(), path=f"/{_label('nothing/here')}", entity=None, outcome="error")


async def test_refused_authentication_is_logged_for_every_method(audited: Audited) -> None:
    url = audited.gw.admin_url
    async with aiohttp.ClientSession() as anonymous:
        none = await call(anonymous, "GET", url + "/consumers?size=1")
        wrong = await call(
            anonymous,
            "DELETE",
            url + f"/oauth2_tokens/{TOKEN}",
            headers={"Kong-Admin-Token": WRONG},
        )
        bearer = await call(
            anonymous, "HEAD", url + "/status", headers={"Authorization": f"Bearer {WRONG}"}
        )
    assert none.status == wrong.status == bearer.status == 401
    lines = audited.new_lines()
    assert len(lines) == 3, lines
    for line in lines:
        _is(line, msg="admin authentication refused", status=401, outcome="refused")
    _is(lines[0], method="GET", path="/consumers", entity="consumer", entity_id=None)
    label = _label(TOKEN)
    _is(lines[1], method="DELETE", path=f"/oauth2_tokens/{label}", entity_id=label)
    _is(lines[2], method="HEAD", path="/status", entity=None)
    raw = audited.raw()
    assert WRONG.encode() not in raw
    assert TOKEN.encode() not in raw
    assert audited.gw.admin_token.encode() not in raw


async def _raw(gw: RunningGateway, method: str, target: str, *headers: bytes) -> int:
    """One request with its target exactly as written (no client normalises it): the status."""
    port = int(gw.admin_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n".encode()
    writer.write(head + b"".join(h + b"\r\n" for h in headers) + b"\r\n")
    answer = await reader.read()
    writer.close()
    return int(answer.split(b" ", 2)[1])


def _bearer(token: str) -> bytes:
    return f"Authorization: Bearer {token}".encode()


async def test_what_a_malformed_or_refused_path_holds_never_appears_in_clear(
    audited: Audited,
) -> None:
    """Tokens and secrets land in paths by mistake (wrong case, an encoded slash, a typo) or
    on purpose: whatever the path, authenticated or not, none of its text is logged as sent."""
    good, bad = _bearer(audited.gw.admin_token), _bearer(WRONG)
    assert (await audited.admin("POST", "/consumers", json={"username": "ann"})).status == 201
    audited.new_lines()
    sent = [
        ("DELETE", "/OAUTH2_TOKENS/SECRET5", good, 404),
        ("GET", "/oauth2_tokens%2FSECRET2", bad, 401),
        ("DELETE", "/oauth2_tokens;SECRET3", bad, 401),
        ("DELETE", "/oauth2_token/SECRET4", good, 404),
    ]
    for method, target, auth, status in sent:
        assert await _raw(audited.gw, method, target, auth) == status, target
    lines = audited.new_lines()
    assert [line["path"] for line in lines] == [
        f"/{_label('OAUTH2_TOKENS/SECRET5')}",
        f"/{_label('oauth2_tokens%2FSECRET2')}",
        f"/{_label('oauth2_tokens;SECRET3')}",
        f"/{_label('oauth2_token/SECRET4')}",
    ]
    value = secrets.token_urlsafe(30)
    assert len(value) == 40
    positions = [
        "/OAUTH2_TOKENS/{v}",
        "/oauth2_tokens%2F{v}",
        "/oauth2_tokens;{v}",
        "/oauth2_token/{v}",
        "/default/oauth2_tokens/{v}/x",
        "/{v}",
        "/consumers/{v}",  # Kong's DELETE answers 204 for a consumer that does not exist
        "/consumers/{v}/oauth2",
        "/consumers/ann/oauth2/{v}",
        "/oauth2/{v}",
        "/consumers?custom_id={v}",
    ]
    requests = [
        (method, position.format(v=value), auth)
        for position in positions
        for method in ("DELETE", "POST", "PATCH")
        for auth in (good, bad)
    ]
    for method, target, auth in requests:
        await _raw(audited.gw, method, target, auth)
    lines = audited.new_lines()
    assert len(lines) == len(requests), lines
    raw = audited.raw()
    for text in (value, value[:12], value[-12:], "SECRET"):
        assert text.encode() not in raw, text
    deleted = [x for x in lines if x["method"] == "DELETE" and x["entity"] == "consumer"]
    assert {(x["path"], x["status"]) for x in deleted} == {
        (f"/consumers/{_label(value)}", 204),
        (f"/consumers/{_label(value)}", 401),
    }, deleted
    assert (await _raw(audited.gw, "DELETE", "/default/consumers/ann", good)) == 204
    _is(audited.one_line(), path="/default/consumers/ann", entity_id="ann", status=204)


async def test_every_field_is_bounded_whatever_the_request_holds(audited: Audited) -> None:
    """A refused request writes a line without authenticating: its size must not be the
    sender's choice, and every line stays far below PIPE_BUF (4096 bytes, audit.py)."""
    good, bad = _bearer(audited.gw.admin_token), _bearer(WRONG)
    agent = b"User-Agent: \xff\xfe" + b"a" * 6000
    known = "/consumers" * 600
    name = "\u00e9" * 250  # at most 255 (the schema)
    assert await _raw(audited.gw, "GET", "/consumers/" + "n" * 6000, bad, agent) == 401
    assert await _raw(audited.gw, "DELETE", known, bad, agent) == 401
    assert await _raw(audited.gw, "DELETE", "/x" * 3000, good, agent) == 404
    assert (await audited.admin("PUT", f"/consumers/{name}", json={})).status == 200
    lines = audited.new_lines()
    assert len(lines) == 4, lines
    assert lines[1]["path"] == known[:CLIP_CHARS] + "…"
    assert lines[3]["entity_id"] == name[:CLIP_CHARS] + "…"
    for line in lines[:3]:
        assert line["user_agent"] == ("\\udcff\\udcfe" + "a" * 200)[:CLIP_CHARS] + "…"
    for line in lines:
        assert len(line["path"]) <= CLIP_CHARS + 1, line
    for text in audited.raw().splitlines():
        assert len(text) < 2048, text


async def test_a_write_the_client_abandons_is_logged_as_499(audited: Audited) -> None:
    port = int(audited.gw.admin_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /consumers HTTP/1.1\r\nHost: admin\r\nExpect: 100-continue\r\n"
        f"Authorization: Bearer {audited.gw.admin_token}\r\nContent-Length: 100\r\n\r\n"
    )
    writer.write(head.encode())
    assert (await reader.readline()).startswith(b"HTTP/1.1 100")  # the handler is running
    writer.write(b'{"username": "half')
    await writer.drain()
    writer.close()
    lines: list[dict[str, Any]] = []
    for _ in range(100):  # the server notices the close on its next loop turns
        if lines := audited.new_lines():
            break
        await asyncio.sleep(0.02)
    assert len(lines) == 1, lines
    _is(lines[0], method="POST", entity="consumer", status=499, outcome="error")
    assert (await audited.admin("GET", "/consumers/half")).status == 404


async def test_reads_are_not_logged(audited: Audited) -> None:
    for path in ("/consumers", "/oauth2_tokens", "/status", "/services/events", "/nowhere"):
        assert (await audited.admin("GET", path)).status in (200, 404)
    assert audited.raw() == b""


async def test_cli_calls_show_as_the_cli(audited: Audited) -> None:
    gw = audited.gw
    result = await asyncio.to_thread(_add, gw.admin_url, gw.admin_token, "cli-made")
    assert result.returncode == 0, result
    line = next(x for x in audited.new_lines() if x["method"] == "POST")
    _is(line, path="/consumers", entity="consumer", status=201, outcome="ok", client="cli")
    assert line["user_agent"] == f"edgeauth-cli/{__version__}"


async def test_off_writes_nothing_anywhere(
    backend: Backend, gateway: GatewayFactory, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    gw = await gateway([events_service(backend)], tables={"log": {"audit_log": "off"}})
    async with aiohttp.ClientSession(headers=gw.admin_headers) as http:
        made = await call(http, "POST", gw.admin_url + "/consumers", json={"username": "quiet"})
        assert made.status == 201
    async with aiohttp.ClientSession() as anonymous:
        assert (await call(anonymous, "DELETE", gw.admin_url + "/consumers/quiet")).status == 401
    captured = capfd.readouterr()
    assert "edgeauth.audit" not in captured.err + captured.out
    assert _files_holding(tmp_path, b"edgeauth.audit") == []


def _files_holding(directory: Path, text: bytes) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and text in p.read_bytes()]


def _add(admin_url: str, token: str, name: str) -> subprocess.CompletedProcess[str]:
    """`edgeauth consumers add` as an operator runs it, the token on stdin."""
    cli = str(Path(sys.executable).parent / "edgeauth")
    target = ["--admin-url", admin_url, "--admin-token-file", "-"]
    return subprocess.run(
        [cli, "consumers", "add", name, *target],
        input=token,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- edgeauth serve ---------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(30)
    yield sock
    sock.close()


def _config(tmp_path: Path, cert: tls.DevCertificate, admin: str, **log: str) -> Path:
    """One worker, so that one SIGUSR1 reopens every open audit file; the upstream is never
    called."""
    upstream = f"http://127.0.0.1:{free_port_refused()}"
    tables: dict[str, dict[str, Any]] = {
        "log": log,
        "admin": {"listen": admin},
        "status": {"listen": "127.0.0.1:0"},
    }
    return write_config(
        tmp_path, cert, [service("tools", upstream, ["/tools"])], tables=tables, workers=1
    )


def _await_ready(sock: socket.socket) -> bool:
    """True once the supervisor sends READY=1 (sd_notify), False if nothing says so in time."""
    while True:
        try:
            if b"READY=1" in sock.recv(4096):
                return True
        except TimeoutError:
            return False


def test_stderr_lines_ignore_the_process_log_level(
    tmp_path: Path, dev_cert: tls.DevCertificate, notify_socket: socket.socket
) -> None:
    admin = f"127.0.0.1:{free_port_refused()}"  # at level "error" no "ready" line names it
    config = _config(tmp_path, dev_cert, admin, level="error", audit_log="stderr")
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeauth", "serve", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
            cwd=tmp_path,
        )
    try:
        assert _await_ready(notify_socket), f"exit {proc.poll()}: {stderr.read_text()}"
        token = (tmp_path / "admin.token").read_text().strip()
        result = _add(f"http://{admin}", token, "from-cli")
        assert result.returncode == 0, (result, stderr.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = stderr.read_text()
    assert code == 0, text
    lines = _parse(text.encode())
    audit = [line for line in lines if line["logger"] == "edgeauth.audit"]
    assert len(audit) == 1, text
    _is(audit[0], msg="admin write", level="info", path="/consumers", status=201, client="cli")
    assert [line for line in lines if line["level"] == "info"] == audit, text  # no "ready"


def _post_consumer(admin_url: str, token: str, name: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - the test's own http URL
        admin_url + "/consumers",
        data=orjson.dumps({"username": name}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return int(response.status)


def test_sigusr1_reopens_a_rotated_audit_file(
    tmp_path: Path, dev_cert: tls.DevCertificate, serve: Callable[..., ServeProcess]
) -> None:
    path = tmp_path / "audit.log"
    gw = serve(_config(tmp_path, dev_cert, "127.0.0.1:0", audit_log=str(path)))
    admin_url = next(e for e in gw.log if e.get("msg") == "ready")["admin"][0]
    token = (tmp_path / "admin.token").read_text().strip()
    assert _post_consumer(admin_url, token, "before") == 201
    os.rename(path, tmp_path / "audit.log.1")
    gw.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:  # the worker creates it anew
        time.sleep(0.05)
    assert path.exists(), gw.log
    assert _post_consumer(admin_url, token, "after") == 201
    rotated = _parse((tmp_path / "audit.log.1").read_bytes())
    fresh = _parse(path.read_bytes())
    assert [line["entity"] for line in rotated + fresh] == ["consumer", "consumer"]
    assert len(rotated) == len(fresh) == 1
    assert (path.stat().st_mode & 0o777) == 0o640
    assert gw.proc.poll() is None
