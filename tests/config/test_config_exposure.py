"""What a configuration exposes (issue 12): route spelling keys, the gateway's public URL, the
request headers it drops, and the warning for a public upstream that contains a protected one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeauth.config.checks import exposure_warnings
from edgeauth.config.schema import DROPPED_REQUEST_HEADERS
from tests.config.test_config import OAUTH2, SERVICE, load, only_problem, problems, route


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, SERVICE)
    (service,) = settings.services
    (events,) = service.routes
    assert (events.allow_path_params, events.case_insensitive) == (False, False)
    assert service.public_url == ""
    assert settings.server.public_url == ""
    assert settings.server.drop_request_headers == DROPPED_REQUEST_HEADERS
    assert DROPPED_REQUEST_HEADERS == (
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    )


def test_values_are_normalized(tmp_path: Path) -> None:
    text = (
        '[server]\npublic_url = "https://gw.example.com/"\n'
        'drop_request_headers = ["X-Original-URL", "x-debug"]\n'
        + SERVICE.replace('url = "http', 'public_url = "http://a.example/auth/"\nurl = "http')
    )
    settings = load(tmp_path, text)
    assert settings.server.public_url == "https://gw.example.com"
    assert settings.server.drop_request_headers == ("x-original-url", "x-debug")
    assert settings.services[0].public_url == "http://a.example/auth"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SERVICE + route("p", '["/a;b"]'), 'paths[0]: must not contain ";"'),
        (SERVICE + route("p", '["/a%3bb"]'), 'paths[0]: must not contain "%3b"'),
        (SERVICE + route("p", '["/a//b"]'), 'paths[0]: must not contain "//"'),
        (
            SERVICE + route("p", '["/EVENTS/"]', "case_insensitive = true"),
            'route "p" is ambiguous with route "events-api"',
        ),
        ('[server]\npublic_url = "gw.example.com"\n', "server.public_url: expected http://"),
        ('[server]\npublic_url = "ftp://gw"\n', "server.public_url: expected http://"),
        ('[server]\npublic_url = "https://gw/?a"\n', "server.public_url: must not have a query"),
        ('[server]\npublic_url = "https://u@gw"\n', "server.public_url: must not have a query"),
        ('[server]\npublic_url = "https://gw/#"\n', "server.public_url: must not have a fragment"),
        (
            SERVICE.replace('url = "http', 'public_url = "x"\nurl = "http'),
            "services[0].public_url: expected http://",
        ),
        (
            '[server]\ndrop_request_headers = ["x ray"]\n',
            'server.drop_request_headers[0]: not a header name: "x ray"',
        ),
    ],
)
def test_problems(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in only_problem(tmp_path, text)


def test_case_sensitive_spellings_of_one_prefix_do_not_clash(tmp_path: Path) -> None:
    load(tmp_path, SERVICE + route("p", '["/EVENTS"]'))
    assert problems(tmp_path, SERVICE + route("p", '["/Events"]', "case_insensitive = true"))


def _two(public: str, protected: str, protected_route: str = "") -> str:
    return f"""
[[services]]
name = "pub"
url = "{public}"
  [[services.routes]]
  name = "pub"
  paths = ["/pub"]

[[services]]
name = "api"
url = "{protected}"
  [[services.routes]]
  name = "api"
  paths = ["/api"]
  {protected_route}
{OAUTH2}"""


@pytest.mark.parametrize(
    ("public", "protected", "protected_route"),
    [
        ("http://h:1", "http://h:1/api/events", ""),
        ("http://h:1/", "http://h:1/api", ""),
        ("http://h:1/api", "http://h:1/api", ""),
        ("http://H:1/api/", "http://h:1/api/events/", ""),
        ("http://h", "http://h:80/x", ""),
        ("https://h/x", "https://h:443/x/y", ""),
        ("http://h/api", "http://h", "strip_path = false"),  # reaches /api/... upstream too
    ],
)
def test_a_public_upstream_containing_a_protected_one_is_warned(
    tmp_path: Path, public: str, protected: str, protected_route: str
) -> None:
    settings = load(tmp_path, _two(public, protected, protected_route))
    (warning,) = exposure_warnings(settings)
    assert warning.startswith('config.toml: services[0].url: public service "pub"')
    assert '"api"' in warning


@pytest.mark.parametrize(
    ("public", "protected", "protected_route"),
    [
        ("http://h:1/tools", "http://h:1/api", ""),
        ("http://h:1/ap", "http://h:1/api", ""),
        ("http://h:1/api/events", "http://h:1/api", ""),
        ("http://h:2", "http://h:1/api", ""),
        ("http://g:1", "http://h:1/api", ""),
        ("https://h:1", "http://h:1/api", ""),
        ("http://h/tools", "http://h", "strip_path = false"),
    ],
)
def test_separate_upstreams_are_not_warned(
    tmp_path: Path, public: str, protected: str, protected_route: str
) -> None:
    assert exposure_warnings(load(tmp_path, _two(public, protected, protected_route))) == []
