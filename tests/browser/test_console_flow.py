"""An operator's round trip through the admin console in Chromium (issue 19).

Sign in by keyboard alone, create a consumer and an application, read its secret (once), get a
token with it over the proxy port, find that token in the console, revoke it, and see the proxy
refuse it; then sign out. A second gateway whose sessions last 2 seconds shows the expiry: it is
signed in first, so the main flow is the wait. Each page is photographed at 1280x800, and the
overview once more at a phone's width. Chromium must not complain on the way: a script error
or anything the Content-Security-Policy refused (an inline style, say) fails the test.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    ViewportSize,
    expect,
)

from tests.browser.conftest import PATIENCE_MS, Console, ConsoleFactory
from tests.conftest import eventually

DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
SHORT_SESSION = 2  # seconds
EXPIRED = "Your session has expired. Sign in again."


async def shoot(page: Page, artifacts: Path, name: str, *, full_page: bool = False) -> None:
    await page.screenshot(path=artifacts / f"{name}.png", full_page=full_page)


async def new_page(browser: Browser, complaints: list[str]) -> Page:
    """A page in a context of its own (its own cookies: both gateways are on 127.0.0.1) that
    may use the clipboard; what the browser complains of (a script error, something the CSP
    refused, a part of a page missing) goes to `complaints`."""
    context = await browser.new_context(
        viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"]
    )
    context.set_default_timeout(PATIENCE_MS)
    page = await context.new_page()
    page.on("console", lambda message: complain_of(message, complaints))
    page.on("pageerror", lambda error: complaints.append(str(error)))
    page.on("response", lambda response: failed_part(response, complaints))
    return page


def complain_of(message: ConsoleMessage, complaints: list[str]) -> None:
    """An error in the browser's console, but for a page's own status, which is the flow's to
    judge (Chromium logs "Failed to load resource" for a 4xx page as for any 4xx)."""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        complaints.append(message.text)


def failed_part(response: Response, complaints: list[str]) -> None:
    """A stylesheet, a script or an icon a page asked for and did not get."""
    if response.status >= 400 and response.request.resource_type != "document":
        complaints.append(f"{response.status} {response.url}")


async def is_focused(page: Page, selector: str) -> bool:
    return bool(await page.locator(selector).evaluate("e => e === document.activeElement"))


async def sign_in_by_keyboard(page: Page, console: Console) -> None:
    """Tab to the token field, type, Tab to the button (which shows it has the focus), Enter:
    no mouse."""
    field = "input[name=token]"
    for _ in range(10):  # the field may have the focus already (autofocus)
        if await is_focused(page, field):
            break
        await page.keyboard.press("Tab")
    assert await is_focused(page, field), "Tab never reaches the admin token field"
    await page.keyboard.type(console.admin_token)
    await page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Sign in")
    await expect(button).to_be_focused()
    outline = await button.evaluate(
        "e => { const s = getComputedStyle(e); return [s.outlineStyle, s.boxShadow]; }"
    )
    assert outline != ["none", "none"], "the focused button shows no focus ring"
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{console.ui_url}/")


async def sign_in(page: Page, console: Console) -> None:
    await page.goto(f"{console.ui_url}/login")
    await page.get_by_label("Admin token").fill(console.admin_token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{console.ui_url}/")


async def client_credentials_token(
    client: aiohttp.ClientSession, console: Console, client_id: str, secret: str
) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": secret,
        "scope": "read",
    }
    async with client.post(f"{console.proxy_url}/events/oauth2/token", data=form) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


async def proxy_status(client: aiohttp.ClientSession, console: Console, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with client.get(f"{console.proxy_url}/events", headers=headers) as resp:
        await resp.read()
        return resp.status


async def until_refused(client: aiohttp.ClientSession, console: Console, token: str) -> None:
    """The proxy refuses `token` (401) within 10 s: the worker that did not revoke it hears of
    it over the revocation bus."""

    async def refused() -> bool:
        return await proxy_status(client, console, token) == 401

    assert await eventually(refused), "the revoked token is still accepted after 10 s"


async def test_an_operator_finds_and_revokes_a_token_then_signs_out(
    browser: Browser, consoles: ConsoleFactory, client: aiohttp.ClientSession, artifacts: Path
) -> None:
    main, short = await asyncio.gather(
        consoles("main", workers=2), consoles("short", ui_session_seconds=SHORT_SESSION)
    )
    complaints: list[str] = []
    brief = await new_page(browser, complaints)
    await sign_in(brief, short)
    brief_signed_in = time.monotonic()

    page = await new_page(browser, complaints)
    await page.goto(f"{main.ui_url}/")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/"))
    await shoot(page, artifacts, "login")
    await sign_in_by_keyboard(page, main)
    nav = page.get_by_role("navigation")
    for label in ("Overview", "Consumers", "Tokens", "Configuration"):
        await expect(nav.get_by_role("link", name=label)).to_be_visible()
    await expect(page.get_by_role("cell", name="events", exact=True)).to_be_visible()

    await nav.get_by_role("link", name="Consumers").click()
    await page.get_by_label("Username").fill("acme-mobile")
    await page.get_by_label("Custom ID").fill("crm-4711")
    await shoot(page, artifacts, "consumers")
    await page.get_by_role("button", name="Create consumer").click()
    await expect(page).to_have_url(re.compile(r"/ui/consumers/[^/?]+\?notice=created$"))
    await expect(page.get_by_role("status")).to_have_text("Consumer created.")
    consumer_url = page.url.partition("?")[0]
    await expect(page.get_by_role("heading", name=re.compile("acme-mobile"))).to_be_visible()
    await shoot(page, artifacts, "consumer")

    await page.get_by_label("Application name").fill("Acme Mobile")
    await page.get_by_label("Redirect URIs").fill(
        "https://acme.example/cb\nhttps://acme.example/cb2"
    )
    await page.get_by_role("button", name="Create application").click()
    await expect(page.get_by_text("This secret is shown once.")).to_be_visible()
    client_id = (await page.locator("#client-id").inner_text()).strip()
    secret = (await page.locator("#one-time-secret").inner_text()).strip()
    assert client_id, "no client id shown"
    assert len(secret) >= 20, secret
    await shoot(page, artifacts, "application-secret")
    await page.get_by_role("button", name="Copy secret").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == secret

    await page.reload()  # an operator's F5: neither the secret again nor a second application
    await expect(page.locator("#one-time-secret")).to_have_count(0)
    await page.goto(consumer_url)
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.get_by_role("cell", name=client_id)).to_be_visible()
    assert secret not in await page.content()

    token = await client_credentials_token(client, main, client_id, secret)
    assert await proxy_status(client, main, token) == 200

    await nav.get_by_role("link", name="Tokens").click()
    await page.get_by_label("Application").fill(client_id)
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(client_id)
    await expect(rows.first).to_contain_text("read")
    assert token not in await page.content()
    await shoot(page, artifacts, "tokens")
    await rows.first.get_by_role("button", name="Revoke").click()
    await expect(page.get_by_role("status")).to_have_text("Token revoked.")
    await expect(rows).to_have_count(0)
    await until_refused(client, main, token)

    more = [await client_credentials_token(client, main, client_id, secret) for _ in range(2)]
    await page.reload()
    await expect(rows).to_have_count(2)
    await page.get_by_role("button", name="Revoke all").click()
    await expect(page.get_by_text("Revoke 2 tokens?")).to_be_visible()
    await shoot(page, artifacts, "revoke-all")
    await page.get_by_role("button", name="Revoke 2 tokens").click()
    await expect(page.get_by_role("status")).to_have_text("2 tokens revoked.")
    await expect(rows).to_have_count(0)
    for revoked in more:
        await until_refused(client, main, revoked)

    await nav.get_by_role("link", name="Configuration").click()
    await expect(page.get_by_text("[redacted]").first).to_be_visible()
    assert main.admin_token not in await page.content()
    await shoot(page, artifacts, "configuration")

    await nav.get_by_role("link", name="Overview").click()
    await expect(page.get_by_role("heading", name="Latest revocations")).to_be_visible()
    await shoot(page, artifacts, "overview")
    await page.set_viewport_size(PHONE)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the overview is {width} px wide on a phone"
    await shoot(page, artifacts, "overview-phone", full_page=True)
    await page.set_viewport_size(DESKTOP)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/ui/login"))
    await expect(page.get_by_text("Signed out.")).to_be_visible()
    await shoot(page, artifacts, "signed-out")
    await page.goto(f"{main.ui_url}/consumers")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/consumers"))
    await expect(page.get_by_label("Admin token")).to_be_visible()
    await expect(page.get_by_text(EXPIRED)).to_have_count(0)  # signed out is not expired

    await asyncio.sleep(max(0.0, brief_signed_in + SHORT_SESSION + 1 - time.monotonic()))
    await brief.goto(f"{short.ui_url}/tokens")
    await expect(brief).to_have_url(re.compile(r"/ui/login\?next=/ui/tokens"))
    await expect(brief.get_by_text(EXPIRED)).to_be_visible()
    await shoot(brief, artifacts, "session-expired")

    assert complaints == []
    written = {(e["entity"], e["outcome"]) for e in main.audit() if e["client"] == "console"}
    made = {("consumer", "ok"), ("oauth2_credential", "ok"), ("oauth2_token", "ok")}
    assert made <= written, main.audit()
