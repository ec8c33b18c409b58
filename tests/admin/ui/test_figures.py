"""What the overview and configuration pages compute (admin/ui/pages.py): traffic figures from
the metrics' text, windows between looks, the configuration with its secrets redacted; and that
the templates and static files are package data a wheel ships."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from edgeauth.admin.ui import pages
from edgeauth.config import parse_settings
from tests.admin.ui.conftest import Console
from tests.conftest import ROOT, eventually
from tests.oauth.conftest import KONG_HASH

TEXT = """\
# HELP edgeauth_http_requests_total Requests answered.
# TYPE edgeauth_http_requests_total counter
edgeauth_http_requests_total{service="a",route="r",code="200",source="upstream",consumer=""} 90.0
edgeauth_http_requests_total{service="a",route="r",code="502",source="edgeauth",consumer=""} 10.0
edgeauth_http_requests_total{service="b",route="r",code="404",source="upstream",consumer=""} 4.0
# TYPE edgeauth_request_latency_ms histogram
edgeauth_request_latency_ms_bucket{le="5.0",service="a"} 50.0
edgeauth_request_latency_ms_bucket{le="10.0",service="a"} 98.0
edgeauth_request_latency_ms_bucket{le="25.0",service="a"} 100.0
edgeauth_request_latency_ms_bucket{le="+Inf",service="a"} 100.0
edgeauth_request_latency_ms_sum{service="a"} 700.0
edgeauth_request_latency_ms_count{service="a"} 100.0
# TYPE edgeauth_config_reloads_total counter
edgeauth_config_reloads_total{result="success"} 3
edgeauth_config_reloads_total{result="failure"} 1
# TYPE edgeauth_config_last_reload_success_timestamp_seconds gauge
edgeauth_config_last_reload_success_timestamp_seconds 1800000000.000
"""


def test_the_metrics_text_gives_requests_errors_latency_and_reloads() -> None:
    traffic, reloads = pages.read_metrics(TEXT)
    assert traffic.requests == {"a": 100.0, "b": 4.0}
    assert traffic.errors == {"a": 10.0}  # 5xx only: a 404 is the client's
    assert traffic.buckets["a"][10.0] == 98.0
    assert reloads == pages.Reloads(3, 1, 1_800_000_000.0)
    assert pages.read_metrics("")[1] == pages.Reloads()


def test_figures_are_over_the_window() -> None:
    now, _ = pages.read_metrics(TEXT)
    figures = pages.figures("a", 10.0, now, pages.Traffic())
    assert figures == pages.Figures("10.00", "10.0 %", "≤ 25 ms")
    assert pages.figures("b", 2.0, now, pages.Traffic()).errors == "0.0 %"
    idle = pages.figures("a", 5.0, now, now)
    assert idle == pages.Figures("0.00", "—", "—")


def test_p99_is_the_bound_99_percent_stayed_within() -> None:
    assert pages.p99_of({5.0: 99.0, 10.0: 100.0, float("inf"): 100.0}, {}) == "≤ 5 ms"
    slow = {5.0: 0.0, 60000.0: 50.0, float("inf"): 100.0}
    assert pages.p99_of(slow, {}) == "over 60000 ms"
    before = {5.0: 99.0, 10.0: 99.0, float("inf"): 99.0}
    assert pages.p99_of({5.0: 99.0, 10.0: 100.0, float("inf"): 100.0}, before) == "≤ 10 ms"
    assert pages.p99_of({}, {}) == "—"


def test_the_window_restarts_once_it_is_old_enough() -> None:
    sampler = pages.Sampler(started=1000.0)
    first, _ = pages.read_metrics(TEXT)
    seconds, before = sampler.window(1001.0, first)
    assert (seconds, before) == (1.0, pages.Traffic())  # too young: kept
    seconds, before = sampler.window(1010.0, first)
    assert (seconds, before) == (10.0, pages.Traffic())
    seconds, before = sampler.window(1012.0, first)
    assert (seconds, before) == (2.0, first)  # from the look at 1010


def test_the_configuration_is_shown_with_its_secrets_redacted(tmp_path: Path) -> None:
    secret_file = tmp_path / "app.secret"
    secret_file.write_text("file-secret-value\n")
    doc = {
        "server": {"tls_cert_file": __file__, "tls_key_file": __file__},
        "store": {"backend": "postgres", "dsn": "postgresql://u:dsn-password@db/x"},
        "services": [
            {
                "name": "events",
                "url": "http://127.0.0.1:9/",
                "routes": [{"name": "r", "paths": ["/e"]}],
                "oauth2": {
                    "provision_key": "provision-value",
                    "scopes": ["read"],
                    "enable_password_grant": True,
                },
            }
        ],
        "consumers": [
            {
                "username": "alice",
                "oauth2": [
                    {"name": "A", "client_id": "a1", "client_secret_file": str(secret_file)},
                    {"name": "B", "client_id": "b1", "client_secret_hash": KONG_HASH},
                ],
            }
        ],
    }
    sections = pages.config_sections(parse_settings(doc, source=tmp_path / "config.toml"))
    rows = {(s.title, key): value for s in sections for key, value in s.rows}
    for value in ("dsn-password", "provision-value", "file-secret-value", "$pbkdf2"):
        assert not [v for v in rows.values() if value in v]
    assert rows[("store", "dsn")] == "[redacted]"
    assert rows[("services[events].oauth2", "provision_key")] == "[redacted]"
    assert rows[("consumers[alice].oauth2[A]", "client_secret")] == "[redacted]"
    assert rows[("consumers[alice].oauth2[B]", "client_secret_hash")] == "[redacted]"
    assert rows[("services[events].oauth2", "scopes")] == "read"
    assert rows[("services[events].routes[r]", "paths")] == "/e"
    assert rows[("admin", "ui")] == "false"
    assert rows[("admin", "tls_cert_file")] == "(not set)"


@pytest.mark.parametrize("folder", ["templates", "static"])
def test_templates_and_static_files_are_package_data(folder: str) -> None:
    """A non-editable install has only what pyproject's package-data names."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        declared = tomllib.load(handle)["tool"]["setuptools"]["package-data"]["edgeauth.admin.ui"]
    package = ROOT / "edgeauth" / "admin" / "ui"
    files = sorted((package / folder).iterdir())
    assert files
    for path in files:
        name = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(name, glob) for glob in declared), name


async def test_the_overview_shows_traffic_per_service(console: Console) -> None:
    await console.sign_in()
    for _ in range(3):
        async with console.world.proxy.get(console.gw.url + "/public/x") as resp:
            await resp.read()

    async def shown() -> bool:
        page = (await console.get("/ui/")).text
        row = page[page.index('<th scope="row">public</th>') :].split("</tr>")[0]
        return "ms</td>" in row

    assert await eventually(shown)
