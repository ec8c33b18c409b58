"""config.toml → Settings: frozen, slotted dataclasses, built and validated once at startup.

Invariants: every problem is raised together in one ConfigError, one line each,
"<file>: <key path>: <message>"; relative paths resolve against the config file's directory;
environment overrides apply before validation. Imports only edgeauth.errors and this package.
"""

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from edgeauth.config.checks import CHECKS
from edgeauth.config.env import apply_environ
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
    "load_settings",
    "parse_settings",
    "parse_toml",
]


def parse_settings(
    data: Mapping[str, object], *, source: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validates parsed TOML into Settings; `environ` None means no overrides (pure callers)."""
    source = Path(source).absolute()
    ctx = Context(file=source.name, base=source.parent, checks=CHECKS)
    merged = apply_environ(data, environ or {}, ctx)
    settings = build(Settings, merged, "", ctx, preset={"source": source})
    if ctx.problems or not isinstance(settings, Settings):
        raise ConfigError(ctx.problems)
    return settings


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
