"""Path normalization and route matching as plain values (design §3)."""

from __future__ import annotations

from typing import Any

import pytest

from edgeauth.config import RouteSettings, ServiceSettings
from edgeauth.errors import BadPath
from edgeauth.routing import Router, normalize_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a//b", "/a/b"),
        ("//a///b//", "/a/b/"),
        ("/a//../b", "/b"),
        ("/a/.//b", "/a/b"),
        ("/a/b;x=1/c", "/a/b;x=1/c"),
        ("/a/b%3bx", "/a/b%3Bx"),
        ("/a/./b", "/a/b"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/b/../c", "/a/c"),
        ("/a/%7Euser", "/a/~user"),
        ("/a/%2e/b", "/a/b"),
        ("/a/%41%2d", "/a/A-"),
        ("/a/%20b", "/a/%20b"),
        ("/a/%3f", "/a/%3F"),
        ("/a/b/", "/a/b/"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_path(raw).path == expected


@pytest.mark.parametrize(
    "raw",
    [
        "/a%2Fb",
        "/a%2fb",
        "/a%5cb",
        "/a%00",
        "/a\\b",
        "/..",
        "/a/../..",
        "/%2e%2e",
        "a/b",
        "*",
        "/a#",
        "/a#/b",
        "/a/b%23#x",
        "/a/..;/b",
        "/a/.;x/b",
        "/a/;x/b",
        "/a/%3Bx/b",
        "/a/..;",
    ],
)
def test_normalize_refuses(raw: str) -> None:
    with pytest.raises(BadPath):
        normalize_path(raw)


def _service(name: str, url: str, *routes: dict[str, Any]) -> ServiceSettings:
    built = tuple(
        RouteSettings(
            name=r.get("name", f"{name}-{i}"),
            paths=tuple(r["paths"]),
            hosts=tuple(r.get("hosts", ())),
            methods=tuple(r.get("methods", ())),
            strip_path=r.get("strip_path", True),
            required_scopes=(),
            allow_path_params=r.get("allow_path_params", False),
            case_insensitive=r.get("case_insensitive", False),
        )
        for i, r in enumerate(routes)
    )
    return ServiceSettings(
        name=name,
        url=url,
        connect_timeout_seconds=5,
        read_timeout_seconds=60,
        max_connections=10,
        max_request_body_bytes=0,
        retries=0,
        tls_verify=True,
        ca_file=None,
        routes=built,
        oauth2=None,
    )


ROUTER = Router(
    [
        _service("root", "http://u/", {"paths": ["/"]}),
        _service("events", "http://u/api/events", {"paths": ["/events"]}),
        _service("deep", "http://u", {"paths": ["/events/admin/"], "strip_path": False}),
        _service("hosted", "http://u", {"paths": ["/events"], "hosts": ["*.example.com"]}),
        _service(
            "posting",
            "http://u",
            {"paths": ["/events"], "hosts": ["api.example.com"], "methods": ["POST"]},
        ),
    ]
)


@pytest.mark.parametrize(
    ("host", "method", "path", "service"),
    [
        ("gw", "GET", "/events", "events"),
        ("gw", "GET", "/events/1", "events"),
        ("gw", "GET", "/eventsX", "root"),
        ("gw", "GET", "/events/admin", "deep"),
        ("gw", "GET", "/events/admin/x", "deep"),
        ("gw", "GET", "/events/adminx", "events"),
        ("a.example.com", "GET", "/events/1", "hosted"),
        ("A.EXAMPLE.COM:8443", "GET", "/events/1", "hosted"),
        ("api.example.com", "POST", "/events/1", "posting"),
        ("api.example.com", "GET", "/events/1", "hosted"),
        ("example.com", "GET", "/events/1", "events"),
        ("[::1]:8443", "GET", "/events", "events"),
    ],
)
def test_match_precedence(host: str, method: str, path: str, service: str) -> None:
    target = ROUTER.match(host, method, normalize_path(path))
    assert target is not None
    assert target.service.name == service


def test_no_match_without_root_route() -> None:
    router = Router([_service("events", "http://u", {"paths": ["/events"]})])
    assert router.match("gw", "GET", normalize_path("/other")) is None
    assert router.match("gw", "GET", normalize_path("/eventsX")) is None


@pytest.mark.parametrize("path", ["/events/../events/1", "/x/../events/1", "/events/a/../../b"])
def test_dot_dot_leaving_the_route_prefix_is_refused(path: str) -> None:
    router = Router([_service("events", "http://u", {"paths": ["/events"]})])
    with pytest.raises(BadPath):
        router.match("gw", "GET", normalize_path(path))


@pytest.mark.parametrize(
    ("url", "strip", "path", "upstream"),
    [
        ("http://u/api/events", True, "/events", "/api/events"),
        ("http://u/api/events", True, "/events/", "/api/events/"),
        ("http://u/api/events", True, "/events/1", "/api/events/1"),
        ("http://u/api/", True, "/events/1", "/api/1"),
        ("http://u", True, "/events", "/"),
        ("http://u", True, "/events/1", "/1"),
        ("http://u/api", False, "/events/1", "/api/events/1"),
        ("http://u", False, "/events/1", "/events/1"),
    ],
)
def test_upstream_path(url: str, strip: bool, path: str, upstream: str) -> None:
    router = Router([_service("s", url, {"paths": ["/events"], "strip_path": strip})])
    target = router.match("gw", "GET", normalize_path(path))
    assert target is not None
    assert target.upstream_path(normalize_path(path).path) == upstream


@pytest.mark.parametrize(
    ("raw", "bare"),
    [
        ("/a/b", None),
        ("/a/b;x=1/c", "/a/b/c"),
        ("/a/b%3Bx/c", "/a/b/c"),
        ("/a;x;y/b;z", "/a/b"),
        ("/a/b/;jsessionid=1", "/a/b/"),
        ("/;x", "/"),
    ],
)
def test_parameters_are_cut_for_matching_only(raw: str, bare: str | None) -> None:
    path = normalize_path(raw)
    assert path.bare == bare
    assert path.path == raw


NESTED = Router(
    [
        _service("pub", "http://u/", {"paths": ["/pub"], "allow_path_params": True}),
        _service("admin", "http://u/admin", {"paths": ["/pub/admin"]}),
        _service("ci", "http://u/ci", {"paths": ["/pub/Ci"], "case_insensitive": True}),
        _service("cs", "http://u/cs", {"paths": ["/pub/Cs"]}),
        _service("root", "http://u/root", {"paths": ["/"]}),
    ]
)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/pub/admin/x", "admin"),
        ("/pub//admin/x", "admin"),
        ("/pub/x;y=1/z", "pub"),
        ("/pub;y=1", "pub"),
        ("/pub/CI/x", "ci"),
        ("/pub/ci", "ci"),
        ("/PUB/ci", "ci"),
        ("/PUB/x", "root"),
        ("/pub/Cs/x", "cs"),
        ("/pub/cs/x", "pub"),
        ("/pub/CS", "pub"),
        ("/other", "root"),
    ],
)
def test_nested_routes(path: str, service: str) -> None:
    target = NESTED.match("gw", "GET", normalize_path(path))
    assert target is not None
    assert target.service.name == service


@pytest.mark.parametrize(
    "path",
    ["/pub/admin;jsessionid=1/x", "/pub/admin%3B/x", "/pub/admin%3b/x", "/pub/ci;x", "/x;y"],
)
def test_parameters_on_a_route_that_does_not_allow_them_are_refused(path: str) -> None:
    """Matched as if absent, so `/pub/admin;x` can never land on the less protected `/pub`."""
    with pytest.raises(BadPath):
        NESTED.match("gw", "GET", normalize_path(path))


@pytest.mark.parametrize(
    ("route", "path", "upstream"),
    [
        ({"paths": ["/pub"], "allow_path_params": True}, "/pub;s=1/x;y=2", "/base/x;y=2"),
        ({"paths": ["/pub"], "allow_path_params": True}, "/pub;s=1", "/base"),
        ({"paths": ["/a/b"], "case_insensitive": True}, "/A/B/Cd", "/base/Cd"),
        ({"paths": ["/a/b"], "case_insensitive": True}, "/A/b", "/base"),
        (
            {"paths": ["/a/b"], "case_insensitive": True, "strip_path": False},
            "/A/b/c",
            "/base/A/b/c",
        ),
    ],
)
def test_prefix_is_stripped_by_segments_in_the_clients_spelling(
    route: dict[str, Any], path: str, upstream: str
) -> None:
    router = Router([_service("s", "http://u/base", route)])
    normal = normalize_path(path)
    target = router.match("gw", "GET", normal)
    assert target is not None
    assert target.upstream_path(normal.path) == upstream


def test_case_folding_is_ascii_only_and_keeps_lengths() -> None:
    router = Router([_service("s", "http://u/base", {"paths": ["/ä/b"], "case_insensitive": True})])
    target = router.match("gw", "GET", normalize_path("/ä/B/İx"))
    assert target is not None
    assert target.upstream_path("/ä/B/İx") == "/base/İx"
    assert router.match("gw", "GET", normalize_path("/Ä/b")) is None
