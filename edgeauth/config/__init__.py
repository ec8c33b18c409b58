"""config.toml → Settings: frozen, slotted dataclasses, built and validated once at startup.

Invariants: every problem is raised together in one ConfigError, one line each,
"<file>: <key path>: <message>"; relative paths resolve against the config file's directory,
except under systemd: with $STATE_DIRECTORY set (StateDirectory=) the relative paths of files
edgeauth writes (store.path, admin.token_file, provision_key_file) resolve against it, and with
$LOGS_DIRECTORY set (LogsDirectory=) those of log files do; files edgeauth only reads
(certificates, CA files, *_file secrets) stay relative to the config. Environment overrides
apply before validation. Imports only edgeauth.errors and this package.
"""

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from edgeauth.config.checks import CHECKS
from edgeauth.config.env import apply_environ
from edgeauth.config.scalars import show
from edgeauth.config.schema import (
    Address,
    AdminSettings,
    CacheSettings,
    ConsumerSettings,
    CredentialSettings,
    LogSettings,
    MetricsSettings,
    Network,
    OAuth2Settings,
    RouteSettings,
    ServerSettings,
    ServiceSettings,
    Settings,
    StatusSettings,
    StoreSettings,
    StreamSettings,
)
from edgeauth.config.walker import Context, build, reason
from edgeauth.errors import ConfigError

__all__ = [
    "Address",
    "AdminSettings",
    "CacheSettings",
    "ConsumerSettings",
    "CredentialSettings",
    "LogSettings",
    "MetricsSettings",
    "Network",
    "OAuth2Settings",
    "RouteSettings",
    "ServerSettings",
    "ServiceSettings",
    "Settings",
    "StatusSettings",
    "StoreSettings",
    "StreamSettings",
    "load_settings",
    "parse_settings",
    "parse_toml",
]


def parse_settings(
    data: Mapping[str, object], *, source: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validates parsed TOML into Settings; `environ` None means no overrides (pure callers)."""
    source = Path(source).absolute()
    environ = environ or {}
    base = source.parent
    ctx = Context(file=source.name, base=base, state=base, logs=base, checks=CHECKS)
    ctx.state = _systemd_directory(environ, "STATE_DIRECTORY", ctx)
    ctx.logs = _systemd_directory(environ, "LOGS_DIRECTORY", ctx)
    merged = apply_environ(data, environ, ctx)
    settings = build(Settings, merged, "", ctx, preset={"source": source})
    if ctx.problems or not isinstance(settings, Settings):
        raise ConfigError(ctx.problems)
    return settings


def _systemd_directory(environ: Mapping[str, str], variable: str, ctx: Context) -> Path:
    """The directory systemd made for the unit (the first when it lists several, as
    StateDirectory=a b does), or the config's directory without one."""
    first = environ.get(variable, "").split(":")[0]
    if not first:
        return ctx.base
    if not Path(first).is_absolute():
        ctx.problem(variable, f"expected an absolute directory, got {show(first)}")
        return ctx.base
    return Path(first)


def parse_toml(text: str, *, source: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """config.toml's text → Settings, as if read from `source` (POST /config checks a new
    file whole before writing it there); `environ` None means no overrides."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{Path(source).name}: TOML syntax error: {exc}"]) from exc
    return parse_settings(data, source=source, environ=environ)


def load_settings(path: Path | str, environ: Mapping[str, str] | None = None) -> Settings:
    """Reads and validates config.toml; overrides come from os.environ unless `environ` is given."""
    source = Path(path).absolute()
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source.name}: cannot read {source}: {reason(exc)}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source.name}: TOML syntax error: {exc}"]) from exc
    return parse_toml(text, source=source, environ=os.environ if environ is None else environ)
