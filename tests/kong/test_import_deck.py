"""`edgeauth import kong --deck`: a decK dump (YAML, format 3.0) → the store and a real gateway.

decK dumps hold no tokens, and leave ids out unless dumped --with-id: here one consumer has
Kong's id and one has none, so both ways are proved to re-import as "unchanged".
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from edgeauth import tls
from edgeauth.kong.plan import derived_id
from tests.conftest import Backend, GatewayFactory, write_config
from tests.kong.conftest import edgeauth_import, statuses, written_services
from tests.kong.kong_db import kong_hash

PROVISION_KEY = "deck-provision-key-9876543210"
DORA_ID = "3a0f6a48-6e7d-4b7e-8d6c-2f1f6e0e5b11"
DORA_APP = "b7c1e2d3-0f4a-4e5b-9c6d-7e8f9a0b1c2d"
CLEAR, HASHED = "deck-clear-secret", "deck-hashed-secret"


def _dump(port: int) -> str:
    """A decK dump as `deck gateway dump` writes it (ids for dora only)."""
    return f"""\
_format_version: "3.0"
_info:
  select_tags: []
services:
- name: events
  url: http://127.0.0.1:{port}/api
  connect_timeout: 60000
  read_timeout: 30000
  write_timeout: 60000
  retries: 5
  enabled: true
  routes:
  - name: events-api
    paths:
    - /events
    strip_path: false
    preserve_host: false
    protocols:
    - http
    - https
    https_redirect_status_code: 426
    path_handling: v0
    regex_priority: 0
    request_buffering: true
    response_buffering: true
  plugins:
  - name: oauth2
    enabled: true
    protocols: [grpc, grpcs, http, https]
    config:
      scopes: [read]
      mandatory_scope: false
      provision_key: {PROVISION_KEY}
      token_expiration: 600
      refresh_token_ttl: 1209600
      enable_authorization_code: false
      enable_implicit_grant: false
      enable_client_credentials: true
      enable_password_grant: true
      hide_credentials: false
      accept_http_if_already_terminated: false
      anonymous: null
      global_credentials: false
      auth_header_name: authorization
      reuse_refresh_token: false
      pkce: lax
      realm: null
plugins:
- name: cors
  config:
    origins: ["*"]
consumers:
- username: dora
  id: {DORA_ID}
  custom_id: dora-1
  tags: [kong]
  oauth2_credentials:
  - id: {DORA_APP}
    name: Dora web
    client_id: deck-clear
    client_secret: {CLEAR}
    hash_secret: false
    redirect_uris: [https://dora.example/cb]
    client_type: confidential
- username: eve
  oauth2_credentials:
  - name: Eve batch
    client_id: deck-hashed
    client_secret: "{kong_hash(HASHED)}"
    hash_secret: true
  - name: Eve mobile
    client_id: deck-public
    client_secret: generated-by-kong
    client_type: public
    redirect_uris: [https://eve.example/cb]
  keyauth_credentials:
  - key: eve-api-key
  plugins:
  - name: rate-limiting
    config:
      minute: 5
certificates:
- cert: "-----BEGIN CERTIFICATE-----"
  key: "-----BEGIN PRIVATE KEY-----"
"""


async def test_deck_dump_import_end_to_end(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    client: aiohttp.ClientSession,
) -> None:
    dump = tmp_path / "kong.yaml"
    dump.write_text(_dump(backend.port))
    config = write_config(tmp_path, dev_cert, [])
    services_file = tmp_path / "kong-services.toml"

    dry = await edgeauth_import(config, "--deck", str(dump))
    assert dry.code == 0, dry.out + dry.err
    assert "dry run" in dry.out
    assert "plugin cors (global): edgeauth has no plugins beyond OAuth 2.0" in dry.out
    assert 'plugin rate-limiting (consumer "eve")' in dry.out
    assert "1 keyauth_credentials: edgeauth authenticates clients with OAuth 2.0" in dry.out
    assert "1 certificates: edgeauth's certificate is [server] tls_cert_file" in dry.out
    # The TOML, printed: stdout ends up in terminals and CI logs, so the key is not in it.
    assert 'provision_key = "<redacted: use --write-config>"' in dry.out
    assert PROVISION_KEY not in dry.out + dry.err
    dry_json = await edgeauth_import(config, "--deck", str(dump), "--json")
    assert PROVISION_KEY not in dry_json.out + dry_json.err
    assert "<redacted: use --write-config>" in dry_json.summary["services_toml"]
    services_file.write_text("")
    services_file.chmod(0o644)  # an existing file: the key must not stay readable by all
    assert not (tmp_path / "edgeauth.db").exists()

    args = ("--deck", str(dump), "--apply", "--write-config", str(services_file), "--json")
    applied = await edgeauth_import(config, *args)
    assert applied.code == 0, applied.out + applied.err
    summary = applied.summary
    assert statuses(summary, "consumers") == {"create": 2}
    assert statuses(summary, "credentials") == {"create": 3}
    assert summary["tokens"]["create"] == 0
    assert services_file.stat().st_mode & 0o777 == 0o600
    assert f'provision_key = "{PROVISION_KEY}"' in services_file.read_text()
    [events] = written_services(services_file)
    assert events["read_timeout_seconds"] == 30.0
    assert events["oauth2"]["hide_credentials"] is False  # Kong's value, not edgeauth's default

    gw = await gateway([events])
    token_url = f"{gw.url}/events/oauth2/token"
    grants = [
        {"grant_type": "client_credentials", "client_id": "deck-clear", "client_secret": CLEAR},
        {
            "grant_type": "password",
            "client_id": "deck-hashed",
            "client_secret": HASHED,
            "provision_key": PROVISION_KEY,
            "authenticated_userid": "42",
        },
    ]
    for grant in grants:
        async with client.post(token_url, data=grant) as resp:
            assert resp.status == 200, await resp.text()
            token = (await resp.json())["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        async with client.get(f"{gw.url}/events/echo", headers=bearer) as resp:
            assert resp.status == 200
    wrong = {**grants[0], "client_secret": "not-it"}
    async with client.post(token_url, data=wrong) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "invalid_client")

    eve_id = derived_id("consumer", "eve")
    async with aiohttp.ClientSession(headers=gw.admin_headers) as admin:
        for path, expected in (
            (f"consumers/{DORA_ID}", DORA_ID),
            ("consumers/eve", eve_id),
            (f"oauth2/{DORA_APP}", DORA_APP),
            ("oauth2/deck-public", derived_id("credential", "deck-public")),
        ):
            async with admin.get(f"{gw.admin_url}/{path}") as resp:
                assert resp.status == 200, path
                assert (await resp.json())["id"] == expected

    again = await edgeauth_import(config, *args)
    assert again.code == 0, again.out + again.err
    assert statuses(again.summary, "consumers") == {"unchanged": 2}
    assert statuses(again.summary, "credentials") == {"unchanged": 3}
    assert again.summary["written"]["credentials"] == 0
