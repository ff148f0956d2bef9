"""A real browser for the pages: Debian's Chromium driven by Playwright (which cannot download its
own browsers here), started with nothing that reaches out (no background networking, no
component updates), and a page that records every request for a host other than this machine."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

#: What ``make test`` installs with apt when it runs as root and they are missing.
PACKAGES = "chromium fonts-noto-cjk"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(f"no Chromium: `make test` installs it as root (apt-get install {PACKAGES})")
    return path


@contextmanager
def offline_page(viewport: dict[str, int] | None = None) -> Iterator[tuple[object, list[str]]]:
    """A page on which every request to a host other than 127.0.0.1/localhost is refused and
    listed (the network of a government intranet: nothing from outside)."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def local_only(route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900}, locale="zh-CN")
            page.route("**/*", local_only)
            yield page, outside
        finally:
            browser.close()
