"""config.toml → Settings: defaults, typed parsing, every problem class, env overrides, loading.

Every test writes a real config.toml (and real cert/secret files) under tmp_path; problems are
asserted by message substring, key path included.
"""

import dataclasses
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeauth.config import (
    Address,
    ConsumerSettings,
    CredentialSettings,
    OAuth2Settings,
    RouteSettings,
    ServiceSettings,
    Settings,
    load_settings,
    parse_settings,
    parse_toml,
)
from edgeauth.config.checks import restart_needed
from edgeauth.errors import ConfigError

SERVICE = """
[[services]]
name = "events"
url = "http://127.0.0.1:52773/api/events"

  [[services.routes]]
  name = "events-api"
  paths = ["/events"]
"""

OAUTH2 = """
  [services.oauth2]
  scopes = ["read", "write"]
  enable_password_grant = true
"""

CONSUMER = """
[[consumers]]
username = "ClientApp"

  [[consumers.oauth2]]
  name = "SampleApp"
  client_id = "clientid"
  redirect_uris = ["https://app.example/callback"]
"""


def route(name: str, paths: str, extra: str = "") -> str:
    return f'\n  [[services.routes]]\n  name = "{name}"\n  paths = {paths}\n  {extra}\n'


def write_config(tmp_path: Path, text: str) -> Path:
    """Writes config.toml next to the default certs/ files, which only need to exist."""
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    for name in ("edgeauth.crt", "edgeauth.key"):
        (certs / name).write_text("not checked beyond existence\n")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write_config(tmp_path, text), environ=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only_problem(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    found = problems(tmp_path, text, env)
    assert len(found) == 1, found
    assert found[0].startswith("config.toml: ")
    return found[0]


# ---- defaults and typed parsing -------------------------------------------------------------


def test_empty_file_gets_the_design_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    server, admin, store = settings.server, settings.admin, settings.store
    assert settings.source == tmp_path / "config.toml"
    assert server.listen == (Address("0.0.0.0", 8443),)  # noqa: S104
    assert server.http_listen == ()
    assert server.workers == 1
    assert server.tls_cert_file == tmp_path / "certs/edgeauth.crt"
    assert server.tls_key_file == tmp_path / "certs/edgeauth.key"
    assert server.tls_min_version == "1.2"
    assert server.trusted_proxies == ()
    assert (server.handshake_timeout_seconds, server.header_timeout_seconds) == (10.0, 10.0)
    assert (server.keepalive_timeout_seconds, server.drain_seconds) == (60.0, 30.0)
    assert (server.max_connections, server.max_inflight_requests) == (10000, 1024)
    assert server.request_id_header == "X-Request-ID"
    assert (server.max_request_line_bytes, server.max_header_count) == (8192, 100)
    assert server.max_header_bytes == 32768
    assert admin.listen == Address("127.0.0.1", 8001)
    assert admin.token_file == tmp_path / "var/admin.token"
    assert (admin.ui, admin.allow_remote, admin.tls_cert_file, admin.tls_key_file) == (
        False,
        False,
        None,
        None,
    )
    assert admin.ui_session_seconds == 28800
    assert (store.backend, store.path, store.dsn, store.pool_size) == (
        "sqlite",
        tmp_path / "var/edgeauth.db",
        "",
        10,
    )
    assert (settings.cache.max_tokens, settings.cache.negative_ttl_seconds) == (100000, 2.0)
    assert (settings.log.level, settings.log.access_log) == ("info", "stdout")
    assert (settings.metrics.enabled, settings.metrics.per_consumer) == (True, False)
    assert (settings.services, settings.consumers) == ((), ())


def test_service_and_consumer_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, SERVICE + OAUTH2 + CONSUMER)
    (service,) = settings.services
    assert service == ServiceSettings(
        name="events",
        url="http://127.0.0.1:52773/api/events",
        routes=(RouteSettings(name="events-api", paths=("/events",)),),
        oauth2=OAuth2Settings(
            scopes=("read", "write"),
            enable_password_grant=True,
            provision_key_file=tmp_path / "var/events.provision_key",
        ),
    )
    assert (service.connect_timeout_seconds, service.read_timeout_seconds) == (5.0, 60.0)
    assert (service.max_connections, service.max_request_body_bytes) == (100, 10485760)
    assert (service.retries, service.tls_verify, service.ca_file) == (2, True, None)
    oauth2 = service.oauth2
    assert oauth2 is not None
    assert (oauth2.token_expiration, oauth2.refresh_token_ttl, oauth2.pkce) == (
        7200,
        1209600,
        "lax",
    )
    assert (oauth2.hide_credentials, oauth2.auth_header_name, oauth2.realm) == (
        True,
        "authorization",
        "edgeauth",
    )
    assert oauth2.provision_key is None
    assert (oauth2.max_failed_client_auth, oauth2.failed_client_auth_window_seconds) == (10, 60.0)
    assert settings.consumers == (
        ConsumerSettings(
            username="ClientApp",
            oauth2=(
                CredentialSettings(
                    name="SampleApp",
                    client_id="clientid",
                    redirect_uris=("https://app.example/callback",),
                ),
            ),
        ),
    )


FULL = """
[server]
listen = ["0.0.0.0:8443", "[::]:8443"]
http_listen = "127.0.0.1:0"
workers = 4
tls_min_version = "1.3"
trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "fd00::/8", "10.1.2.3/16"]
handshake_timeout_seconds = 3
header_timeout_seconds = 2.5
keepalive_timeout_seconds = 30
max_connections = 5
max_inflight_requests = 6
drain_seconds = 0
request_id_header = "X-Trace"
max_request_line_bytes = 1024
max_header_count = 10
max_header_bytes = 2048

[admin]
listen = "0.0.0.0:9001"
token_file = "/run/credentials/admin.token"
ui = true
ui_session_seconds = 600
allow_remote = true
tls_cert_file = "certs/edgeauth.crt"
tls_key_file = "certs/edgeauth.key"

[store]
backend = "postgres"
dsn = "postgresql://edgeauth@db/edgeauth"
pool_size = 3
path = "data/x.db"

[cache]
max_tokens = 1
negative_ttl_seconds = 0

[log]
level = "debug"
access_log = "logs/access.jsonl"

[metrics]
enabled = false
per_consumer = true

[[services]]
name = "events"
url = "https://iris.example:52773/api/events"
connect_timeout_seconds = 1
read_timeout_seconds = 2
max_connections = 3
max_request_body_bytes = 0
retries = 0
tls_verify = false
ca_file = "ca.pem"

  [[services.routes]]
  name = "events-api"
  paths = ["/events", "/v2/events/"]
  hosts = ["API.Example.COM"]
  methods = ["get", "Post"]
  strip_path = false
  required_scopes = ["read"]

  [services.oauth2]
  scopes = ["read", "write"]
  mandatory_scope = true
  provision_key = "pk-123"
  token_expiration = 0
  refresh_token_ttl = 0
  enable_authorization_code = true
  enable_client_credentials = true
  enable_password_grant = true
  enable_implicit_grant = true
  pkce = "strict"
  reuse_refresh_token = true
  hide_credentials = false
  accept_http_if_already_terminated = true
  accept_token_in_query = true
  accept_token_in_body = true
  anonymous = "guest"
  global_credentials = true
  auth_header_name = "X-Token"
  realm = "iris"

[[consumers]]
username = "ClientApp"
custom_id = "c-1"
tags = ["team-a"]

  [[consumers.oauth2]]
  name = "Public"
  client_id = "public-app"
  client_type = "public"
  redirect_uris = ["https://app.example/cb?x=1", "http://127.0.0.1:9000/cb"]

  [[consumers.oauth2]]
  name = "Hashed"
  client_id = "hashed-app"
  client_secret_hash = "$pbkdf2-sha512$i=10000,l=32$c2FsdA$aGFzaA"

  [[consumers.oauth2]]
  name = "Plain"
  client_id = "plain-app"
  client_secret = "s3cret"
  tags = ["web", "v2"]
"""


def test_every_section_parses_to_typed_values(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca")
    settings = load(tmp_path, FULL)
    server = settings.server
    assert server.listen == (Address("0.0.0.0", 8443), Address("::", 8443))  # noqa: S104
    assert server.http_listen == (Address("127.0.0.1", 0),)
    assert (server.workers, server.tls_min_version) == (4, "1.3")
    assert server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("10.1.0.0/16"),
    )
    assert type(server.handshake_timeout_seconds) is float
    assert server.handshake_timeout_seconds == 3.0
    assert (server.header_timeout_seconds, server.drain_seconds) == (2.5, 0.0)
    assert (server.max_connections, server.max_header_bytes, server.request_id_header) == (
        5,
        2048,
        "X-Trace",
    )
    admin = settings.admin
    assert admin.listen == Address("0.0.0.0", 9001)  # noqa: S104
    assert admin.token_file == Path("/run/credentials/admin.token")
    assert (admin.ui, admin.allow_remote, admin.ui_session_seconds) == (True, True, 600)
    assert admin.tls_cert_file == tmp_path / "certs/edgeauth.crt"
    store = settings.store
    assert (store.backend, store.dsn, store.pool_size) == (
        "postgres",
        "postgresql://edgeauth@db/edgeauth",
        3,
    )
    assert store.path == tmp_path / "data/x.db"
    assert (settings.cache.max_tokens, settings.cache.negative_ttl_seconds) == (1, 0.0)
    assert settings.log.level == "debug"
    assert settings.log.access_log == str(tmp_path / "logs/access.jsonl")
    assert (settings.metrics.enabled, settings.metrics.per_consumer) == (False, True)

    (service,) = settings.services
    assert (service.url, service.ca_file, service.tls_verify) == (
        "https://iris.example:52773/api/events",
        tmp_path / "ca.pem",
        False,
    )
    assert (service.max_request_body_bytes, service.retries) == (0, 0)
    assert service.read_timeout_seconds == 2.0
    assert service.routes == (
        RouteSettings(
            name="events-api",
            paths=("/events", "/v2/events/"),
            hosts=("api.example.com",),
            methods=("GET", "POST"),
            strip_path=False,
            required_scopes=("read",),
        ),
    )
    assert service.oauth2 == OAuth2Settings(
        scopes=("read", "write"),
        mandatory_scope=True,
        provision_key="pk-123",
        provision_key_file=None,
        token_expiration=0,
        refresh_token_ttl=0,
        enable_authorization_code=True,
        enable_client_credentials=True,
        enable_password_grant=True,
        enable_implicit_grant=True,
        pkce="strict",
        reuse_refresh_token=True,
        hide_credentials=False,
        accept_http_if_already_terminated=True,
        accept_token_in_query=True,
        accept_token_in_body=True,
        anonymous="guest",
        global_credentials=True,
        auth_header_name="x-token",
        realm="iris",
    )
    (consumer,) = settings.consumers
    assert (consumer.custom_id, consumer.tags) == ("c-1", ("team-a",))
    public, hashed, plain = consumer.oauth2
    assert (public.client_type, public.client_secret, public.client_secret_hash) == (
        "public",
        None,
        None,
    )
    assert public.redirect_uris == ("https://app.example/cb?x=1", "http://127.0.0.1:9000/cb")
    assert hashed.client_secret_hash == "$pbkdf2-sha512$i=10000,l=32$c2FsdA$aGFzaA"
    assert (plain.client_type, plain.client_secret) == ("confidential", "s3cret")
    assert (plain.tags, public.tags) == (("web", "v2"), ())


def test_default_certificate_files_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.problems == (
        f"config.toml: server.tls_cert_file: file not found: {tmp_path / 'certs/edgeauth.crt'}",
        f"config.toml: server.tls_key_file: file not found: {tmp_path / 'certs/edgeauth.key'}",
    )


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.workers = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("127.0.0.1", 8443), "127.0.0.1:8443"),
        (Address("::1", 8443), "[::1]:8443"),
        (Address("localhost", 0), "localhost:0"),
    ],
)
def test_address_str(address: Address, text: str) -> None:
    assert str(address) == text


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ('"[::1]:8001"', Address("::1", 8001)),
        ('"localhost:8001"', Address("localhost", 8001)),
        ('"127.0.0.2:8001"', Address("127.0.0.2", 8001)),
    ],
)
def test_loopback_admin_listeners(tmp_path: Path, listen: str, expected: Address) -> None:
    assert load(tmp_path, f"[admin]\nlisten = {listen}\n").admin.listen == expected


def test_workers_auto_is_cpu_count(tmp_path: Path) -> None:
    settings = load(tmp_path, '[server]\nworkers = "auto"\n')
    assert settings.server.workers == min(os.cpu_count() or 1, 256)


def test_empty_strings_mean_unset(tmp_path: Path) -> None:
    text = '[server]\nhttp_listen = ""\n[admin]\ntls_cert_file = ""\ntls_key_file = ""\n'
    settings = load(tmp_path, text + SERVICE.replace("[[services]]", '[[services]]\nca_file = ""'))
    assert settings.server.http_listen == ()
    assert (settings.admin.tls_cert_file, settings.admin.tls_key_file) == (None, None)
    assert settings.services[0].ca_file is None


def test_parse_settings_takes_a_mapping(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    data: dict[str, object] = {"server": {"workers": 3}}
    settings = parse_settings(data, source=tmp_path / "other.toml")
    assert (settings.server.workers, settings.source) == (3, tmp_path / "other.toml")
    with pytest.raises(ConfigError) as info:
        parse_settings({"server": {"workers": 0}}, source=tmp_path / "other.toml")
    assert info.value.problems == ("other.toml: server.workers: must be between 1 and 256, got 0",)


# ---- one mistake → exactly one problem, naming its key path ---------------------------------

TWO_ROUTES = SERVICE + route("other", '["/events"]')

ONE_PROBLEM = [
    # unknown keys and sections
    ('[server]\nlistn = "0.0.0.0:1"', 'server.listn: unknown key "listn" (did you mean "listen"?)'),
    ("[sever]", 'sever: unknown section "sever" (did you mean "server"?)'),
    ("[nothing_alike]", 'nothing_alike: unknown section "nothing_alike"'),
    (SERVICE + "  hostz = []", 'routes[0].hostz: unknown key "hostz" (did you mean "hosts"?)'),
    (
        SERVICE + OAUTH2 + "  scope = []",
        'oauth2.scope: unknown key "scope" (did you mean "scopes"?)',
    ),
    # wrong types
    ('[server]\nworkers = "ten"', 'server.workers: expected an integer, got "ten"'),
    ("[cache]\nmax_tokens = true", "cache.max_tokens: expected an integer, got true"),
    ("[cache]\nmax_tokens = 1.5", "cache.max_tokens: expected an integer, got 1.5"),
    (
        "[cache]\nnegative_ttl_seconds = true",
        "negative_ttl_seconds: expected a finite number, got true",
    ),
    (
        "[cache]\nnegative_ttl_seconds = nan",
        "negative_ttl_seconds: expected a finite number, got nan",
    ),
    ('[admin]\nui = "yes"', 'admin.ui: expected a boolean (true or false), got "yes"'),
    (
        "[admin]\nui_session_seconds = 0",
        "admin.ui_session_seconds: must be between 1 and 604800, got 0",
    ),
    ("[log]\naccess_log = 1", "log.access_log: expected a string, got 1"),
    ("server = 5", "server: expected a table, got 5"),
    ("[server]\ntrusted_proxies = 5", "server.trusted_proxies: expected an array, got 5"),
    ("[services]\nname = 'x'", "services: expected an array, got a table"),
    (SERVICE.replace('["/events"]', '"/x"'), 'routes[0].paths: expected an array, got "/x"'),
    (
        '[server]\ntls_cert_file = ""',
        "server.tls_cert_file: expected a file path, got an empty string",
    ),
    ('[server]\nrequest_id_header = ""', "server.request_id_header: must not be empty"),
    # ranges
    ("[server]\nworkers = 0", "server.workers: must be between 1 and 256, got 0"),
    ("[server]\nworkers = 257", "server.workers: must be between 1 and 256, got 257"),
    (
        "[server]\nheader_timeout_seconds = 0",
        "header_timeout_seconds: must be greater than 0, got 0.0",
    ),
    ("[server]\ndrain_seconds = -1", "server.drain_seconds: must be at least 0, got -1.0"),
    ("[server]\nmax_connections = 0", "server.max_connections: must be at least 1, got 0"),
    ("[server]\nmax_header_count = -5", "server.max_header_count: must be at least 1, got -5"),
    ("[store]\npool_size = 0", "store.pool_size: must be at least 1, got 0"),
    ("[cache]\nmax_tokens = 0", "cache.max_tokens: must be at least 1, got 0"),
    (
        "[cache]\nnegative_ttl_seconds = 61",
        "negative_ttl_seconds: must be between 0 and 60, got 61.0",
    ),
    (
        "[cache]\nnegative_ttl_seconds = -1",
        "negative_ttl_seconds: must be between 0 and 60, got -1.0",
    ),
    (
        SERVICE.replace("[[services]]", "[[services]]\nretries = 11"),
        "services[0].retries: must be between 0 and 10, got 11",
    ),
    (
        SERVICE.replace("[[services]]", "[[services]]\nmax_request_body_bytes = -1"),
        "services[0].max_request_body_bytes: must be at least 0, got -1",
    ),
    (
        SERVICE.replace("[[services]]", "[[services]]\nconnect_timeout_seconds = 0"),
        "services[0].connect_timeout_seconds: must be greater than 0, got 0.0",
    ),
    (SERVICE + OAUTH2 + "  token_expiration = -1", "oauth2.token_expiration: must be at least 0"),
    (SERVICE + OAUTH2 + "  refresh_token_ttl = -1", "oauth2.refresh_token_ttl: must be at least 0"),
    (
        SERVICE + OAUTH2 + "  max_failed_client_auth = -1",
        "oauth2.max_failed_client_auth: must be at least 0, got -1",
    ),
    (
        SERVICE + OAUTH2 + "  failed_client_auth_window_seconds = 0",
        "oauth2.failed_client_auth_window_seconds: must be between 1 and 86400, got 0.0",
    ),
    (
        SERVICE + OAUTH2 + "  failed_client_auth_window_seconds = 86401",
        "oauth2.failed_client_auth_window_seconds: must be between 1 and 86400, got 86401.0",
    ),
    # literal choices
    (
        '[store]\nbackend = "sqlit"',
        'store.backend: expected one of "sqlite", "postgres"; got "sqlit" (did you mean "sqlite"?)',
    ),
    ("[server]\ntls_min_version = 1.3", 'tls_min_version: expected one of "1.2", "1.3"; got 1.3'),
    ('[log]\nlevel = "verbose"', 'log.level: expected one of "debug", "info", "warning", "error"'),
    (SERVICE + OAUTH2 + '  pkce = "strikt"', 'got "strikt" (did you mean "strict"?)'),
    # addresses and networks
    ('[server]\nlisten = "nohost"', 'server.listen: expected "host:port", got "nohost"'),
    ('[server]\nlisten = ":8443"', 'server.listen: expected "host:port", got ":8443"'),
    ('[server]\nlisten = "0.0.0.0:http"', 'expected "host:port", got "0.0.0.0:http"'),
    ('[server]\nlisten = "0.0.0.0:70000"', "server.listen: port must be 0..65535, got 70000"),
    ('[server]\nlisten = "::1:8443"', 'invalid host in "::1:8443" (IPv6 needs brackets'),
    ('[server]\nlisten = "[::zz]:8443"', 'server.listen: invalid host in "[::zz]:8443"'),
    ('[admin]\nlisten = "999.0.0.1:1"', 'admin.listen: invalid host in "999.0.0.1:1"'),
    ('[server]\nlisten = ["0.0.0.0:1", "x"]', 'server.listen[1]: expected "host:port", got "x"'),
    ("[server]\nlisten = []", "server.listen: must not be empty"),
    ('[server]\nhttp_listen = ["a_b:1"]', 'server.http_listen[0]: invalid host in "a_b:1"'),
    (
        '[server]\ntrusted_proxies = ["10.0.0.0/8", "10.0.0.0/33"]',
        'server.trusted_proxies[1]: not an IP address or CIDR: "10.0.0.0/33"',
    ),
    ('[server]\ntrusted_proxies = ["proxy.local"]', 'not an IP address or CIDR: "proxy.local"'),
    # files that must exist
    ('[server]\ntls_cert_file = "certs/none.crt"', "server.tls_cert_file: file not found: /"),
    ('[server]\ntls_key_file = "certs"', "server.tls_key_file: not a regular file: /"),
    (
        SERVICE.replace("[[services]]", '[[services]]\nca_file = "ca.pem"'),
        "services[0].ca_file: file not found: /",
    ),
    # required keys, services and routes
    (SERVICE.replace('name = "events"\n', ""), "services[0].name: required key is missing"),
    (SERVICE.split("  [[services.routes]]")[0], "services[0].routes: must not be empty"),
    (
        SERVICE.split("  [[services.routes]]")[0] + "routes = []",
        "services[0].routes: must not be empty",
    ),
    (SERVICE.replace('["/events"]', "[]"), "services[0].routes[0].paths: must not be empty"),
    (SERVICE.replace('"events-api"', '"a b"'), "routes[0].name: use only letters, digits"),
    (SERVICE.replace('"events"', '"../x"', 1), "services[0].name: use only letters, digits"),
    (SERVICE.replace('"/events"', '"events"'), 'paths[0]: must start with "/", got "events"'),
    (SERVICE.replace('"/events"', '"/e?x=1"'), 'routes[0].paths[0]: must not contain "?"'),
    (SERVICE.replace('"/events"', '"/e#x"'), 'routes[0].paths[0]: must not contain "#"'),
    (SERVICE.replace('"/events"', '"/e\\\\x"'), 'routes[0].paths[0]: must not contain "\\"'),
    (SERVICE.replace('"/events"', '"/a/../b"'), 'paths[0]: must not contain "." or ".." segments'),
    (SERVICE.replace('"/events"', '"/a/."'), 'paths[0]: must not contain "." or ".." segments'),
    (SERVICE + '  methods = ["GE T"]', 'routes[0].methods[0]: not an HTTP method token: "GE T"'),
    (SERVICE.replace("http://127.0.0.1:52773", "ftp://h"), "services[0].url: expected http://"),
    (SERVICE.replace("http://127.0.0.1:52773", "http://"), "services[0].url: expected http://"),
    (SERVICE.replace("http://127.0.0.1:52773", "127.0.0.1"), "services[0].url: expected http://"),
    (SERVICE.replace("/api/events", "/api?x=1"), "services[0].url: must not have a query"),
    (SERVICE.replace("/api/events", "/api#top"), "services[0].url: must not have a fragment"),
    (SERVICE.replace(":52773", ":99999"), "services[0].url: not a valid URL"),
    # routes across services
    (
        TWO_ROUTES,
        'services[0].routes[1].paths[0]: route "other" is ambiguous with route "events-api"'
        ' (services[0].routes[0]): same path "/events"',
    ),
    (
        SERVICE.replace("paths", 'hosts = ["A.example", "b.example"]\n  paths')
        + route("other", '["/x", "/events/"]', 'hosts = ["a.example"]'),
        'routes[1].paths[1]: route "other" is ambiguous with route "events-api"',
    ),
    (
        SERVICE.replace("paths", 'hosts = ["*.example.com"]\n  methods = ["GET"]\n  paths')
        + route("other", '["/events"]', 'hosts = ["api.example.com"]\n  methods = ["get"]'),
        'routes[1].paths[0]: route "other" is ambiguous with route "events-api"',
    ),
    (
        SERVICE + SERVICE.replace('"events"', '"other"').replace("events-api", "other-api"),
        'services[1].routes[0].paths[0]: route "other-api" is ambiguous with route "events-api"',
    ),
    (
        SERVICE + route("events-api", '["/other"]'),
        'services[0].routes[1].name: duplicate route name "events-api" (first at'
        " services[0].routes[0].name)",
    ),
    (
        SERVICE + SERVICE.replace('"/events"', '"/other"').replace("events-api", "other-api"),
        'services[1].name: duplicate service name "events" (first at services[0].name)',
    ),
    # oauth2
    (
        SERVICE + OAUTH2.replace("enable_password_grant = true", ""),
        "services[0].oauth2: enable at least one grant: enable_authorization_code",
    ),
    (
        SERVICE + OAUTH2.replace('["read", "write"]', "[]") + "  mandatory_scope = true",
        "services[0].oauth2.mandatory_scope: mandatory_scope = true needs non-empty scopes",
    ),
    (
        SERVICE + '  required_scopes = ["admin", "read"]' + OAUTH2,
        'services[0].routes[0].required_scopes: not in services[0].oauth2.scopes: "admin"',
    ),
    (
        SERVICE + '  required_scopes = ["read"]',
        "services[0].routes[0].required_scopes: required_scopes need a [services.oauth2] table",
    ),
    (
        SERVICE + OAUTH2 + '  provision_key = "k"\n  provision_key_file = "k.txt"',
        'services[0].oauth2.provision_key_file: give "provision_key" or "provision_key_file"',
    ),
    (SERVICE + OAUTH2 + '  auth_header_name = ""', "oauth2.auth_header_name: must not be empty"),
    # admin
    (
        '[admin]\nlisten = "0.0.0.0:8001"',
        "admin.listen: 0.0.0.0:8001 is not a loopback address; a remote admin API needs"
        " allow_remote = true and both tls_cert_file and tls_key_file",
    ),
    ('[admin]\nlisten = "[::]:8001"\nallow_remote = true', "admin.listen: [::]:8001 is not"),
    ('[admin]\nlisten = "admin.example:8001"', "admin.listen: admin.example:8001 is not"),
    (
        '[admin]\ntls_cert_file = "certs/edgeauth.crt"',
        "admin: set both tls_cert_file and tls_key_file, or neither",
    ),
    (
        '[admin]\ntls_cert_file = "a.crt"\ntls_key_file = "certs/edgeauth.key"',
        "admin.tls_cert_file: file not found",
    ),
    # store and log
    ('[store]\nbackend = "postgres"', 'store.dsn: backend "postgres" needs dsn or dsn_file'),
    (
        '[store]\ndsn = "x"\ndsn_file = "dsn.txt"',
        'store.dsn_file: give "dsn" or "dsn_file", not both',
    ),
    ('[store]\ndsn_file = "none.txt"', "store.dsn_file: cannot read secret file /"),
    ('[log]\naccess_log = ""', 'log.access_log: expected "stdout", "off" or a file path'),
    # consumers
    (
        CONSUMER.replace('username = "ClientApp"', ""),
        "consumers[0].username: required key is missing",
    ),
    (
        CONSUMER + CONSUMER.replace('"clientid"', '"other"'),
        'consumers[1].username: duplicate username "ClientApp"',
    ),
    (
        CONSUMER + CONSUMER.replace("ClientApp", "Other"),
        'consumers[1].oauth2[0].client_id: duplicate client_id "clientid" (first at'
        " consumers[0].oauth2[0].client_id)",
    ),
    (
        CONSUMER.replace("https://app.example/callback", "/callback"),
        "consumers[0].oauth2[0].redirect_uris[0]: expected an absolute URL with a host,"
        ' got "/callback"',
    ),
    (
        CONSUMER.replace("https://app.example/callback", "https:///cb"),
        "consumers[0].oauth2[0].redirect_uris[0]: expected an absolute URL with a host",
    ),
    (
        CONSUMER.replace("/callback", "/cb#frag"),
        "consumers[0].oauth2[0].redirect_uris[0]: must not have a fragment",
    ),
    (
        CONSUMER + '  client_secret = "s"\n  client_secret_hash = "$pbkdf2-sha512$x"',
        "consumers[0].oauth2[0].client_secret_hash: give at most one of client_secret,"
        " client_secret_file, client_secret_hash",
    ),
    (
        CONSUMER + '  client_secret = "s"\n  client_secret_file = "s.txt"',
        'consumers[0].oauth2[0].client_secret_file: give "client_secret" or "client_secret_file"',
    ),
    (
        CONSUMER + '  client_type = "public"\n  client_secret = "s"',
        "consumers[0].oauth2[0].client_type: a public client must not have a client secret",
    ),
    (
        CONSUMER + '  client_type = "public"\n  client_secret_hash = "$pbkdf2-sha512$x"',
        "consumers[0].oauth2[0].client_type: a public client must not have a client secret",
    ),
    (
        CONSUMER + '  client_secret_hash = "$2b$12$abc"',
        'consumers[0].oauth2[0].client_secret_hash: must start with "$pbkdf2-sha512$"',
    ),
    (
        CONSUMER + '  client_type = "private"',
        'consumers[0].oauth2[0].client_type: expected one of "confidential", "public"',
    ),
    (  # the admin API's tag rule: `?tags=a,b` and `a/b` are its filters
        CONSUMER.replace('"ClientApp"', '"ClientApp"\ntags = ["a,b"]'),
        'consumers[0].tags[0]: use printable ASCII without space, "," or "/"; got "a,b"',
    ),
    (
        CONSUMER + '  tags = ["ok", "has space"]',
        'consumers[0].oauth2[0].tags[1]: use printable ASCII without space, "," or "/"',
    ),
    (CONSUMER + '  tags = ["a/b"]', "consumers[0].oauth2[0].tags[0]: use printable ASCII"),
]


@pytest.mark.parametrize(("text", "expected"), ONE_PROBLEM)
def test_one_mistake_one_problem(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in only_problem(tmp_path, text)


def test_unknown_section_without_a_close_match_has_no_hint(tmp_path: Path) -> None:
    assert "did you mean" not in only_problem(tmp_path, "[nothing_alike]")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            SERVICE + route("b", '["/events"]', 'hosts = ["b.example"]'),
            id="named-host-outranks-any-host",
        ),
        pytest.param(
            SERVICE + route("b", '["/events"]', 'methods = ["POST"]'),
            id="named-method-outranks-any-method",
        ),
        pytest.param(
            SERVICE.replace("paths", 'hosts = ["*.a.example"]\n  paths')
            + route("b", '["/events"]', 'hosts = ["a.example"]'),
            id="wildcard-does-not-match-its-apex",
        ),
        pytest.param(
            SERVICE.replace("paths", 'hosts = ["a.example"]\n  paths')
            + route("b", '["/events"]', 'hosts = ["B.example"]'),
            id="hosts-differ",
        ),
        pytest.param(
            SERVICE.replace("paths", 'methods = ["GET"]\n  paths')
            + route("b", '["/events"]', 'methods = ["post"]'),
            id="methods-differ",
        ),
        pytest.param(SERVICE + route("b", '["/events/x", "/eventsx"]'), id="longer-prefix"),
    ],
)
def test_routes_that_cannot_collide_are_allowed(tmp_path: Path, text: str) -> None:
    assert len(load(tmp_path, text).services[0].routes) == 2


def test_equally_specific_routes_sharing_a_host_and_method_are_ambiguous(tmp_path: Path) -> None:
    first = 'hosts = ["a.example"]\n  methods = ["GET", "PUT"]\n  paths'
    text = SERVICE.replace("paths", first)
    text += route("b", '["/events"]', 'hosts = ["A.EXAMPLE"]\n  methods = ["put"]')
    assert 'route "b" is ambiguous with route "events-api"' in only_problem(tmp_path, text)


def test_remote_admin_with_opt_in_and_tls_is_allowed(tmp_path: Path) -> None:
    text = (
        '[admin]\nlisten = "0.0.0.0:8001"\nallow_remote = true\n'
        'tls_cert_file = "certs/edgeauth.crt"\ntls_key_file = "certs/edgeauth.key"\n'
    )
    assert load(tmp_path, text).admin.tls_key_file == tmp_path / "certs/edgeauth.key"


# ---- secrets read from files -----------------------------------------------------------------


def test_secret_files_are_read_with_whitespace_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/dsn").write_text("  postgresql://u@db/edgeauth \n")
    (tmp_path / "secrets/app").write_text("\n\t s3cret value \n\n")
    (tmp_path / "secrets/events.key").write_text(" provision-123\n")
    text = (
        '[store]\nbackend = "postgres"\ndsn_file = "secrets/dsn"\n'
        + SERVICE
        + OAUTH2
        + '  provision_key_file = "secrets/events.key"\n'
        + CONSUMER
        + '  client_secret_file = "secrets/app"\n'
    )
    settings = load(tmp_path, text)
    assert settings.store.dsn == "postgresql://u@db/edgeauth"
    assert settings.consumers[0].oauth2[0].client_secret == "s3cret value"
    oauth2 = settings.services[0].oauth2
    assert oauth2 is not None
    assert oauth2.provision_key == "provision-123"
    assert oauth2.provision_key_file == tmp_path / "secrets/events.key"


def test_generated_secret_files_may_be_missing(tmp_path: Path) -> None:
    second = SERVICE.replace("events", "billing") + OAUTH2
    text = '[admin]\ntoken_file = "state/admin.token"\n' + SERVICE + OAUTH2 + second
    text += '  provision_key_file = "/nonexistent/billing.key"\n'
    settings = load(tmp_path, text)
    assert settings.admin.token_file == tmp_path / "state/admin.token"
    events, billing = (service.oauth2 for service in settings.services)
    assert events is not None
    assert billing is not None
    assert (events.provision_key, events.provision_key_file) == (
        None,
        tmp_path / "var/events.provision_key",
    )
    assert (billing.provision_key, billing.provision_key_file) == (
        None,
        Path("/nonexistent/billing.key"),
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "consumers[0].oauth2[0].client_secret_file: cannot read secret file /"),
        (" \n\t", "consumers[0].oauth2[0].client_secret_file: secret file /"),
        (b"\xff\xfe", "consumers[0].oauth2[0].client_secret_file: cannot read secret file /"),
    ],
    ids=["missing", "blank", "not-utf8"],
)
def test_unreadable_secret_files_are_problems(
    tmp_path: Path, content: str | bytes | None, expected: str
) -> None:
    secret = tmp_path / "app.secret"
    if isinstance(content, bytes):
        secret.write_bytes(content)
    elif content is not None:
        secret.write_text(content)
    text = CONSUMER + '  client_secret_file = "app.secret"\n'
    assert expected in only_problem(tmp_path, text)


def test_existing_provision_key_file_must_be_non_empty(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var/events.provision_key").write_text("\n")
    found = only_problem(tmp_path, SERVICE + OAUTH2)
    assert "services[0].oauth2.provision_key_file: secret file /" in found
    assert found.endswith("is empty")


# ---- environment overrides -------------------------------------------------------------------

Check = Callable[[Settings], object]


@pytest.mark.parametrize(
    ("env", "read", "expected"),
    [
        ({"EDGEAUTH_SERVER_WORKERS": "2"}, lambda s: s.server.workers, 2),
        (
            {"EDGEAUTH_SERVER_WORKERS": "auto"},
            lambda s: s.server.workers,
            min(os.cpu_count() or 1, 256),
        ),
        ({"EDGEAUTH_SERVER_DRAIN_SECONDS": "1.5"}, lambda s: s.server.drain_seconds, 1.5),
        ({"EDGEAUTH_SERVER_TLS_MIN_VERSION": "1.3"}, lambda s: s.server.tls_min_version, "1.3"),
        (
            {"EDGEAUTH_SERVER_LISTEN": "127.0.0.1:1, [::1]:2"},
            lambda s: s.server.listen,
            (Address("127.0.0.1", 1), Address("::1", 2)),
        ),
        (
            {"EDGEAUTH_SERVER_HTTP_LISTEN": "127.0.0.1:0"},
            lambda s: s.server.http_listen,
            (Address("127.0.0.1", 0),),
        ),
        (
            {"EDGEAUTH_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,::1"},
            lambda s: s.server.trusted_proxies,
            (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")),
        ),
        ({"EDGEAUTH_ADMIN_UI": "1"}, lambda s: s.admin.ui, True),
        ({"EDGEAUTH_ADMIN_TOKEN_FILE": "/run/t"}, lambda s: s.admin.token_file, Path("/run/t")),
        (
            {"EDGEAUTH_STORE_BACKEND": "postgres", "EDGEAUTH_STORE_DSN": "postgresql://db/x"},
            lambda s: (s.store.backend, s.store.dsn),
            ("postgres", "postgresql://db/x"),
        ),
        ({"EDGEAUTH_CACHE_NEGATIVE_TTL_SECONDS": "0"}, lambda s: s.cache.negative_ttl_seconds, 0.0),
        ({"EDGEAUTH_LOG_LEVEL": "debug"}, lambda s: s.log.level, "debug"),
        ({"EDGEAUTH_METRICS_PER_CONSUMER": "Yes"}, lambda s: s.metrics.per_consumer, True),
        ({"EDGEAUTH_METRICS_ENABLED": "false"}, lambda s: s.metrics.enabled, False),
        ({"EDGEAUTH_REQUIRE_PG": "1", "EDGEAUTH_BOGUS": "x"}, lambda s: s.server.workers, 1),
        ({"EDGEAUTH_SERVICES_NAME": "x", "HOME": "/"}, lambda s: s.services, ()),
    ],
)
def test_environment_overrides(
    tmp_path: Path, env: dict[str, str], read: Check, expected: object
) -> None:
    assert read(load(tmp_path, "", env)) == expected


def test_environment_beats_the_file(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text("postgresql://from-file\n")
    text = '[server]\nworkers = 4\n[store]\nbackend = "postgres"\ndsn = "postgresql://inline"\n'
    env = {"EDGEAUTH_SERVER_WORKERS": "2", "EDGEAUTH_STORE_DSN_FILE": "dsn"}
    settings = load(tmp_path, text, env)
    assert (settings.server.workers, settings.store.dsn) == (2, "postgresql://from-file")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"EDGEAUTH_SERVER_WORKERS": "ten"},
            'EDGEAUTH_SERVER_WORKERS: expected an integer, got "ten"',
        ),
        (
            {"EDGEAUTH_SERVER_WORKERS": "0"},
            "EDGEAUTH_SERVER_WORKERS: must be between 1 and 256, got 0",
        ),
        (
            {"EDGEAUTH_SERVER_KEEPALIVE_TIMEOUT_SECONDS": "soon"},
            "EDGEAUTH_SERVER_KEEPALIVE_TIMEOUT_SECONDS: expected a finite number",
        ),
        (
            {"EDGEAUTH_ADMIN_UI": "maybe"},
            'EDGEAUTH_ADMIN_UI: expected a boolean (true or false), got "maybe"',
        ),
        (
            {"EDGEAUTH_STORE_BACKEND": "sqlit"},
            'EDGEAUTH_STORE_BACKEND: expected one of "sqlite", "postgres"; got "sqlit"'
            ' (did you mean "sqlite"?)',
        ),
        (
            {"EDGEAUTH_SERVER_LISTEN": "127.0.0.1:1,bad"},
            'EDGEAUTH_SERVER_LISTEN: expected "host:port", got "bad"',
        ),
        ({"EDGEAUTH_SERVER_LISTEN": ""}, "EDGEAUTH_SERVER_LISTEN: must not be empty"),
        (
            {"EDGEAUTH_ADMIN_LISTEN": "10.0.0.1:8001"},
            "EDGEAUTH_ADMIN_LISTEN: 10.0.0.1:8001 is not a",
        ),
        (
            {"EDGEAUTH_STORE_DSN_FILE": "missing"},
            "EDGEAUTH_STORE_DSN_FILE: cannot read secret file /",
        ),
        (
            {"EDGEAUTH_SERVER_WORKRS": "2"},
            'EDGEAUTH_SERVER_WORKRS: unknown key "workrs" in [server] (did you mean "workers"?)',
        ),
        (
            {"EDGEAUTH_LOG_LEVL": "debug"},
            'EDGEAUTH_LOG_LEVL: unknown key "levl" in [log] (did you mean "level"?)',
        ),
    ],
)
def test_environment_problems_name_the_variable(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    assert expected in only_problem(tmp_path, "", env)


def test_load_settings_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEAUTH_LOG_LEVEL", "warning")
    monkeypatch.setenv("EDGEAUTH_REQUIRE_PG", "1")
    assert load_settings(write_config(tmp_path, "")).log.level == "warning"


def test_overrides_do_not_mutate_the_callers_mapping(tmp_path: Path) -> None:
    write_config(tmp_path, "")
    data: dict[str, object] = {"server": {"workers": 3}}
    settings = parse_settings(
        data, source=tmp_path / "c.toml", environ={"EDGEAUTH_SERVER_WORKERS": "5"}
    )
    assert (settings.server.workers, data) == (5, {"server": {"workers": 3}})


# ---- all problems together; loading failures -----------------------------------------------


def test_five_mistakes_are_reported_together(tmp_path: Path) -> None:
    text = (
        '[server]\nworkers = "many"\ntls_key_file = "certs/missing.key"\n'
        '[store]\nbackend = "sqlit"\n'
        "[metrcs]\n" + SERVICE.replace('"/events"', '"events"')
    )
    found = problems(tmp_path, text)
    expected = [
        'server.workers: expected an integer, got "many"',
        "server.tls_key_file: file not found: ",
        'store.backend: expected one of "sqlite", "postgres"; got "sqlit"',
        'metrcs: unknown section "metrcs" (did you mean "metrics"?)',
        'services[0].routes[0].paths[0]: must start with "/", got "events"',
    ]
    assert len(found) == len(expected), found
    for fragment in expected:
        assert any(fragment in problem for problem in found), fragment


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[server]\nworkers = = 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    (problem,) = info.value.problems
    assert problem.startswith("config.toml: TOML syntax error: ")
    assert "line 2" in problem


def test_parse_toml_checks_text_as_if_read_from_its_file(tmp_path: Path) -> None:
    """POST /config checks a new file before writing it where the running one is."""
    source = write_config(tmp_path, "")
    settings = parse_toml('[store]\npath = "db/x.db"\n', source=source)
    assert (settings.source, settings.store.path) == (source, tmp_path / "db/x.db")
    with pytest.raises(ConfigError) as info:
        parse_toml("[server]\nworkers = = 2\n", source=source)
    (problem,) = info.value.problems
    assert problem.startswith("config.toml: TOML syntax error: ")
    with pytest.raises(ConfigError) as info:
        parse_toml("[server]\nworkerz = 1\nworkers = 0\n", source=source)
    assert len(info.value.problems) == 2


def test_restart_needed_names_each_key_a_reload_cannot_change(tmp_path: Path) -> None:
    running = load(tmp_path, '[server]\nlisten = "127.0.0.1:8443"\nworkers = 2\n')
    assert restart_needed(running, running) == []
    changed = load(
        tmp_path,
        '[server]\nlisten = ["127.0.0.1:8443", "[::1]:8443"]\nworkers = 3\n'
        '[admin]\nlisten = "127.0.0.1:9001"\n',
    )
    assert restart_needed(running, changed) == [
        "config.toml: server.listen: a reload cannot change it (running: 127.0.0.1:8443);"
        " restart instead",
        "config.toml: admin.listen: a reload cannot change it (running: 127.0.0.1:8001);"
        " restart instead",
        "config.toml: server.workers: a reload cannot change it (running: 2); restart instead",
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.toml", environ={})
    assert info.value.problems == (
        f"nope.toml: cannot read {tmp_path / 'nope.toml'}: No such file or directory",
    )


def test_relative_config_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, '[store]\npath = "db/edgeauth.db"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings("config.toml", environ={})
    assert settings.source == tmp_path / "config.toml"
    assert settings.store.path == tmp_path / "db/edgeauth.db"


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        (
            {"admin": {"listen": "127.0.0.1:9100"}, "status": {"listen": "127.0.0.1:9100"}},
            "status.listen[0]",
        ),
        (
            {"server": {"listen": "0.0.0.0:9443"}, "status": {"listen": "127.0.0.1:9443"}},
            "status.listen[0]",
        ),
        (
            {"server": {"listen": "127.0.0.1:9443", "http_listen": "127.0.0.1:9443"}},
            "server.http_listen[0]",
        ),
    ],
)
def test_listeners_sharing_an_address_are_refused(
    tmp_path: Path, tables: dict[str, dict[str, str]], key: str
) -> None:
    """SO_REUSEPORT would let two of edgeauth's own listeners bind one port silently."""
    doc = {"admin": {"listen": "127.0.0.1:9101"}, "status": {"listen": "127.0.0.1:9102"}}
    for name, table in tables.items():
        doc[name] = {**doc.get(name, {}), **table}
    text = "\n".join(
        f"[{name}]\n" + "\n".join(f'{k} = "{v}"' for k, v in table.items())
        for name, table in doc.items()
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, text), environ={})
    assert any(f": {key}: " in p and "overlaps" in p for p in caught.value.problems), (
        caught.value.problems
    )


def test_listeners_on_port_0_or_other_families_may_share_a_host(tmp_path: Path) -> None:
    text = (
        '[server]\nlisten = "127.0.0.1:0"\nhttp_listen = "[::1]:9180"\n'
        '[admin]\nlisten = "127.0.0.1:0"\n[status]\nlisten = "0.0.0.0:9180"\n'
    )
    settings = load_settings(write_config(tmp_path, text), environ={})
    assert settings.status.listen[0].port == 9180
