"""A real headless Chromium (Playwright) against the web service of the session's embedded stack.

The browser is Debian's chromium-headless-shell (`make test` installs it, scripts/ensure_browser.sh);
without one these tests fail, they never skip. Screenshots go to build/screenshots, or to
TRACKD_SCREENSHOT_DIR (`make screenshots` keeps them in docs/images for the README)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright
from trackd_platform.stack import EmbeddedStack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]


def chromium() -> str:
    for name in ("chromium-headless-shell", "chromium"):
        if found := shutil.which(name):
            return found
    pytest.fail("no headless Chromium on PATH: run `make browser` (as root it installs Debian's "
                "chromium-headless-shell)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API runs an event loop of its own while it is open, which must
    be closed again before any asyncio test of a later module runs."""
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page with what it did that a user would notice: dialogs (an injected script's alert()),
    uncaught errors and failed requests."""

    page: Page
    base: str
    dialogs: list[str] = field(default_factory=list)  # alerts and prompts (confirms are accepted)
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> int:
        response = self.page.goto(self.base + path)
        assert response is not None
        return response.status

    def shot(self, name: str) -> Path:
        folder = Path(os.environ.get("TRACKD_SCREENSHOT_DIR") or ROOT / "build" / "screenshots")
        if not folder.is_absolute():
            folder = ROOT / folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture
def web(stack: EmbeddedStack, browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    watched = Watched(page, stack.web_url)

    def on_dialog(dialog: Dialog) -> None:
        if dialog.type == "confirm":  # the page's own "Delete the selected runs?"
            dialog.accept()
            return
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    yield watched
    context.close()
