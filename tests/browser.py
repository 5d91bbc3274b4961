"""Browser fixtures for the web UI's tests (docs/ui.md "Tests"): Debian's Chromium driven by
Playwright's Python API (Playwright's own browser download is not used), headless, one browser
per test session and a new page, in a context of its own (no cookies shared), per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM_MISSING = "Chromium not installed (apt-get install chromium)"
TIMEOUT_MS = 30_000  # only turns a hang into a failure
expect.set_options(timeout=TIMEOUT_MS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the browser run last, in their order: while Playwright's sync API is open,
    its event loop counts as running in this thread, so no asyncio test (pytest-asyncio,
    asyncio.run) could run after the first browser test in the same session."""
    items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of the chromium binary. Without one the test is skipped, or fails when
    KFPGRPC_REQUIRE_BROWSER=1 (CI installs it)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("KFPGRPC_REQUIRE_BROWSER") == "1":
            pytest.fail(CHROMIUM_MISSING)
        pytest.skip(CHROMIUM_MISSING)
    return path


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A new page in a new context; a script error on it fails the test."""
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"script errors on the page: {errors}"
