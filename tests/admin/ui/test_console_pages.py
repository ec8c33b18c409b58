"""The console's pages over a real admin listener: each renders for an empty and a full store;
no page shows a secret or a token value but the one-time secret display; writes land in the
store (and the audit log) as the API's do, and bad input gives the page back with a message
and the store unchanged."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp

from tests.admin.conftest import call
from tests.admin.ui.conftest import (
    Console,
    browser,
    client_id_of,
    console_services,
    one_time_secret,
)
from tests.conftest import Backend, GatewayFactory
from tests.oauth.conftest import KONG_HASH, PROVISION_KEY, consumers

PAGES = ("/ui/", "/ui/consumers", "/ui/tokens", "/ui/config")
NAV = ("Overview", "Consumers", "Tokens", "Configuration")
TOKEN_ID = re.compile(r"<code>([0-9a-f-]{36})</code>")
LINK = re.compile(r"<a [^>]*>([^<]*)</a>")
ROW = re.compile(r'<td><a href="/ui/consumers/[0-9a-f-]{36}">([^<]*)</a></td>')
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _text(html: str) -> str:
    """The page's text, tags dropped and entities decoded."""
    return unescape(re.sub(r"<[^>]+>", " ", html))


async def _page(c: Console, path: str) -> str:
    reply = await c.get(path)
    assert reply.status == 200, (path, reply.status, reply.text)
    for name in NAV:
        assert f">{name}</a>" in reply.text
    return reply.text


def _hidden(html: str) -> dict[str, str]:
    """The hidden fields of a page's forms (one write form per page here)."""
    return {name: unescape(value) for name, value in HIDDEN.findall(html)}


async def _consumer_id(c: Console, name: str) -> str:
    reply = await c.world.admin("GET", f"/consumers/{name}")
    assert reply.status == 200, reply.text
    return str(reply.body["id"])


async def _app(c: Console, client_id: str) -> dict[str, Any]:
    reply = await c.world.admin("GET", f"/oauth2/{client_id}")
    assert reply.status == 200, reply.text
    assert isinstance(reply.body, dict)
    return reply.body


async def _app_page(c: Console, client_id: str, action: str) -> str:
    """The path of an action's page (rotate, edit, delete) for one of ClientApp's applications."""
    client_app = await _consumer_id(c, "ClientApp")
    app = await _app(c, client_id)
    return f"/ui/consumers/{client_app}/oauth2/{app['id']}/{action}"


async def _count(c: Console, path: str) -> int:
    reply = await c.world.admin("GET", path)
    return len(reply.body["data"])


async def _client_credentials(c: Console, client_id: str, secret: str) -> int:
    """The status of a client_credentials token request (200: the secret works)."""
    body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    reply = await call(c.world.proxy, "POST", c.world.token_url, json=body)
    assert reply.status == 200 or reply.body["error"] == "invalid_client", reply.text
    return reply.status


async def test_every_page_renders_for_an_empty_store(console: Console) -> None:
    await console.sign_in()
    overview = _text(await _page(console, "/ui/"))
    grants = "client credentials, password"
    for expected in ("events", "OAuth 2.0", "public", "read write", grants, "sqlite"):
        assert expected in overview
    assert "reachable" in overview
    assert "The revocation log is empty." in overview
    assert "There are no consumers yet." in await _page(console, "/ui/consumers")
    assert "No live token matches." in await _page(console, "/ui/tokens")
    config = _text(await _page(console, "/ui/config"))
    assert "[redacted]" in config  # the events service's provision key
    assert "none recorded" in config  # no supervisor runs this in-process gateway


async def test_every_page_renders_for_a_full_store(
    full_console: tuple[Console, dict[str, str]],
) -> None:
    c, secrets = full_console
    await c.sign_in()
    client_app = await _consumer_id(c, "ClientApp")
    app = await _app(c, "clientid")
    await c.world.admin("DELETE", f"/oauth2_tokens/{secrets['access-2']}")  # a revocation
    base = f"/ui/consumers/{client_app}/oauth2/{app['id']}"
    paths = (
        *PAGES,
        "/ui/consumers?q=client",
        f"/ui/consumers/{client_app}",
        f"/ui/consumers/{client_app}/delete",
        f"{base}/rotate",
        f"{base}/edit",
        f"{base}/delete",
        "/ui/tokens?application=clientid",
        "/ui/tokens?user=1&consumer=ClientApp",
        "/ui/tokens/revoke?application=clientid",
    )
    texts = {path: await _page(c, path) for path in paths}
    overview = _text(texts["/ui/"])
    assert "Consumers 2" in " ".join(overview.split())
    assert "Live tokens 1" in " ".join(overview.split())
    assert "Applications 4" in " ".join(overview.split())
    assert "ClientApp" in texts["/ui/consumers"]
    assert "Other" in texts["/ui/consumers"]
    assert "Other" not in texts["/ui/consumers?q=client"]
    for name in ("SampleApp", "KongImported", "MobileApp", "https://app.example/callback"):
        assert name in texts[f"/ui/consumers/{client_app}"]
    assert "Delete consumer ClientApp?" in texts[f"/ui/consumers/{client_app}/delete"]
    assert ">Delete</button>" in texts[f"/ui/consumers/{client_app}/delete"]
    assert "https://app.example/callback</textarea>" in texts[f"{base}/edit"]
    assert "Revoke 1 tokens?" in texts["/ui/tokens/revoke?application=clientid"]
    assert ">Revoke 1 tokens</button>" in texts["/ui/tokens/revoke?application=clientid"]
    assert TOKEN_ID.search(texts["/ui/tokens?application=clientid"]) is not None
    assert "read" in texts["/ui/tokens?user=1&consumer=ClientApp"]
    for path, html in texts.items():  # a link named like the nav's is the nav's alone
        links = [unescape(text).casefold() for text in LINK.findall(html)]
        for name in NAV:
            assert sum(name.casefold() in text for text in links) == 1, (path, name)
    everything = "\n".join(texts.values())
    hidden = [*secrets.values(), c.gw.admin_token, PROVISION_KEY, KONG_HASH, "other-secret"]
    for value in hidden:
        assert value not in everything
        assert value not in unescape(everything)
    assert "$pbkdf2-" not in everything  # no stored hash either
    assert "one-time-secret" not in everything


async def test_creating_a_consumer_goes_to_its_page_and_is_audited(console: Console) -> None:
    await console.sign_in()
    reply = await console.submit("/ui/consumers", {"username": "alice", "custom_id": " a-1 "})
    assert reply.status == 303, reply.text
    made = (await console.world.admin("GET", "/consumers/alice")).body
    assert made["custom_id"] == "a-1"
    assert reply.headers["Location"] == f"/ui/consumers/{made['id']}?notice=created"
    page = await _page(console, reply.headers["Location"])
    assert "Consumer created." in page
    line = console.audit()[-1]
    assert (line["msg"], line["method"], line["path"], line["status"]) == (
        "admin write",
        "POST",
        "/ui/consumers",
        303,
    )
    assert (line["entity"], line["entity_id"], line["client"]) == (
        "consumer",
        made["id"],
        "console",
    )


async def test_bad_consumer_input_gives_the_form_back(full_console: tuple[Console, Any]) -> None:
    c, _ = full_console
    await c.sign_in()
    cases = [
        ({"username": " ", "custom_id": ""}, "Give a username, a custom ID, or both."),
        ({"username": "ClientApp"}, "Username: &#39;ClientApp&#39; is already taken."),
        (
            {"username": "00000000-0000-0000-0000-000000000000"},
            "Username: must not have the form of a UUID",
        ),
        ({"username": "bad\x01name"}, "Username: must not contain control characters."),
        ({"username": "x" * 300}, "Username: length must be at most 255."),
    ]
    for data, message in cases:
        reply = await c.submit("/ui/consumers", data)
        assert reply.status == 400, (data, reply.text)
        assert message in reply.text, (data, reply.text)
        assert "Nothing was changed" in reply.text
        assert 'role="alert"' in reply.text
        assert f'value="{data["username"].strip() and data["username"][:10]}' in reply.text
    assert await _count(c, "/consumers") == 2


async def test_consumers_are_paged(console: Console) -> None:
    for i in range(27):
        reply = await console.world.admin("POST", "/consumers", json={"username": f"user{i:02}"})
        assert reply.status == 201
    await console.sign_in()
    first = await _page(console, "/ui/consumers")
    assert "Next page" in first
    assert "Previous page" not in first
    second = await _page(console, "/ui/consumers?q=&page=2")
    assert "Next page" not in second
    assert "Previous page" in second
    names = [ROW.findall(first), ROW.findall(second)]
    assert (len(names[0]), len(names[1])) == (25, 2)
    assert sorted(names[0] + names[1]) == [f"user{i:02}" for i in range(27)]
    found = await _page(console, "/ui/consumers?q=USER1")
    assert sorted(ROW.findall(found)) == [f"user{i}" for i in range(10, 20)]
    bad = await console.get("/ui/consumers?page=x")
    assert bad.status == 400
    assert "page must be a number" in bad.text


async def test_an_application_is_created_and_its_secret_shown_once(console: Console) -> None:
    await console.world.admin("POST", "/consumers", json={"username": "bob"})
    bob = await _consumer_id(console, "bob")
    await console.sign_in()
    form = {"name": "Bob's app", "redirect_uris": "https://bob.example/cb\r\n\r\n"}
    reply = await console.submit(f"/ui/consumers/{bob}/oauth2", form)
    assert reply.status == 200, reply.text
    assert "This secret is shown once." in reply.text
    assert ">Copy secret</button>" in reply.text
    client_id, secret = client_id_of(reply.text), one_time_secret(reply.text)
    assert len(secret) >= 32
    made = await _app(console, client_id)
    assert made["redirect_uris"] == ["https://bob.example/cb"]
    assert made["name"] == "Bob's app"
    assert await _client_credentials(console, client_id, secret) == 200
    page = await _page(console, f"/ui/consumers/{bob}")
    assert client_id in page
    assert secret not in page
    line = console.audit()[-1]
    assert (line["entity"], line["entity_id"], line["status"]) == (
        "oauth2_credential",
        made["id"],
        200,
    )
    assert line["path"] == f"/ui/consumers/{bob}/oauth2"
    assert secret not in console.audit_path.read_text()


async def test_bad_application_input_gives_the_form_back(console: Console) -> None:
    await console.world.admin("POST", "/consumers", json={"username": "carol"})
    carol = await _consumer_id(console, "carol")
    await console.sign_in()
    cases = [
        (
            {"name": "ok", "redirect_uris": "https://a.example/cb\nnot a uri"},
            "Redirect URIs, line 2: cannot parse &#39;not a uri&#39;",
        ),
        (
            {"name": "ok", "redirect_uris": "https://a.example/cb#frag"},
            "Redirect URIs, line 1: fragment not allowed",
        ),
        ({"name": "  ", "redirect_uris": ""}, "Application name: required field missing."),
    ]
    for data, message in cases:
        reply = await console.submit(f"/ui/consumers/{carol}/oauth2", data)
        assert reply.status == 400, reply.text
        assert message in reply.text
        assert "one-time-secret" not in reply.text
        assert data["redirect_uris"].split("\n")[0] in reply.text  # the form as typed
    assert await _count(console, f"/consumers/{carol}/oauth2") == 0


async def test_rotating_a_secret_shows_the_new_one_once(
    full_console: tuple[Console, dict[str, str]],
) -> None:
    c, secrets = full_console
    await c.sign_in()
    path = await _app_page(c, "clientid", "rotate")
    confirm = await _page(c, path)
    assert "Rotate the secret of SampleApp?" in confirm
    reply = await c.post(path, _hidden(confirm))
    assert reply.status == 200, reply.text
    secret = one_time_secret(reply.text)
    assert secret != secrets["secret"]
    assert client_id_of(reply.text) == "clientid"
    assert await _client_credentials(c, "clientid", secrets["secret"]) != 200
    assert await _client_credentials(c, "clientid", secret) == 200
    assert (await c.world.proxied(secrets["access-1"])).status == 401  # revoked with it


async def test_a_public_client_has_no_secret_to_rotate(full_console: tuple[Console, Any]) -> None:
    c, _ = full_console
    await c.sign_in()
    path = await _app_page(c, "publicclient", "rotate")
    reply = await c.post(path, _hidden(await _page(c, path)))
    assert reply.status == 400
    assert "public clients have no secret" in reply.text
    assert "one-time-secret" not in reply.text


async def test_a_creation_form_sent_again_creates_nothing(console: Console) -> None:
    """A reload of "Application created" posts the form again: the client id drawn with the
    form is taken by then, so the answer is a 409 page, without a second application or a
    secret."""
    await console.world.admin("POST", "/consumers", json={"username": "dave"})
    dave = await _consumer_id(console, "dave")
    await console.sign_in()
    page = await _page(console, f"/ui/consumers/{dave}")
    form = {**_hidden(page), "name": "Dave's app", "redirect_uris": "https://dave.example/cb"}
    assert form["client_id"]
    assert _hidden(await _page(console, f"/ui/consumers/{dave}"))["client_id"] != form["client_id"]
    first = await console.post(f"/ui/consumers/{dave}/oauth2", form)
    assert first.status == 200, first.text
    assert client_id_of(first.text) == form["client_id"]
    secret = one_time_secret(first.text)
    again = await console.post(f"/ui/consumers/{dave}/oauth2", form)
    assert again.status == 409, again.text
    assert f"An application with client id {form['client_id']} already exists" in _text(again.text)
    assert "nothing was created" in again.text
    assert "one-time-secret" not in again.text
    assert secret not in again.text
    assert await _count(console, f"/consumers/{dave}/oauth2") == 1
    assert await _client_credentials(console, form["client_id"], secret) == 200


async def test_the_creation_forms_client_id_is_checked_as_the_apis(console: Console) -> None:
    """The hidden client id is only a default: one sent instead passes the API's checks, one
    sent empty is generated, and one another application holds creates nothing."""
    await console.world.admin("POST", "/consumers", json={"username": "erin"})
    erin = await _consumer_id(console, "erin")
    path = f"/ui/consumers/{erin}/oauth2"
    await console.sign_in()
    cases = [
        ("3f2b8a9e-1c4d-4e5f-8a6b-7c8d9e0f1a2b", "Client id: must not have the form of a UUID"),
        ("bad\x01id", "Client id: must not contain control characters."),
        ("x" * 256, "Client id: length must be at most 255."),
    ]
    for client_id, message in cases:
        reply = await console.submit(path, {"name": "app", "client_id": client_id})
        assert reply.status == 400, reply.text
        assert message in unescape(reply.text)
        assert _hidden(reply.text)["client_id"] != client_id  # the form back has a new one
    assert await _count(console, f"/consumers/{erin}/oauth2") == 0
    typed = await console.submit(path, {"name": "typed", "client_id": " erin-app "})
    assert typed.status == 200, typed.text
    assert client_id_of(typed.text) == "erin-app"
    generated = await console.submit(path, {"name": "generated", "client_id": ""})
    assert generated.status == 200, generated.text
    assert len(client_id_of(generated.text)) >= 20
    await console.world.admin("POST", "/consumers", json={"username": "frank"})
    frank = await _consumer_id(console, "frank")
    theirs = await console.submit(
        f"/ui/consumers/{frank}/oauth2", {"name": "x", "client_id": "erin-app"}
    )
    assert theirs.status == 409, theirs.text
    assert "one-time-secret" not in theirs.text
    assert await _count(console, f"/consumers/{frank}/oauth2") == 0
    assert (await _app(console, "erin-app"))["consumer"]["id"] == erin


async def test_a_rotation_sent_again_rotates_nothing(
    full_console: tuple[Console, dict[str, str]],
) -> None:
    """A reload of "Secret rotated" posts the confirmation again: it carries a mark of the
    secret it replaced (never the stored hash), which no longer matches, so the secret just
    shown keeps working."""
    c, secrets = full_console
    await c.sign_in()
    path = await _app_page(c, "clientid", "rotate")
    confirm = await _page(c, path)
    form = _hidden(confirm)
    assert form["secret_mark"]
    assert "$pbkdf2-" not in confirm
    first = await c.post(path, form)
    assert first.status == 200, first.text
    secret = one_time_secret(first.text)
    again = await c.post(path, form)
    assert again.status == 409, again.text
    assert "The secret of SampleApp was already rotated" in again.text
    assert "one-time-secret" not in again.text
    assert await _client_credentials(c, "clientid", secret) == 200
    assert (await c.post(path, {**form, "secret_mark": ""})).status == 409
    fresh = _hidden(await _page(c, path))
    assert fresh["secret_mark"] != form["secret_mark"]
    await c.world.admin("PATCH", "/oauth2/clientid", json={"client_secret": "changed-" + "s" * 32})
    stale = await c.post(path, fresh)  # changed through the API since the form was drawn
    assert stale.status == 409, stale.text
    assert await _client_credentials(c, "clientid", "changed-" + "s" * 32) == 200
    assert await _client_credentials(c, "clientid", secrets["secret"]) != 200


async def test_redirect_uris_are_edited(full_console: tuple[Console, Any]) -> None:
    c, _ = full_console
    await c.sign_in()
    client_app = await _consumer_id(c, "ClientApp")
    path = await _app_page(c, "clientid", "edit")
    bad = await c.submit(path, {"redirect_uris": "https://new.example/cb\nrelative/cb"})
    assert bad.status == 400
    assert "Redirect URIs, line 2: cannot parse" in bad.text
    assert "relative/cb</textarea>" in bad.text
    assert (await _app(c, "clientid"))["redirect_uris"] == ["https://app.example/callback"]
    reply = await c.submit(path, {"redirect_uris": "https://new.example/cb\nhttps://two.example/"})
    assert reply.status == 303, reply.text
    assert reply.headers["Location"] == f"/ui/consumers/{client_app}?notice=saved"
    assert (await _app(c, "clientid"))["redirect_uris"] == [
        "https://new.example/cb",
        "https://two.example/",
    ]
    assert "Redirect URIs saved." in await _page(c, reply.headers["Location"])


async def test_an_application_and_a_consumer_are_deleted(
    full_console: tuple[Console, dict[str, str]],
) -> None:
    c, secrets = full_console
    await c.sign_in()
    client_app = await _consumer_id(c, "ClientApp")
    path = await _app_page(c, "clientid", "delete")
    assert "Delete application SampleApp?" in await _page(c, path)
    reply = await c.submit(path, {})
    assert reply.status == 303
    assert (await c.world.admin("GET", "/oauth2/clientid")).status == 404
    assert "Application deleted." in await _page(c, reply.headers["Location"])
    assert (await c.world.proxied(secrets["access-1"])).status == 401
    reply = await c.submit(f"/ui/consumers/{client_app}/delete", {})
    assert reply.status == 303
    assert reply.headers["Location"] == "/ui/consumers?notice=consumer_deleted"
    assert (await c.world.admin("GET", "/consumers/ClientApp")).status == 404
    gone = await c.get(f"/ui/consumers/{client_app}")
    assert gone.status == 404
    assert "Not found" in gone.text


async def test_config_managed_entities_stay_configs(
    backend: Backend,
    gateway: GatewayFactory,
    tmp_path: Path,
    client: aiohttp.ClientSession,
) -> None:
    gw = await gateway(
        console_services(backend), consumers=consumers(tmp_path), tables={"admin": {"ui": True}}
    )
    async with browser() as http:
        base = gw.admin_url
        await call(http, "POST", base + "/ui/login", data={"token": gw.admin_token})
        page = await call(http, "GET", base + "/ui/consumers/ClientApp/delete")
        assert page.status == 409
        assert "managed by config.toml" in page.text


async def test_tokens_are_found_and_revoked(full_console: tuple[Console, dict[str, str]]) -> None:
    c, secrets = full_console
    await c.sign_in()
    listing = await _page(c, "/ui/tokens?application=clientid&user=1")
    ids = TOKEN_ID.findall(listing)
    assert len(ids) == 1
    for value in secrets.values():
        assert value not in listing
    reply = await c.submit(f"/ui/tokens/{ids[0]}/revoke", {"application": "clientid", "user": "1"})
    assert reply.status == 303
    assert reply.headers["Location"] == "/ui/tokens?application=clientid&user=1&notice=revoked"
    after = await _page(c, reply.headers["Location"])
    assert "Token revoked." in after
    assert ids[0] not in after
    assert (await c.world.proxied(secrets["access-1"])).status == 401
    assert (await c.world.proxied(secrets["access-2"])).status == 200
    overview = await _page(c, "/ui/")
    assert ids[0] in overview  # the revocation log's tail names it
    line = c.audit()[-1]
    assert (line["entity"], line["entity_id"], line["path"]) == (
        "oauth2_token",
        ids[0],
        f"/ui/tokens/{ids[0]}/revoke",
    )


async def test_a_token_is_revoked_by_id_only(full_console: tuple[Console, dict[str, str]]) -> None:
    c, secrets = full_console
    await c.sign_in()
    reply = await c.submit(f"/ui/tokens/{secrets['access-1']}/revoke", {})
    assert reply.status == 404
    assert (await c.world.proxied(secrets["access-1"])).status == 200
    assert secrets["access-1"] not in c.audit_path.read_text()


async def test_all_tokens_of_a_user_are_revoked_after_a_count(
    full_console: tuple[Console, dict[str, str]],
) -> None:
    c, secrets = full_console
    await c.sign_in()
    listing = await _page(c, "/ui/tokens?user=2")
    assert ">Revoke all</button>" in listing
    assert ">Revoke all</button>" not in await _page(c, "/ui/tokens?consumer=ClientApp")
    confirm = await _page(c, "/ui/tokens/revoke?user=2")
    assert "Revoke 1 tokens?" in confirm
    assert 'name="user" value="2"' in confirm
    reply = await c.submit("/ui/tokens/revoke", {"user": "2"})
    assert reply.status == 303
    assert reply.headers["Location"] == "/ui/tokens?user=2&count=1"
    assert "1 tokens revoked." in await _page(c, reply.headers["Location"])
    assert (await c.world.proxied(secrets["access-2"])).status == 401
    assert (await c.world.proxied(secrets["access-1"])).status == 200
    refused = await c.submit("/ui/tokens/revoke", {"consumer": "ClientApp"})
    assert refused.status == 400
    assert "needs an authenticated user or an application" in refused.text
    assert (await c.world.proxied(secrets["access-1"])).status == 200


async def test_token_filters_that_name_nothing_say_so(full_console: tuple[Console, Any]) -> None:
    c, _ = full_console
    await c.sign_in()
    page = _text(await _page(c, "/ui/tokens?consumer=nobody"))
    assert "No consumer is named 'nobody'." in page
    page = _text(await _page(c, "/ui/tokens?application=nothing"))
    assert "No application has the client id 'nothing'." in page
    assert "No live token matches." in await _page(c, "/ui/tokens?user=nobody")
    bad = await c.get("/ui/tokens/revoke?application=nothing")
    assert bad.status == 400


async def test_a_page_cursor_edited_by_hand_is_a_400(console: Console) -> None:
    """The tokens page's `after` is the store's cursor: one it cannot read is the caller's
    mistake, said as such, never a 500."""
    await console.sign_in()
    for cursor in ("not-a-cursor", "x" * 5000):
        reply = await console.get(f"/ui/tokens?after={cursor}")
        assert reply.status == 400, reply.text
        assert "malformed page cursor" in reply.text


async def test_a_target_that_is_not_utf8_is_a_400(console: Console) -> None:
    """As in the API (admin/http.py Rule 3): aiohttp would keep %FF as the text "%FF", and
    the console look that up as a consumer's name."""
    made = await console.world.admin("POST", "/consumers", json={"username": "%FF"})
    assert made.status == 201, made.text
    await console.sign_in()
    for target in ("/ui/consumers/%FF", "/ui/consumers?q=%ED%A0%80", "/ui/tokens?user=a%C3"):
        reply = await console.get(target)
        assert reply.status == 400, (target, reply.text)
        assert "not valid UTF-8 once percent-decoded" in reply.text
    reply = await console.submit("/ui/consumers/%FF/delete", {})
    assert reply.status == 400, reply.text
    assert (await console.world.admin("GET", "/consumers/%25FF")).status == 200


async def test_the_config_page_redacts_secrets(console: Console) -> None:
    await console.sign_in()
    page = await _page(console, "/ui/config")
    assert PROVISION_KEY not in page
    text = _text(page)
    assert "services[events].oauth2" in text
    assert "provision_key [redacted]" in " ".join(text.split())
    assert "ui true" in " ".join(text.split())
    assert str(console.gw.settings.admin.token_file) in text  # a path, not the token
    assert console.gw.admin_token not in page
