"""Where relative paths land under systemd (config/__init__.py), and unwritable_paths.

Under StateDirectory= the relative paths of files edgeauth writes resolve in $STATE_DIRECTORY,
under LogsDirectory= those of log files in $LOGS_DIRECTORY; files it only reads stay relative
to config.toml; without the variables nothing changes. Real files under tmp_path throughout.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edgeauth import tls
from edgeauth.config import Settings, parse_settings
from edgeauth.config.checks import unwritable_paths
from edgeauth.errors import ConfigError


@pytest.fixture
def etc(tmp_path: Path, dev_cert: tls.DevCertificate) -> Path:
    """A config directory holding the files a config only reads, at relative paths."""
    directory = tmp_path / "etc"
    (directory / "certs").mkdir(parents=True)
    shutil.copy(dev_cert.cert_file, directory / "certs" / "edgeauth.crt")
    shutil.copy(dev_cert.key_file, directory / "certs" / "edgeauth.key")
    shutil.copy(dev_cert.ca_file, directory / "certs" / "ca.crt")
    (directory / "secrets").mkdir()
    (directory / "secrets" / "app.secret").write_text("app-secret\n")
    (directory / "secrets" / "dsn").write_text("postgresql://127.0.0.1/test\n")
    return directory


def config(**tables: dict[str, Any]) -> dict[str, Any]:
    """A config naming every kind of path: written, logged and only read."""
    oauth2 = {"enable_client_credentials": True}
    route = {"name": "events-api", "paths": ["/events"]}
    events = {"name": "events", "url": "http://127.0.0.1:1/", "routes": [route], "oauth2": oauth2}
    orders = {
        "name": "orders",
        "url": "http://127.0.0.1:1/",
        "ca_file": "certs/ca.crt",
        "routes": [{"name": "orders-api", "paths": ["/orders"]}],
        "oauth2": {**oauth2, "provision_key_file": "var/orders.provision_key"},
    }
    app = {"name": "app", "client_id": "app", "client_secret_file": "secrets/app.secret"}
    data: dict[str, Any] = {
        "log": {"access_log": "access.log", "audit_log": "audit/audit.log"},
        "services": [events, orders],
        "consumers": [{"username": "someone", "oauth2": [app]}],
    }
    data.update(tables)
    return data


def parse(etc: Path, data: dict[str, Any], **environ: str) -> Settings:
    return parse_settings(data, source=etc / "config.toml", environ=environ)


def written(settings: Settings) -> list[Path | None]:
    keys = [service.oauth2.provision_key_file for service in settings.services if service.oauth2]
    return [settings.admin.token_file, settings.store.path, *keys]


def read_only(settings: Settings) -> list[Path | None]:
    return [
        settings.server.tls_cert_file,
        settings.server.tls_key_file,
        settings.services[1].ca_file,
    ]


def test_without_systemd_every_relative_path_starts_at_the_config(etc: Path) -> None:
    settings = parse(etc, config())
    assert written(settings) == [
        etc / "var" / "admin.token",
        etc / "var" / "edgeauth.db",
        etc / "var" / "events.provision_key",
        etc / "var" / "orders.provision_key",
    ]
    assert settings.log.access_log == str(etc / "access.log")
    assert settings.log.audit_log == str(etc / "audit" / "audit.log")
    assert parse_settings(config(), source=etc / "config.toml") == settings  # environ=None


def test_state_directory_takes_the_files_edgeauth_writes(etc: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = parse(etc, config(), STATE_DIRECTORY=str(state))
    assert written(settings) == [
        state / "var" / "admin.token",
        state / "var" / "edgeauth.db",
        state / "var" / "events.provision_key",  # the default file name, too
        state / "var" / "orders.provision_key",
    ]
    assert read_only(settings) == [
        etc / "certs" / "edgeauth.crt",
        etc / "certs" / "edgeauth.key",
        etc / "certs" / "ca.crt",
    ]
    assert settings.consumers[0].oauth2[0].client_secret == "app-secret"  # read from etc/
    assert settings.log.access_log == str(etc / "access.log")  # logs follow LOGS_DIRECTORY


def test_logs_directory_takes_relative_log_files_only(etc: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    settings = parse(etc, config(), LOGS_DIRECTORY=str(logs))
    assert settings.log.access_log == str(logs / "access.log")
    assert settings.log.audit_log == str(logs / "audit" / "audit.log")
    assert settings.admin.token_file == etc / "var" / "admin.token"
    streams = parse(etc, config(log={"audit_log": "stderr"}), LOGS_DIRECTORY=str(logs))
    assert (streams.log.access_log, streams.log.audit_log) == ("stdout", "stderr")


def test_absolute_paths_stay_where_they_are(etc: Path, tmp_path: Path) -> None:
    mine = tmp_path / "elsewhere"
    data = config(
        admin={"token_file": str(mine / "admin.token")},
        store={"path": str(mine / "db.sqlite")},
        log={"access_log": str(mine / "access.log")},
    )
    settings = parse(etc, data, STATE_DIRECTORY="/srv/state", LOGS_DIRECTORY="/srv/logs")
    assert settings.admin.token_file == mine / "admin.token"
    assert settings.store.path == mine / "db.sqlite"
    assert settings.log.access_log == str(mine / "access.log")


def test_the_first_of_several_state_directories(etc: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    settings = parse(etc, config(), STATE_DIRECTORY=f"{first}:{second}")
    assert settings.store.path == first / "var" / "edgeauth.db"


def test_an_overridden_relative_path_lands_in_the_state_directory(
    etc: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = parse(
        etc, config(), STATE_DIRECTORY=str(state), EDGEAUTH_ADMIN_TOKEN_FILE="admin.token"
    )
    assert settings.admin.token_file == state / "admin.token"


def test_a_provision_key_already_in_the_state_directory_is_read(etc: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "var").mkdir(parents=True)
    (state / "var" / "events.provision_key").write_text("the-key\n")
    (etc / "var").mkdir()
    (etc / "var" / "events.provision_key").write_text("a-stale-key\n")
    settings = parse(etc, config(), STATE_DIRECTORY=str(state))
    oauth2 = settings.services[0].oauth2
    assert oauth2 is not None
    assert oauth2.provision_key == "the-key"


@pytest.mark.parametrize("variable", ["STATE_DIRECTORY", "LOGS_DIRECTORY"])
def test_a_relative_systemd_directory_is_a_problem(etc: Path, variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(etc, config(), **{variable: "var/lib"})
    expected = f'config.toml: {variable}: expected an absolute directory, got "var/lib"'
    assert list(caught.value.problems) == [expected]


def ready(etc: Path, tmp_path: Path, **tables: dict[str, Any]) -> tuple[Settings, Path, Path]:
    """Settings under fresh state and logs directories (with logs/audit, which edgeauth does
    not create); the reachable setup that unwritable_paths accepts."""
    state, logs = tmp_path / "state", tmp_path / "logs"
    (logs / "audit").mkdir(parents=True)
    state.mkdir()
    env = {"STATE_DIRECTORY": str(state), "LOGS_DIRECTORY": str(logs)}
    return parse(etc, config(**tables), **env), state, logs


def test_a_fresh_state_directory_is_writable(etc: Path, tmp_path: Path) -> None:
    settings, _, _ = ready(etc, tmp_path)
    assert unwritable_paths(settings) == []


def test_each_file_that_cannot_be_created_is_named_with_its_key(etc: Path, tmp_path: Path) -> None:
    settings, state, logs = ready(etc, tmp_path)
    (state / "var").write_text("")  # a file where edgeauth would make its directory
    shutil.rmtree(logs / "audit")
    var = state / "var"
    assert unwritable_paths(settings) == [
        f"config.toml: admin.token_file: cannot create {var / 'admin.token'}:"
        f" {var} is not a directory",
        f"config.toml: services[0].oauth2.provision_key_file: cannot create"
        f" {var / 'events.provision_key'}: {var} is not a directory",
        f"config.toml: services[1].oauth2.provision_key_file: cannot create"
        f" {var / 'orders.provision_key'}: {var} is not a directory",
        f"config.toml: store.path: cannot create {var / 'edgeauth.db'}: {var} is not a directory",
        f"config.toml: log.audit_log: cannot create {logs / 'audit' / 'audit.log'}:"
        f" {logs / 'audit'} does not exist (edgeauth creates log files, not directories)",
    ]


def test_existing_files_must_be_regular_files(etc: Path, tmp_path: Path) -> None:
    settings, state, logs = ready(etc, tmp_path)
    (state / "var" / "admin.token").mkdir(parents=True)
    (state / "var" / "edgeauth.db").write_text("")
    (state / "var" / "edgeauth.db-wal").mkdir()
    (logs / "access.log").mkdir()
    assert unwritable_paths(settings) == [
        f"config.toml: admin.token_file: {state / 'var' / 'admin.token'} is not a regular file",
        f"config.toml: store.path: {state / 'var' / 'edgeauth.db-wal'} is not a regular file",
        f"config.toml: log.access_log: {logs / 'access.log'} is not a regular file",
    ]


def test_only_files_the_gateway_writes_are_checked(etc: Path, tmp_path: Path) -> None:
    """A postgres store has no file; log streams are not files."""
    store = {"backend": "postgres", "dsn_file": "secrets/dsn"}
    log = {"access_log": "stdout", "audit_log": "off"}
    settings, state, _ = ready(etc, tmp_path, store=store, log=log)
    (state / "var").mkdir()
    (state / "var" / "edgeauth.db").mkdir()  # would be refused as the SQLite file
    assert unwritable_paths(settings) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check (os.access)")
def test_read_only_directories_are_refused_for_the_current_user(etc: Path, tmp_path: Path) -> None:
    settings, state, _ = ready(etc, tmp_path, admin={"allow_config_post": True})
    state.chmod(0o555)
    etc.chmod(0o555)
    try:
        problems = unwritable_paths(settings)
    finally:
        state.chmod(0o755)
        etc.chmod(0o755)
    token = state / "var" / "admin.token"
    assert problems[0].startswith(f"config.toml: admin.token_file: cannot create {token}: {state}")
    assert problems[-1].startswith(
        f"config.toml: admin.allow_config_post: POST /config rewrites config.toml, but {etc}"
    )
    assert len(problems) == 5  # the token, two provision keys, the database, config.toml
