"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright's sync API.

Playwright's own browser builds cannot be downloaded here (never run ``playwright install``): the
tests launch the system Chromium that ``scripts/setup.sh`` installs with apt-get. A missing browser
is an error, not a skip: a test that needs a browser must not pass without one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ECHARTS_JS = ROOT / "paichan" / "service" / "web" / "vendor" / "echarts" / "echarts.min.js"

# Headless, no GPU, and nothing that reaches the network on its own (updates, sync, QUIC probes);
# Playwright adds a fresh, empty --user-data-dir per launch.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The Chromium executable: ``$PAICHAN_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    env = os.environ.get("PAICHAN_CHROMIUM")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise RuntimeError(f"PAICHAN_CHROMIUM={env!r} is not an executable file")
        return env
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no Chromium found for the browser tests: run scripts/setup.sh (as root it installs Debian's "
        "'chromium' and 'chromium-driver' with apt-get), or set PAICHAN_CHROMIUM to a Chromium executable"
    )


@contextmanager
def browser_page(locale: str = "en-US", viewport: tuple[int, int] = (1400, 900)) -> Iterator[Page]:
    """A fresh page in a fresh headless Chromium (own context, ``locale``, ``viewport`` as width x height).

    Browser, context and page are closed when the block ends, also on errors.
    """
    executable = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale=locale, viewport={"width": viewport[0], "height": viewport[1]})
            try:
                yield context.new_page()
            finally:
                context.close()
        finally:
            browser.close()
