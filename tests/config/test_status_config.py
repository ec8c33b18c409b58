"""The `[status]` section: its default address, its environment overrides, and what
check-config says about a status listener that serves consumer names or nothing at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeauth.config import Address, Settings, parse_settings
from edgeauth.config.checks import exposure_warnings, inert_keys
from edgeauth.errors import ConfigError


def settings(
    tmp_path: Path, env: dict[str, str] | None = None, **tables: dict[str, Any]
) -> Settings:
    doc: dict[str, Any] = {"server": {"tls_cert_file": __file__, "tls_key_file": __file__}}
    doc.update(tables)
    return parse_settings(doc, source=tmp_path / "config.toml", environ=env)


def test_the_status_listener_defaults_to_loopback_port_8100(tmp_path: Path) -> None:
    status = settings(tmp_path).status
    assert status.listen == (Address("127.0.0.1", 8100),)
    assert status.metrics is False


@pytest.mark.parametrize(
    ("env", "listen", "metrics"),
    [
        ({"EDGEAUTH_STATUS_LISTEN": "127.0.0.1:9100"}, (Address("127.0.0.1", 9100),), False),
        (
            {"EDGEAUTH_STATUS_LISTEN": "127.0.0.1:1, [::1]:2"},
            (Address("127.0.0.1", 1), Address("::1", 2)),
            False,
        ),
        ({"EDGEAUTH_STATUS_LISTEN": ""}, (), False),
        ({"EDGEAUTH_STATUS_METRICS": "yes"}, (Address("127.0.0.1", 7),), True),
    ],
)
def test_environment_overrides_the_status_section(
    tmp_path: Path, env: dict[str, str], listen: tuple[Address, ...], metrics: bool
) -> None:
    status = settings(tmp_path, env, status={"listen": "127.0.0.1:7", "metrics": False}).status
    assert (status.listen, status.metrics) == (listen, metrics)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"EDGEAUTH_STATUS_LISTN": "127.0.0.1:1"},
            'config.toml: EDGEAUTH_STATUS_LISTN: unknown key "listn" in [status]'
            ' (did you mean "listen"?)',
        ),
        (
            {"EDGEAUTH_STATUS_METRICS": "maybe"},
            'config.toml: EDGEAUTH_STATUS_METRICS: expected a boolean (true or false), got "maybe"',
        ),
        (
            {"EDGEAUTH_STATUS_LISTEN": "nowhere"},
            'config.toml: EDGEAUTH_STATUS_LISTEN: expected "host:port", got "nowhere"',
        ),
    ],
)
def test_a_bad_status_override_is_named_by_its_variable(
    tmp_path: Path, env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, env)
    assert info.value.problems == (problem,)


def test_status_metrics_with_per_consumer_labels_warns_of_exposed_usernames(
    tmp_path: Path,
) -> None:
    exposed = settings(
        tmp_path, status={"metrics": True}, metrics={"per_consumer": True, "enabled": True}
    )
    (warning,) = exposure_warnings(exposed)
    assert warning.startswith("config.toml: status.metrics: the status listener serves /metrics")
    assert "metrics.per_consumer = true" in warning
    assert inert_keys(exposed) == []
    # any one of the three off, and nobody sees a username without a token
    for tables in (
        {"status": {"metrics": False}, "metrics": {"per_consumer": True}},
        {"status": {"metrics": True}, "metrics": {"per_consumer": False}},
        {"status": {"metrics": True, "listen": ""}, "metrics": {"per_consumer": True}},
        {"status": {"metrics": True}, "metrics": {"per_consumer": True, "enabled": False}},
    ):
        assert exposure_warnings(settings(tmp_path, **tables)) == [], tables


def test_status_metrics_does_nothing_while_metrics_are_disabled(tmp_path: Path) -> None:
    quiet = settings(tmp_path, status={"metrics": True}, metrics={"enabled": False})
    assert inert_keys(quiet) == [
        "config.toml: status.metrics: does nothing: metrics.enabled is false"
    ]
