"""The admin console in a real browser: the OS's Chromium driven by Playwright, against
`edgeauth serve` running as real processes.

The browser is /usr/bin/chromium from the OS packages, never one Playwright downloads: the suite
needs no network and tests the browser an operator has. Without it the tests skip and say
why, unless EDGEAUTH_REQUIRE_BROWSER=1 (`.ci/run`), where they fail.

Pages are photographed into the artifacts directory ($EDGEAUTH_ARTIFACTS, else
tests/browser/artifacts/, which git ignores); when a test fails, every page still open is
photographed once more as failed-<n>.png, so a CI failure shows what the browser saw.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright, expect

from edgeauth import tls
from tests.conftest import Backend, ServeProcess, write_config
from tests.oauth.conftest import events_service

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# How long a page, an element or a URL may take to come: Playwright's 5 s default, tripled for
# a suite that runs 4 files at once on 2 cores. Passing runs never wait for it.
PATIENCE_MS = 15_000
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Marks a test whose body failed, for the browser fixture's failure photographs."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture
def artifacts() -> Path:
    directory = Path(os.environ.get("EDGEAUTH_ARTIFACTS") or ARTIFACTS)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("failed-*.png"):  # an earlier run's
        old.unlink()
    return directory


@pytest.fixture
async def browser(request: pytest.FixtureRequest, artifacts: Path) -> AsyncIterator[Browser]:
    """Headless Chromium from the OS; skipped (or failed, in CI) when there is none."""
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
        if os.environ.get("EDGEAUTH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EDGEAUTH_REQUIRE_BROWSER=1 and {missing}")
        pytest.skip(missing)
    expect.set_options(timeout=PATIENCE_MS)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            if request.node.stash.get(FAILED, False):
                pages = [page for context in chromium.contexts for page in context.pages]
                for n, page in enumerate(pages):
                    await page.screenshot(path=artifacts / f"failed-{n}.png", full_page=True)
            await chromium.close()


@dataclass
class Console:
    """One `edgeauth serve` with the console on: its proxy and admin URLs and admin token."""

    proc: ServeProcess
    directory: Path

    @property
    def proxy_url(self) -> str:
        return self.proc.url

    @property
    def ui_url(self) -> str:
        ready = next(entry for entry in self.proc.log if entry.get("msg") == "ready")
        return f"{ready['admin'][0]}/ui"

    @property
    def admin_token(self) -> str:
        return (self.directory / "admin.token").read_text().strip()

    def audit(self) -> list[dict[str, Any]]:
        """The admin audit lines the gateway has written to its stderr so far."""
        return [entry for entry in self.proc.log if entry.get("logger") == "edgeauth.audit"]


ConsoleFactory = Callable[..., Awaitable[Console]]


@pytest.fixture
def consoles(
    tmp_path: Path,
    dev_cert: tls.DevCertificate,
    backend: Backend,
    serve: Callable[..., ServeProcess],
) -> ConsoleFactory:
    """`await start(name, workers=N, **admin_keys)`: a gateway with `[admin] ui = true`, the
    walkthrough's protected events service (client_credentials on) in front of the sample
    backend, and a directory of its own. Started in a thread, so that several start at once
    while the backend keeps answering on the test's event loop."""

    async def start(name: str, *, workers: int = 1, **admin: Any) -> Console:
        directory = tmp_path / name
        directory.mkdir()
        config = write_config(
            directory,
            dev_cert,
            [events_service(backend)],
            tables={"admin": {"ui": True, **admin}},
            workers=workers,
        )
        return Console(await asyncio.to_thread(serve, config), directory)

    return start
