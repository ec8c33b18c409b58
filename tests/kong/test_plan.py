"""The import plan's rules, on Kong data built in memory: what is created, refused, skipped or
not carried, token lifetimes, and the [[services]] Kong's services, routes and plugins become."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edgeauth import crypto
from edgeauth.kong.deck_source import read_deck
from edgeauth.kong.model import (
    KongConsumer,
    KongCredential,
    KongData,
    KongPlugin,
    KongRoute,
    KongService,
    KongToken,
    SourceError,
)
from edgeauth.kong.plan import Existing, Plan, derived_id, make_plan
from edgeauth.models import MANAGED_TAG, ClientType, Consumer, Credential
from tests.kong.kong_db import kong_hash

NOW = 1_800_000_000.0
SERVICE = "11111111-1111-4111-8111-111111111111"
ALICE = "22222222-2222-4222-8222-222222222222"
APP = "33333333-3333-4333-8333-333333333333"


def _data(**changes: Any) -> KongData:
    """One protected service, one consumer with one clear-secret application."""
    base: dict[str, Any] = {
        "source": "test",
        "consumers": (KongConsumer(ALICE, "alice", None, ("kong", MANAGED_TAG), 1_500_000_000),),
        "credentials": (KongCredential(APP, ALICE, "web", "alice-web", "s3cret", False),),
        "services": (KongService(SERVICE, "events", "http", "10.0.0.5", 52773, "/api"),),
        "routes": (KongRoute("r1", "events-api", SERVICE, ("/events",)),),
        "plugins": (KongPlugin("p1", "oauth2", _oauth2(), service=SERVICE),),
    }
    return KongData(**{**base, **changes})


def _oauth2(**config: Any) -> dict[str, Any]:
    return {"provision_key": "pk", "enable_client_credentials": True, **config}


def _token(**changes: Any) -> KongToken:
    fields: dict[str, Any] = {
        "id": "44444444-4444-4444-8444-444444444444",
        "credential_id": APP,
        "service_id": SERVICE,
        "access_token": "a" * 32,
        "refresh_token": "r" * 32,
        "expires_in": 3600,
        "created_at": NOW - 600,
        "ttl": NOW - 600 + 1_209_600,
        "scope": "read",
        "authenticated_userid": "7",
    }
    return KongToken(**{**fields, **changes})


def _plan(data: KongData, existing: Existing | None = None) -> Plan:
    return make_plan(data, existing or Existing(), NOW)


def _services(plan: Plan) -> list[dict[str, Any]]:
    services = tomllib.loads(plan.services_toml).get("services", [])
    assert isinstance(services, list)
    return services


# consumers and applications -----------------------------------------------------------------
def test_a_consumer_keeps_its_kong_id_and_time_and_loses_the_managed_tag() -> None:
    plan = _plan(_data())
    [step] = plan.consumers
    assert step.status == "create"
    assert step.consumer == Consumer(ALICE, "alice", None, ("kong",), 1_500_000_000)
    [app] = plan.credentials
    assert app.status == "create"
    assert app.new is not None
    assert (app.new.id, app.new.consumer_id, app.new.secret_hash) == (APP, ALICE, None)
    assert app.clear_secret == "s3cret"  # hashed when applied, never stored clear


def test_a_username_taken_by_another_id_is_a_conflict_and_its_applications_and_tokens_wait() -> (
    None
):
    taken = Consumer("55555555-5555-4555-8555-555555555555", "alice", None, (), 1)
    plan = _plan(_data(tokens=(_token(),)), Existing(consumers=(taken,)))
    assert [s.status for s in plan.consumers] == ["conflict"]
    assert f"username taken by consumer {taken.id}" in plan.conflicts()[0]
    assert [s.status for s in plan.credentials] == ["skipped"]
    assert plan.tokens.records == ()
    assert plan.tokens.skipped == {"its application is not carried": 1}


def test_a_client_id_taken_by_another_application_is_a_conflict() -> None:
    other = Credential(
        "66666666-6666-4666-8666-666666666666", ALICE, "x", "alice-web", None, (),
        ClientType.PUBLIC, (), 1,
    )  # fmt: skip
    plan = _plan(_data(), Existing(credentials=(other,)))
    assert [s.status for s in plan.credentials] == ["conflict"]
    assert f"client_id taken by application {other.id}" in plan.conflicts()[0]


def test_names_edgeauth_refuses_are_conflicts() -> None:
    uuid_named = KongConsumer(ALICE, "77777777-7777-4777-8777-777777777777", None)
    plan = _plan(_data(consumers=(uuid_named,)))
    assert plan.consumers[0].status == "conflict"
    assert "UUID" in plan.consumers[0].reason


@pytest.mark.parametrize(
    ("secret", "hashed", "status", "why"),
    [
        (kong_hash("x", salt=bytes(16)), True, "create", ""),  # ids stable across xdist workers
        ("$argon2id$v=19$m=4096,t=1,p=1$c2FsdA$aGFzaA", True, "conflict", "cannot verify"),
        ("{vault://env/secret}", False, "conflict", "vault reference"),
        (None, False, "conflict", "without a client_secret"),
    ],
)
def test_secrets_hashed_by_kong_go_in_as_they_are_and_unusable_ones_are_refused(
    secret: str | None, hashed: bool, status: str, why: str
) -> None:
    cred = KongCredential(APP, ALICE, "web", "alice-web", secret, hashed)
    [step] = _plan(_data(credentials=(cred,))).credentials
    assert (step.status, why in step.reason) == (status, True)
    if status == "create":
        assert step.new is not None
        assert step.new.secret_hash == secret
        assert step.clear_secret is None


def test_a_public_client_has_no_secret_in_edgeauth() -> None:
    cred = KongCredential(APP, ALICE, "m", "alice-mobile", "kong-made", False, (), "public")
    [step] = _plan(_data(credentials=(cred,))).credentials
    assert step.new is not None
    assert (step.status, step.new.secret_hash, step.clear_secret) == ("create", None, None)


def test_ids_already_stored_are_unchanged() -> None:
    plan = _plan(_data())
    stored = Credential(APP, ALICE, "web", "alice-web", "h", (), ClientType.CONFIDENTIAL, (), 1)
    existing = Existing(
        consumers=(plan.consumers[0].consumer,),
        credentials=(stored,),
        token_ids=frozenset({_token().id}),
    )
    again = _plan(_data(tokens=(_token(),)), existing)
    assert [s.status for s in again.consumers] == ["unchanged"]
    assert [s.status for s in again.credentials] == ["unchanged"]
    assert (again.tokens.records, again.tokens.unchanged) == ((), 1)
    assert again.conflicts() == []


# tokens -------------------------------------------------------------------------------------
def test_a_live_token_becomes_digests_with_its_remaining_lifetime() -> None:
    token = _token()
    [record] = _plan(_data(tokens=(token,))).tokens.records
    assert record.access_digest == crypto.digest(token.access_token)
    assert record.refresh_digest == crypto.digest("r" * 32)
    assert (record.id, record.credential_id, record.service) == (token.id, APP, "events")
    assert record.created_at == token.created_at
    assert record.expires_at == token.created_at + 3600
    assert record.refresh_expires_at == token.ttl
    assert "a" * 32 not in repr(record)


@pytest.mark.parametrize(
    ("changes", "expires_at", "refresh_expires_at"),
    [
        ({"expires_in": 0, "ttl": None, "refresh_token": None}, None, None),
        ({"ttl": NOW + 60}, NOW + 60, NOW + 60),  # the row dies before the access token
        ({"ttl": None}, NOW - 600 + 3600, None),  # the refresh token lives while the row does
    ],
)
def test_lifetimes_follow_expires_in_and_the_row_ttl(
    changes: dict[str, Any], expires_at: float | None, refresh_expires_at: float | None
) -> None:
    [record] = _plan(_data(tokens=(_token(**changes),))).tokens.records
    assert (record.expires_at, record.refresh_expires_at) == (expires_at, refresh_expires_at)


def test_dead_tokens_are_counted_and_a_live_refresh_token_is_carried() -> None:
    old = NOW - 7200
    tokens = (
        _token(id="t1", access_token="t1" * 16, created_at=old, refresh_token=None, ttl=None),
        _token(id="t2", access_token="t2" * 16, created_at=old, ttl=NOW - 1),
        _token(id="t3", access_token="t3" * 16, created_at=old, refresh_token="x" * 32),
    )
    tally = _plan(_data(tokens=tokens)).tokens
    assert (tally.expired, tally.refresh_only) == (2, 1)
    assert [r.id for r in tally.records] == ["t3"]


def test_tokens_that_cannot_be_carried_are_counted_by_why() -> None:
    tokens = (
        _token(id="t1", access_token="t1" * 16, credential_id="unknown"),
        _token(id="t2", access_token="t2" * 16, service_id="99999999-9999-4999-8999-999999999999"),
        _token(id="t3", access_token="t3" * 16, authenticated_userid="bad\r\nuser"),
        _token(id="t4", access_token="t4" * 16, service_id=None),
    )
    tally = _plan(_data(tokens=tokens)).tokens
    assert tally.skipped == {
        "its application is not carried": 1,
        "its service is not carried as a protected service": 1,
        "control characters in authenticated_userid or scope": 1,
    }
    assert [(r.id, r.service) for r in tally.records] == [("t4", None)]  # global credentials


# services, routes, plugins ------------------------------------------------------------------
def test_a_protected_service_becomes_a_valid_services_table() -> None:
    config = _oauth2(scopes=["read"], hide_credentials=False, auth_header_name="X-Token")
    plan = _plan(_data(plugins=(KongPlugin("p1", "oauth2", config, service=SERVICE),)))
    assert plan.config_problems == ()
    [events] = _services(plan)
    assert events["url"] == "http://10.0.0.5:52773/api"
    assert events["routes"] == [{"name": "events-api", "paths": ["/events"], "strip_path": True}]
    oauth2 = events["oauth2"]
    assert (oauth2["provision_key"], oauth2["scopes"]) == ("pk", ["read"])
    assert (oauth2["hide_credentials"], oauth2["auth_header_name"]) == (False, "x-token")


def test_routes_protected_by_different_plugins_become_services_of_their_own() -> None:
    routes = (
        KongRoute("r1", "events-api", SERVICE, ("/events",)),
        KongRoute("r2", "admin", SERVICE, ("/events-admin",)),
        KongRoute("r3", "public", SERVICE, ("/events-public",)),
    )
    plugins = (
        KongPlugin("p1", "oauth2", _oauth2(), route="r1"),
        KongPlugin("p2", "oauth2", _oauth2(provision_key="pk2", scopes=["admin"]), route="r2"),
    )
    plan = _plan(_data(routes=routes, plugins=plugins, tokens=(_token(),)))
    services = _services(plan)
    assert [s["name"] for s in services] == ["events", "events-admin", "events-public"]
    assert [s.get("oauth2", {}).get("provision_key") for s in services] == ["pk", "pk2", None]
    assert plan.tokens.records[0].service == "events"
    assert plan.config_problems == ()
    (split,) = [note for note in plan.notes if "became several services" in note]
    assert "valid on events only, not on events-admin" in split


def test_a_global_oauth2_plugin_protects_services_without_their_own() -> None:
    plan = _plan(_data(plugins=(KongPlugin("p1", "oauth2", _oauth2()),)))
    assert _services(plan)[0]["oauth2"]["provision_key"] == "pk"


def test_what_has_no_equivalent_is_listed_not_dropped() -> None:
    services = (
        KongService(SERVICE, "events", "http", "10.0.0.5", 80, None),
        KongService("s2", "grpc", "grpc", "10.0.0.6", 50051, None),
        KongService("s3", "off", "http", "10.0.0.7", 80, None, enabled=False),
    )
    routes = (
        KongRoute("r1", "events-api", SERVICE, ("/events", "~/events/\\d+$"),
                  others={"preserve_host": True, "protocols": ["http", "https"]}),
        KongRoute("r2", "lonely", None, ("/x",)),
        KongRoute("r3", "g", "s2", ("/g",)),
        KongRoute("r4", "o", "s3", ("/o",)),
    )  # fmt: skip
    plugins = (
        KongPlugin("p1", "oauth2", _oauth2(), service=SERVICE),
        KongPlugin("p2", "rate-limiting", {"minute": 5}, route="r1"),
        KongPlugin("p3", "oauth2", _oauth2(), service="s3", enabled=False),
    )
    plan = _plan(_data(services=services, routes=routes, plugins=plugins))
    text = "\n".join(plan.not_carried)
    assert 'plugin rate-limiting (route "events-api")' in text
    assert "path '~/events/\\\\d+$': edgeauth matches path prefixes only" in text
    assert "preserve_host = True" in text
    assert "protocols" not in text  # Kong's default: nothing lost
    assert 'route "lonely" (id r2): it has no service' in text
    assert 'service "grpc" (id s2): protocol grpc' in text
    assert 'service "off" (id s3): disabled in Kong' in text
    assert 'plugin oauth2 (service "off"): disabled in Kong' in text
    [events] = _services(plan)
    assert events["url"] == "http://10.0.0.5"
    assert events["routes"][0]["paths"] == ["/events"]


def test_services_already_in_config_toml_are_not_written_again() -> None:
    plan = _plan(_data(tokens=(_token(),)), Existing(config_services=frozenset({"events"})))
    assert (plan.services, _services(plan)) == (0, [])
    assert any("already in config.toml" in note for note in plan.notes)
    assert plan.tokens.records[0].service == "events"


# decK files ---------------------------------------------------------------------------------
def test_a_deck_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kong.yml"
    path.write_text('_format_version: "2.1"\nservices: []\n')
    with pytest.raises(SourceError, match=r"format 3\.x"):
        read_deck(path)
    path.write_text("services: [1, 2\n")
    with pytest.raises(SourceError, match="not YAML or JSON"):
        read_deck(path)


def test_a_deck_file_without_ids_gets_stable_ids_and_top_level_credentials_find_their_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kong.json"
    path.write_text(
        '{"_format_version": "3.0", "consumers": [{"username": "zed"}],'
        ' "oauth2_credentials": [{"consumer": "zed", "name": "z", "client_id": "zed-app",'
        ' "client_secret": "s"}]}'
    )
    plans = [_plan(read_deck(path)) for _ in range(2)]
    assert plans[0].consumers == plans[1].consumers
    [step] = plans[0].consumers
    assert step.consumer.id == derived_id("consumer", "zed")
    [app] = plans[0].credentials
    assert app.new is not None
    assert (app.status, app.new.consumer_id) == ("create", step.consumer.id)
    assert app.new.id == derived_id("credential", "zed-app")
    assert abs(step.consumer.created_at - NOW) < 1  # decK dumps carry no creation times


def test_now_is_the_creation_time_of_what_kong_gave_none() -> None:
    plan = make_plan(
        _data(consumers=(KongConsumer(ALICE, "alice", None),)), Existing(), time.time()
    )
    assert abs(plan.consumers[0].consumer.created_at - time.time()) < 5
