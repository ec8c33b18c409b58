"""What the OAuth endpoints tell an operator (issue 15): honest access-log lines and metrics.

Over real TLS against an in-process gateway: every answered request is logged and counted
with the status the client saw (never 0); the token, authorization, revocation and
introspection lines carry the claimed client_id, the grant_type, the OAuth error and the real
body sizes, with client text clipped and no secret, token or code; every issued token and
every OAuth error answer is counted once, under labels from fixed sets.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import pkgutil
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import orjson
import pytest

import edgeauth
from edgeauth import errors
from edgeauth.config.schema import OAuth2Settings
from edgeauth.exchange import CLIP_CHARS
from edgeauth.metrics import Recorder, exposition
from edgeauth.oauth.grants import build_grants
from edgeauth.oauth.policy import Policy
from edgeauth.oauth.routes import metadata
from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import PROVISION_KEY, SECRET, consumers, events_service

WELL_KNOWN = "/.well-known/oauth-authorization-server"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WRONG_SECRET = "wrong-secret-7c1e9a"
USERID = "user-4711"
FAMILIES = ("edgeauth_oauth_tokens_issued_total", "edgeauth_oauth_errors_total")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Seen:
    """One exchange as the client saw it."""

    status: int
    sent: bytes
    received: bytes

    def json(self) -> dict[str, Any]:
        body = orjson.loads(self.received)
        assert isinstance(body, dict)
        return body


@pytest.fixture
async def gw(backend: Backend, gateway: GatewayFactory, tmp_path: Path) -> RunningGateway:
    """The walkthrough's events service with every grant enabled."""
    events = events_service(backend, enable_authorization_code=True, enable_implicit_grant=True)
    return await gateway([events], consumers=consumers(tmp_path))


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def call(
    client: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> Seen:
    """One request with a body of known bytes; the body received exactly as sent."""
    sent = urlencode(params).encode() if params is not None else b""
    all_headers = {**FORM, **(headers or {})} if params is not None else dict(headers or {})
    async with client.request(method, url, data=sent or None, headers=all_headers) as resp:
        return Seen(resp.status, sent, await resp.read())


async def log_lines(gw: RunningGateway, count: int) -> list[dict[str, Any]]:
    """The first `count` access-log lines, once the writer thread has written them."""
    for _ in range(200):
        entries = gw.access_log()
        if len(entries) >= count:
            return entries
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} access-log lines expected, found {len(gw.access_log())}")


async def metrics(client: aiohttp.ClientSession, gw: RunningGateway) -> list[str]:
    """The admin API's /metrics lines after this worker's tallies were flushed."""
    gw.gateway.metrics.flush()
    async with client.get(f"{gw.admin_url}/metrics", headers=gw.admin_headers) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.text()).splitlines()


def samples(lines: list[str], family: str, service: str) -> dict[tuple[str, ...], float]:
    """The family's samples of `service`: its other labels' values, by label name → value."""
    found: dict[tuple[str, ...], float] = {}
    for line in lines:
        match = SAMPLE.match(line)
        if match is None or match[1] != family:
            continue
        labels = dict(LABEL.findall(match[2] or ""))
        if labels.pop("service", None) == service:
            found[tuple(labels[name] for name in sorted(labels))] = float(match[3])
    return found


def delta(
    before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]
) -> dict[tuple[str, ...], float]:
    changed = {key: value - before.get(key, 0.0) for key, value in after.items()}
    return {key: value for key, value in changed.items() if value}


def password(**extra: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "provision_key": PROVISION_KEY,
        "authenticated_userid": USERID,
        **extra,
    }


def authorize_params(response_type: str, **extra: str) -> dict[str, str]:
    return {
        "provision_key": PROVISION_KEY,
        "authenticated_userid": USERID,
        "client_id": "clientid",
        "response_type": response_type,
        **extra,
    }


def code_of(seen: Seen) -> str:
    assert seen.status == 200, seen.received
    uri: str = seen.json()["redirect_uri"]
    return dict(parse_qsl(urlsplit(uri).query))["code"]


async def test_every_answer_is_logged_and_counted_with_the_status_the_client_saw(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    base = f"{gw.url}/events"
    token = f"{base}/oauth2/token"
    me = basic("clientid", SECRET)
    before = await metrics(client, gw)
    issued = await call(client, token, password(), headers=me)
    access = issued.json()["access_token"]
    seen = [
        issued,
        await call(client, f"{gw.url}{WELL_KNOWN}/events", method="GET"),
        await call(client, f"{gw.url}{WELL_KNOWN}/events", method="HEAD"),
        await call(client, f"{gw.url}{WELL_KNOWN}/nowhere", method="GET"),
        await call(client, f"{gw.url}/nowhere", method="GET"),
        await call(client, token, method="GET"),
        await call(client, token, {"grant_type": "client_credentials"}, headers=me),
        await call(client, token, password(), headers=basic("clientid", WRONG_SECRET)),
        await call(client, f"{base}/oauth2/authorize", authorize_params("code")),
        await call(client, f"{base}/oauth2/authorize", authorize_params("token")),
        await call(client, f"{base}/oauth2/authorize", authorize_params("bogus")),
        await call(client, f"{base}/oauth2/introspect", {"token": access}, headers=me),
        await call(client, f"{base}/oauth2/introspect", {}, headers=me),
        await call(client, f"{base}/oauth2/revoke", {"token": access}, headers=me),
        await call(client, f"{base}/echo", method="GET", headers={"Authorization": "Bearer x"}),
    ]
    statuses = [s.status for s in seen]
    assert statuses == [200, 200, 200, 404, 404, 405, 200, 401, 200, 200, 400, 200, 400, 200, 401]
    entries = await log_lines(gw, len(seen))
    assert [e["status"] for e in entries] == statuses
    assert [e["bytes_out"] for e in entries] == [len(s.received) for s in seen]
    assert entries[2]["method"] == "HEAD"
    assert entries[2]["bytes_out"] == 0
    assert (entries[1]["service"], entries[1]["route"]) == ("events", "events-route")
    after = await metrics(client, gw)
    assert not [line for line in after if 'code="0"' in line]
    family = "edgeauth_http_requests_total"
    for service, counted in (
        ("events", {"200": 8, "405": 1, "401": 2, "400": 2}),
        ("", {"404": 2}),
    ):
        expected = {
            (code, "", "events-route" if service else "", "edgeauth"): n
            for code, n in counted.items()
        }
        assert delta(samples(before, family, service), samples(after, family, service)) == expected


async def test_token_lines_carry_client_grant_and_real_sizes(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    token = f"{gw.url}/events/oauth2/token"
    ok = await call(client, token, password(scope="read"), headers=basic("clientid", SECRET))
    assert ok.status == 200, ok.received
    body = ok.json()
    refreshed = await call(
        client,
        token,
        {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "clientid",
            "client_secret": SECRET,
        },
    )
    assert refreshed.status == 200, refreshed.received
    entries = await log_lines(gw, 2)
    for entry, seen, grant in zip(
        entries, (ok, refreshed), ("password", "refresh_token"), strict=True
    ):
        assert entry["client_id"] == "clientid"
        assert entry["grant_type"] == grant
        assert "error" not in entry
        assert entry["bytes_in"] == len(seen.sent) > 0
        assert entry["bytes_out"] == len(seen.received) > 0
    text = (gw.directory / "access.log").read_text()
    for secret in (SECRET, body["access_token"], body["refresh_token"], PROVISION_KEY):
        assert secret not in text


async def test_invalid_client_lines_name_the_client_and_error_never_the_secret(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    base = f"{gw.url}/events/oauth2"
    long_id = "id-" + "x" * 10_000
    seen = [
        await call(client, f"{base}/token", password(), headers=basic("clientid", WRONG_SECRET)),
        await call(client, f"{base}/token", password(client_id="nobody", client_secret=SECRET)),
        await call(client, f"{base}/revoke", {"token": "t"}, headers=basic("clientid", "nope")),
        await call(client, f"{base}/introspect", {"token": "t", "client_id": long_id}),
        # Basic without a colon: what it holds may be a secret, so no client_id is logged
        await call(
            client,
            f"{base}/token",
            password(),
            headers={"Authorization": "Basic " + base64.b64encode(b"lonesecret").decode()},
        ),
    ]
    assert [s.status for s in seen] == [401, 400, 401, 400, 401]
    assert all(s.json()["error"] == "invalid_client" for s in seen)
    entries = await log_lines(gw, len(seen))
    assert [e["error"] for e in entries] == ["invalid_client"] * len(seen)
    assert [e["client_id"] for e in entries[:3]] == ["clientid", "nobody", "clientid"]
    assert entries[3]["client_id"] == long_id[:CLIP_CHARS] + "…"
    assert entries[4]["client_id"] is None
    assert [e.get("grant_type") for e in entries] == [
        "password",
        "password",
        None,
        None,
        "password",
    ]
    assert [e["bytes_in"] for e in entries] == [len(s.sent) for s in seen]
    text = (gw.directory / "access.log").read_text()
    for secret in (WRONG_SECRET, SECRET, "nope", "lonesecret", long_id):
        assert secret not in text


async def test_authorize_revoke_introspect_lines(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    base = f"{gw.url}/events/oauth2"
    me = basic("clientid", SECRET)
    coded = await call(client, f"{base}/authorize", authorize_params("code"))
    code = code_of(coded)
    refused = await call(
        client, f"{base}/authorize", authorize_params("code", provision_key="pk-wrong")
    )
    missing = await call(client, f"{base}/introspect", {}, headers=me)
    revoked = await call(client, f"{base}/revoke", {"token": "unknown"}, headers=me)
    assert [refused.status, missing.status, revoked.status] == [400, 400, 200]
    entries = await log_lines(gw, 4)
    assert [(e["client_id"], e.get("error")) for e in entries] == [
        ("clientid", None),
        ("clientid", "invalid_provision_key"),
        ("clientid", "invalid_request"),
        ("clientid", None),
    ]
    assert not [e for e in entries if "grant_type" in e]
    seen = [coded, refused, missing, revoked]
    assert [e["bytes_in"] for e in entries] == [len(s.sent) for s in seen]
    assert [e["bytes_out"] for e in entries] == [len(s.received) for s in seen]
    text = (gw.directory / "access.log").read_text()
    assert code not in text
    assert PROVISION_KEY not in text


async def test_a_huge_unsupported_grant_type_is_clipped_in_the_log_and_fixed_in_metrics(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    huge = "urn:example:" + "g" * 10_000
    before = await metrics(client, gw)
    seen = await call(
        client,
        f"{gw.url}/events/oauth2/token",
        {"grant_type": huge},
        headers=basic("clientid", SECRET),
    )
    assert (seen.status, seen.json()["error"]) == (400, "unsupported_grant_type")
    (entry,) = await log_lines(gw, 1)
    assert entry["grant_type"] == huge[:CLIP_CHARS] + "…"
    assert entry["error"] == "unsupported_grant_type"
    assert entry["bytes_in"] == len(seen.sent) > 10_000
    assert huge not in (gw.directory / "access.log").read_text()
    after = await metrics(client, gw)
    assert not [line for line in after if "g" * 100 in line]
    errors_ = delta(*(samples(m, FAMILIES[1], "events") for m in (before, after)))
    assert errors_ == {("token", "unsupported_grant_type"): 1}
    assert delta(*(samples(m, FAMILIES[0], "events") for m in (before, after))) == {}


def test_labels_outside_the_fixed_sets_count_as_other() -> None:
    """Whatever a caller passes, a client's text never becomes a label value."""
    recorder = Recorder(enabled=True, per_consumer=False)
    service = "observability-labels"
    recorder.issued(service, "urn:example:" + "g" * 10_000)
    recorder.issued(service, "password")
    recorder.oauth_error(service, "token" + "x" * 100, "invalid_" + "y" * 100)
    recorder.oauth_error(service, "revoke", "invalid_client")
    recorder.flush()
    lines = exposition([]).decode().splitlines()
    assert samples(lines, FAMILIES[0], service) == {("other",): 1, ("password",): 1}
    assert samples(lines, FAMILIES[1], service) == {
        ("other", "other"): 1,
        ("revoke", "invalid_client"): 1,
    }


def test_every_oauth_error_code_has_its_own_label() -> None:
    """errors.OAUTH_ERROR_CODES is computed when errors.py is imported: an OAuthError
    subclass defined in another module would be missing and count as "other". Every module
    imported, the whole hierarchy must still be labelled."""
    for module in pkgutil.walk_packages(edgeauth.__path__, "edgeauth."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)

    def subclasses(cls: type[errors.OAuthError]) -> set[type[errors.OAuthError]]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(sub) for sub in found))

    codes = {cls.error for cls in subclasses(errors.OAuthError)} | {errors.OAuthError.error}
    assert codes == Recorder.ERROR_LABELS
    assert len(codes) > 10  # the hierarchy was found at all


def test_every_grant_a_token_is_issued_by_has_its_own_label() -> None:
    """The token endpoint's grants (plus implicit) and the metadata document of a service
    with every grant on name exactly the grant labels (all from grants.GRANTS)."""
    everything = OAuth2Settings(
        enable_authorization_code=True,
        enable_client_credentials=True,
        enable_password_grant=True,
        enable_implicit_grant=True,
    )
    policy = Policy("labels", everything, "key")
    issued = {*build_grants(policy), "implicit"}  # implicit: the authorization endpoint's
    advertised = set(metadata(policy, "https://issuer.test")["grant_types_supported"])
    assert issued == advertised == Recorder.GRANT_LABELS


async def test_issued_and_error_counters_count_each_answer_once(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    base = f"{gw.url}/events/oauth2"
    me = basic("clientid", SECRET)
    before = await metrics(client, gw)
    tokens = (await call(client, f"{base}/token", password(), headers=me)).json()
    await call(client, f"{base}/token", {"grant_type": "client_credentials"}, headers=me)
    code = code_of(await call(client, f"{base}/authorize", authorize_params("code")))
    exchanged = await call(
        client, f"{base}/token", {"grant_type": "authorization_code", "code": code}, headers=me
    )
    assert exchanged.status == 200, exchanged.received
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert (await call(client, f"{base}/token", refresh, headers=me)).status == 200
    assert (await call(client, f"{base}/authorize", authorize_params("token"))).status == 200
    refusals = [
        await call(client, f"{base}/token", password(), headers=basic("clientid", "bad")),
        await call(client, f"{base}/token", {"grant_type": "device_code"}, headers=me),
        await call(client, f"{base}/token", refresh, headers=me),  # rotated away: invalid_grant
        await call(client, f"{base}/token", method="GET"),
        await call(client, f"{base}/authorize", authorize_params("code", provision_key="pk-x")),
        await call(client, f"{base}/authorize", authorize_params("bogus")),
        await call(client, f"{base}/revoke", {"token": "t"}, headers=basic("nobody", "x")),
        await call(client, f"{base}/introspect", {}, headers=me),
    ]
    assert [s.status for s in refusals] == [401, 400, 400, 405, 400, 400, 401, 400]
    after = await metrics(client, gw)
    issued = delta(*(samples(m, FAMILIES[0], "events") for m in (before, after)))
    assert issued == {
        ("password",): 1,
        ("client_credentials",): 1,
        ("authorization_code",): 1,
        ("refresh_token",): 1,
        ("implicit",): 1,
    }
    refused = delta(*(samples(m, FAMILIES[1], "events") for m in (before, after)))
    assert refused == {
        ("token", "invalid_client"): 1,
        ("token", "unsupported_grant_type"): 1,
        ("token", "invalid_grant"): 1,
        ("token", "invalid_method"): 1,
        ("authorize", "invalid_provision_key"): 1,
        ("authorize", "unsupported_response_type"): 1,
        ("revoke", "invalid_client"): 1,
        ("introspect", "invalid_request"): 1,
    }
