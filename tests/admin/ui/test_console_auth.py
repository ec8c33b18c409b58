"""Signing in to the console and what guards it, over a real admin listener: the session
cookie's flags (Secure with an admin listener on TLS), the headers of every response, CSRF and
Origin refusals, expired sessions, sign-out, and the console's absence when `ui` is off."""

from __future__ import annotations

import ssl
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import pytest

from edgeauth import tls
from edgeauth.admin.http import CONTEXT
from edgeauth.admin.ui.app import HEADERS
from edgeauth.admin.ui.session import COOKIE_MARGIN
from tests.admin.conftest import call
from tests.admin.ui.conftest import Console, browser, start_console
from tests.conftest import Backend, Clock, GatewayFactory
from tests.oauth.conftest import events_service

PAGES = ("/ui/", "/ui/consumers", "/ui/tokens", "/ui/config")
FORGED = "The form has expired or did not come from this console."
EXPIRED = "Your session has expired. Sign in again."


def _cookie(reply_headers: object) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for value in reply_headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        jar.load(value)
    return jar


async def test_the_sign_in_page_asks_for_the_admin_token(console: Console) -> None:
    page = await console.get("/ui/login")
    assert page.status == 200
    assert '<label for="token">Admin token</label>' in page.text
    assert 'id="token" name="token" type="password"' in page.text
    assert ">Sign in</button>" in page.text
    assert "Sign out" not in page.text  # no nav before signing in


async def test_a_wrong_token_is_refused_and_audited(console: Console) -> None:
    reply = await console.post("/ui/login", {"token": "not-the-token"})
    assert reply.status == 401
    assert "The admin token is not valid." in reply.text
    assert "Nothing was changed" not in reply.text  # said of forms that write, not of sign-in
    assert "Set-Cookie" not in reply.headers
    assert (await console.get("/ui/")).status == 303  # still signed out
    line = console.audit()[-1]
    assert (line["msg"], line["path"], line["status"]) == (
        "admin authentication refused",
        "/ui/login",
        401,
    )
    assert (line["outcome"], line["client"]) == ("refused", "console")
    assert "not-the-token" not in console.audit_path.read_text()


async def test_signing_in_sets_a_strict_cookie_and_goes_to_the_overview(
    console: Console,
) -> None:
    reply = await console.sign_in()
    assert reply.headers["Location"] == "/ui/"
    morsel = _cookie(reply.headers)["edgeauth_console"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/ui/"
    assert morsel["max-age"] == str(28800 + COOKIE_MARGIN)
    assert not morsel["secure"]  # a plain-HTTP admin listener: a Secure cookie never returns
    assert console.gw.admin_token not in reply.headers["Set-Cookie"]
    overview = await console.get("/ui/")
    assert overview.status == 200
    for name in ("Overview", "Consumers", "Tokens", "Configuration"):
        assert f">{name}</a>" in overview.text
    assert ">Sign out</button>" in overview.text


async def test_the_cookie_is_secure_when_the_admin_listener_has_tls(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    dev_cert: tls.DevCertificate,
    client_ssl: ssl.SSLContext,
) -> None:
    files = {"tls_cert_file": str(dev_cert.cert_file), "tls_key_file": str(dev_cert.key_file)}
    gw, _ = await start_console(backend, gateway, tmp_path, client, **files)
    base = gw.admin_url.replace("http://", "https://")
    connector = aiohttp.TCPConnector(ssl=client_ssl)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:
        data = {"token": gw.admin_token}
        url = base + "/ui/login"
        reply = await call(http, "POST", url, data=data, allow_redirects=False)
        assert reply.status == 303, reply.text
        assert _cookie(reply.headers)["edgeauth_console"]["secure"] is True
        page = await call(http, "GET", base + "/ui/", allow_redirects=False)
        assert page.status == 200, page.text


async def test_every_response_carries_the_security_headers(console: Console) -> None:
    await console.sign_in()
    paths = (*PAGES, "/ui/login", "/ui/static/console.js", "/ui/static/console.css")
    replies = [await console.get(path) for path in paths]
    replies.append(await console.get("/ui/no-such-page"))
    replies.append(await console.post("/ui/consumers", {"username": "x"}))  # 403, no csrf
    for reply in replies:
        for name, value in HEADERS.items():
            assert reply.headers.get(name) == value, (name, reply.status)
    csp = HEADERS["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert replies[-2].status == 404
    assert "There is no such page in this console." in replies[-2].text


async def test_pages_have_no_inline_script_or_style(console: Console) -> None:
    await console.sign_in()
    for path in (*PAGES, "/ui/login"):
        text = (await console.get(path)).text
        assert "<script>" not in text
        assert "<style" not in text
        assert " style=" not in text
        assert " on" + "click=" not in text
        assert '<script src="/ui/static/console.js" defer></script>' in text
        # no /favicon.ico request: it would hit the admin API, a refused authentication
        assert '<link rel="icon" href="data:,">' in text


async def test_static_files_are_ours(console: Console) -> None:
    script = await console.get("/ui/static/console.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "data-copy" in script.text
    style = await console.get("/ui/static/console.css")
    assert style.headers["Content-Type"].startswith("text/css")
    assert "http" not in style.text  # nothing loaded from elsewhere
    assert (await console.get("/ui/static/other.js")).status == 303  # not open: sign in first


@pytest.mark.parametrize("path", [*PAGES, "/ui/consumers?q=a&page=2"])
async def test_without_a_session_a_page_sends_to_the_sign_in(console: Console, path: str) -> None:
    reply = await console.get(path)
    assert reply.status == 303
    location = reply.headers["Location"]
    assert location.startswith("/ui/login?next=")
    followed = await console.get(location)
    assert followed.status == 200
    assert EXPIRED not in followed.text  # there was no session to expire
    await console.post("/ui/login", {"token": console.gw.admin_token, "next": path})
    again = await console.get(path)
    assert again.status == 200


async def test_a_pasted_token_may_end_in_a_newline(console: Console) -> None:
    reply = await console.post("/ui/login", {"token": console.gw.admin_token + "\n"})
    assert reply.status == 303


async def test_signing_in_goes_back_to_the_page_asked_for(console: Console) -> None:
    first = await console.get("/ui/tokens?user=7")
    page = await console.get(first.headers["Location"])
    assert 'name="next" value="/ui/tokens?user=7"' in page.text
    reply = await console.post(
        "/ui/login", {"token": console.gw.admin_token, "next": "/ui/tokens?user=7"}
    )
    assert reply.headers["Location"] == "/ui/tokens?user=7"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/ui//evil.example", "/status", ""]
)
async def test_signing_in_never_leaves_the_console(console: Console, target: str) -> None:
    reply = await console.post("/ui/login", {"token": console.gw.admin_token, "next": target})
    assert reply.headers["Location"] == "/ui/"


async def test_an_expired_session_says_so(console: Console, clock: Clock) -> None:
    await console.sign_in()
    assert (await console.get("/ui/consumers")).status == 200
    clock.advance(28800 + 1)
    reply = await console.get("/ui/consumers")
    assert reply.status == 303
    assert "notice=expired" in reply.headers["Location"]
    page = await console.get(reply.headers["Location"])
    assert EXPIRED in page.text
    assert 'name="next" value="/ui/consumers"' in page.text


async def test_a_form_posted_after_expiry_gets_the_sign_in_page(
    console: Console, clock: Clock
) -> None:
    await console.sign_in()
    csrf = await console.csrf("/ui/consumers")
    clock.advance(28800 + 1)
    reply = await console.post("/ui/consumers", {"username": "late", "csrf": csrf})
    assert reply.status == 401
    assert EXPIRED in reply.text
    assert ">Sign in</button>" in reply.text
    assert (await console.world.admin("GET", "/consumers/late")).status == 404


async def test_a_session_lasts_ui_session_seconds(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    client: aiohttp.ClientSession,
    clock: Clock,
) -> None:
    gw, _ = await start_console(backend, gateway, tmp_path, client, ui_session_seconds=120)
    async with browser() as http:
        url = gw.admin_url + "/ui/login"
        reply = await call(http, "POST", url, data={"token": gw.admin_token}, allow_redirects=False)
        # the browser keeps the cookie past the session, so the expiry can be told from none
        assert _cookie(reply.headers)["edgeauth_console"]["max-age"] == str(120 + COOKIE_MARGIN)
        clock.advance(119)
        assert (await call(http, "GET", gw.admin_url + "/ui/", allow_redirects=False)).status == 200
        clock.advance(2)
        late = await call(http, "GET", gw.admin_url + "/ui/", allow_redirects=False)
        assert late.status == 303
        assert late.headers["Location"] == "/ui/login?next=/ui/&notice=expired"


async def test_a_new_admin_token_signs_the_console_out(console: Console) -> None:
    await console.sign_in()
    runner = console.gw.gateway.c.admin
    assert runner is not None
    runner.app[CONTEXT].token = "rotated-" + "r" * 40  # what a restart with a new token file does
    reply = await console.get("/ui/")
    assert reply.status == 303
    assert "notice=expired" in reply.headers["Location"]


async def test_sign_out_clears_the_cookie(console: Console) -> None:
    await console.sign_in()
    csrf = await console.csrf()
    reply = await console.post("/ui/logout", {"csrf": csrf})
    assert reply.status == 303
    assert reply.headers["Location"] == "/ui/login?notice=signed_out"
    morsel = _cookie(reply.headers)["edgeauth_console"]
    assert morsel.value == ""
    assert morsel["path"] == "/ui/"
    assert (await console.get("/ui/")).status == 303
    page = await console.get("/ui/login?notice=signed_out")
    assert "Signed out." in page.text


async def test_sign_out_needs_the_csrf_token(console: Console) -> None:
    await console.sign_in()
    reply = await console.post("/ui/logout", {})
    assert reply.status == 403
    assert FORGED in reply.text
    assert (await console.get("/ui/")).status == 200


@pytest.mark.parametrize(
    ("csrf", "origin"),
    [
        (None, None),
        ("", None),
        ("forged", None),
        ("ok", "https://evil.example"),
        ("ok", "null"),
    ],
)
async def test_a_write_without_a_valid_csrf_token_or_from_elsewhere_is_refused(
    console: Console, csrf: str | None, origin: str | None
) -> None:
    await console.sign_in()
    data = {"username": "forged-consumer"}
    if csrf is not None:
        data["csrf"] = await console.csrf() if csrf == "ok" else csrf
    headers = {"Origin": origin} if origin else {}
    reply = await console.post("/ui/consumers", data, headers=headers)
    assert reply.status == 403
    assert FORGED in reply.text
    assert (await console.world.admin("GET", "/consumers/forged-consumer")).status == 404


async def test_a_write_from_the_console_origin_is_accepted(console: Console) -> None:
    await console.sign_in()
    reply = await console.submit(
        "/ui/consumers", {"username": "from-here"}, headers={"Origin": console.base}
    )
    assert reply.status == 303, reply.text
    assert (await console.world.admin("GET", "/consumers/from-here")).status == 200


async def test_another_sessions_csrf_token_is_refused(console: Console) -> None:
    async with browser() as other_http:
        other = Console(console.gw, console.world, other_http, console.base, console.audit_path)
        await other.sign_in()
        theirs = await other.csrf()
    await console.sign_in()
    reply = await console.post("/ui/consumers", {"username": "x", "csrf": theirs})
    assert reply.status == 403


async def test_sign_in_from_another_origin_is_refused(console: Console) -> None:
    reply = await console.post(
        "/ui/login", {"token": console.gw.admin_token}, headers={"Origin": "https://evil.example"}
    )
    assert reply.status == 403
    assert "Set-Cookie" not in reply.headers


async def test_only_form_posts_are_taken(console: Console) -> None:
    await console.sign_in()
    url = console.base + "/ui/consumers"
    reply = await call(console.http, "POST", url, json={"username": "j"}, allow_redirects=False)
    assert reply.status == 400
    assert "form posts only" in reply.text


async def test_the_session_cookie_is_no_admin_api_credential(console: Console) -> None:
    await console.sign_in()
    reply = await call(console.http, "GET", console.base + "/consumers")
    assert reply.status == 401


async def test_without_ui_there_is_no_console(
    backend: Backend, gateway: GatewayFactory, client: aiohttp.ClientSession
) -> None:
    gw = await gateway([events_service(backend)])
    async with browser() as http:
        assert (await call(http, "GET", gw.admin_url + "/ui/login")).status == 401
    async with aiohttp.ClientSession(headers=gw.admin_headers) as api:
        assert (await call(api, "GET", gw.admin_url + "/ui/login")).status == 404
