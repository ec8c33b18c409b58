"""Client authentication that cannot be timed or hammered, over real HTTPS (issue 12, point 10).

A sent secret costs one PBKDF2 verification whether or not the client exists (the dummy hash),
so timing does not tell which client_ids exist; failures are throttled per client_id and per
source address, and a throttled request runs no PBKDF2 at all. The PBKDF2 work is observed
through the worker's own tally (`pbkdf2_runs`), never through timings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.conftest import Backend, GatewayFactory, RunningGateway
from tests.oauth.conftest import SECRET, consumers, events_service
from tests.oauth.test_token_endpoint import INVALID_CLIENT, Answer, basic, call

if TYPE_CHECKING:
    from edgeauth.oauth.token_endpoint import ClientAuthenticator

THROTTLED = {
    "error": "invalid_client",
    "error_description": "Too many failed client authentications, retry later",
}
GRANT = {"grant_type": "client_credentials"}
WRONG = "not-the-secret-9f3a"
LIMIT = 3
WINDOW = 60  # Retry-After once throttled: WINDOW / LIMIT seconds


def auth_of(gw: RunningGateway) -> ClientAuthenticator:
    return gw.gateway.c.endpoints["events"].auth


def cc(client_id: str, secret: str | None = WRONG, **extra: str) -> dict[str, str]:
    params = {"grant_type": "client_credentials", "client_id": client_id, **extra}
    if secret is not None:
        params["client_secret"] = secret
    return params


async def start(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, **server: Any
) -> RunningGateway:
    """Small limits, so that the throttle is reached in a few requests."""
    oauth2 = {"max_failed_client_auth": LIMIT, "failed_client_auth_window_seconds": WINDOW}
    return await gateway(
        [events_service(backend, **oauth2)], consumers=consumers(tmp_path), **server
    )


async def token(
    client: aiohttp.ClientSession,
    gw: RunningGateway,
    form: Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    endpoint: str = "token",
) -> Answer:
    return await call(client, f"{gw.url}/events/oauth2/{endpoint}", form=form, headers=headers)


def assert_throttled(answer: Answer, retry_after: int = WINDOW // LIMIT) -> None:
    assert (answer.status, answer.body) == (429, THROTTLED), answer.raw
    assert answer.headers["Retry-After"] == str(retry_after)
    assert "WWW-Authenticate" not in answer.headers


# the dummy hash ---------------------------------------------------------------------------
@pytest.fixture
async def gw(gateway: GatewayFactory, backend: Backend, tmp_path: Path) -> RunningGateway:
    return await gateway([events_service(backend)], consumers=consumers(tmp_path))


@pytest.mark.parametrize(
    ("form", "headers", "runs"),
    [
        pytest.param(cc("clientid"), None, 1, id="known-wrong-secret"),
        pytest.param(cc("nobody"), None, 1, id="unknown"),
        pytest.param(cc("publicclient"), None, 1, id="public-with-secret"),
        # "a%3Ab" form-decodes to "a:b": two candidate secrets, two verifications either way
        pytest.param(GRANT, basic("clientid", "a%3Ab"), 2, id="known-basic-two"),
        pytest.param(GRANT, basic("nobody", "a%3Ab"), 2, id="unknown-basic-two"),
        pytest.param(cc("clientid", None), None, 0, id="known-no-secret"),
        pytest.param(cc("nobody", None), None, 0, id="unknown-no-secret"),
    ],
)
async def test_a_refusal_costs_the_same_whoever_is_asked_about(
    gw: RunningGateway,
    client: aiohttp.ClientSession,
    form: dict[str, str],
    headers: dict[str, str] | None,
    runs: int,
) -> None:
    """Unknown and public clients verify a sent secret against the dummy hash: the same
    PBKDF2 work as a wrong secret for a real client, so no timing tells them apart."""
    before = auth_of(gw).pbkdf2_runs
    answer = await token(client, gw, form, headers)
    assert answer.body == INVALID_CLIENT
    assert answer.status == (401 if headers else 400)
    assert auth_of(gw).pbkdf2_runs - before == runs


async def test_a_right_secret_is_verified_once_then_remembered(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    before = auth_of(gw).pbkdf2_runs
    for _ in range(3):
        answer = await token(client, gw, cc("clientid", SECRET))
        assert answer.status == 200, answer.raw
    assert auth_of(gw).pbkdf2_runs - before == 1


# the throttle -----------------------------------------------------------------------------
async def test_the_throttle_is_on_by_default(
    gw: RunningGateway, client: aiohttp.ClientSession
) -> None:
    for _ in range(10):
        assert (await token(client, gw, cc("clientid"))).body == INVALID_CLIENT
    assert_throttled(await token(client, gw, cc("clientid")), retry_after=6)


async def test_failures_throttle_the_client_id_without_running_pbkdf2(
    gateway: GatewayFactory,
    backend: Backend,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await start(gateway, backend, tmp_path)
    caplog.set_level(logging.WARNING, logger="edgeauth.oauth.token_endpoint")
    for _ in range(LIMIT):
        assert (await token(client, gw, cc("clientid"))).body == INVALID_CLIENT
    before = auth_of(gw).pbkdf2_runs
    assert_throttled(await token(client, gw, cc("clientid")))
    # the right secret too: while throttled nothing is verified, so nothing can be guessed
    assert_throttled(await token(client, gw, cc("clientid", SECRET)))
    answer = await token(client, gw, cc("clientid", state="s-1"))
    assert answer.body == {**THROTTLED, "state": "s-1"}
    assert auth_of(gw).pbkdf2_runs == before
    warnings = [r.getMessage() for r in caplog.records if "throttled" in r.getMessage()]
    assert warnings == [
        "client authentication throttled: client_id 'clientid' failed 3 times in 60s",
        "client authentication throttled: address '127.0.0.1' failed 3 times in 60s",
    ]
    assert not any(WRONG in r.getMessage() or SECRET in r.getMessage() for r in caplog.records)


async def test_concurrent_guesses_are_throttled_before_pbkdf2(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """A guess counts as a failure before its PBKDF2 run starts: a burst sent at once gets no
    more verifications than the limit."""
    gw = await start(gateway, backend, tmp_path)
    before = auth_of(gw).pbkdf2_runs
    answers = await asyncio.gather(*(token(client, gw, cc("clientid")) for _ in range(8)))
    assert sorted(a.status for a in answers) == [400] * LIMIT + [429] * (8 - LIMIT)
    assert auth_of(gw).pbkdf2_runs - before == LIMIT


async def test_a_success_gives_back_what_its_verification_counted(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path)
    for _ in range(LIMIT - 1):
        assert (await token(client, gw, cc("clientid"))).body == INVALID_CLIENT
    assert (await token(client, gw, cc("clientid", SECRET))).status == 200  # verified, not memo
    assert (await token(client, gw, cc("clientid"))).body == INVALID_CLIENT
    assert_throttled(await token(client, gw, cc("clientid", SECRET)))


@pytest.mark.parametrize("endpoint", ["revoke", "introspect"])
async def test_every_endpoint_that_authenticates_clients_counts_and_is_throttled(
    gateway: GatewayFactory,
    backend: Backend,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    endpoint: str,
) -> None:
    gw = await start(gateway, backend, tmp_path)
    wrong = {"client_id": "clientid", "client_secret": WRONG, "token": "t" * 43}
    for _ in range(LIMIT - 1):
        assert (await token(client, gw, wrong, endpoint=endpoint)).body == INVALID_CLIENT
    assert (await token(client, gw, cc("clientid"))).body == INVALID_CLIENT  # the third
    for name in ("token", "revoke", "introspect"):
        assert_throttled(await token(client, gw, wrong, endpoint=name))


async def test_unknown_client_ids_count_against_the_source_address(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """Rotating client_ids (enumeration) is throttled by address; an untrusted peer's
    X-Forwarded-For changes nothing."""
    gw = await start(gateway, backend, tmp_path)
    for n in range(LIMIT):
        xff = {"X-Forwarded-For": f"198.51.100.{n}"}
        assert (await token(client, gw, cc(f"probe-{n}"), xff)).body == INVALID_CLIENT
    before = auth_of(gw).pbkdf2_runs
    assert_throttled(await token(client, gw, cc("probe-x"), {"X-Forwarded-For": "192.0.2.1"}))
    assert_throttled(await token(client, gw, cc("otherclient", "other-secret")))
    assert auth_of(gw).pbkdf2_runs == before


async def test_behind_a_trusted_proxy_the_reported_client_address_counts(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await start(gateway, backend, tmp_path, trusted_proxies=["127.0.0.1/32"])
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    bystander = {"X-Forwarded-For": "198.51.100.20"}
    for n in range(LIMIT):
        assert (await token(client, gw, cc(f"probe-{n}"), attacker)).body == INVALID_CLIENT
    assert_throttled(await token(client, gw, cc("otherclient", "other-secret"), attacker))
    # the proxy's other clients are not locked out by one of them
    answer = await token(client, gw, cc("otherclient", "other-secret"), bystander)
    assert answer.status == 200, answer.raw
    # the client_id is throttled from every address once it failed LIMIT times
    for n in range(LIMIT):
        peer = {"X-Forwarded-For": f"192.0.2.{n}"}
        assert (await token(client, gw, cc("clientid"), peer)).body == INVALID_CLIENT
    assert_throttled(await token(client, gw, cc("clientid", SECRET), bystander))


async def test_a_success_does_not_reset_the_count(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """Otherwise one valid credential would let its holder guess others' secrets freely."""
    gw = await start(gateway, backend, tmp_path)
    for _ in range(LIMIT - 1):
        assert (await token(client, gw, cc("clientid"))).body == INVALID_CLIENT
        assert (await token(client, gw, cc("otherclient", "other-secret"))).status == 200
    assert (await token(client, gw, cc("nobody"))).body == INVALID_CLIENT
    assert_throttled(await token(client, gw, cc("otherclient", "other-secret")))


async def test_the_throttle_can_be_turned_off(
    gateway: GatewayFactory, backend: Backend, tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    gw = await gateway(
        [events_service(backend, max_failed_client_auth=0)], consumers=consumers(tmp_path)
    )
    for _ in range(12):
        assert (await token(client, gw, cc("nobody"))).body == INVALID_CLIENT
    assert (await token(client, gw, cc("clientid", SECRET))).status == 200
