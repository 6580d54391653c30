"""Opening pages in Debian's chromium through Playwright, for the explorer's tests.

Playwright's own browsers cannot be downloaded here; ``tools/ensure-chromium.sh``
installs Debian's (``make test`` runs it). Without chromium the browser tests
skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium not found: run tools/ensure-chromium.sh (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextlib.contextmanager
def opened(html: Path, viewport: tuple[int, int] = (1300, 1400)) -> Iterator[tuple[object, list[str], list[str]]]:
    """(page, console errors, requests that left file://) for ``html``, once its script has run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            errors: list[str] = []
            requests: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else requests.append(r.url))
            page.goto(Path(html).resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)
            yield page, errors, requests
        finally:
            browser.close()
