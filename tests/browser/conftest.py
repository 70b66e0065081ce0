"""Browser tests of the web console: Debian's Chromium driven by Playwright (no browser is
downloaded). Skipped, saying why, where /usr/bin/chromium or Playwright is missing.

One daemon runs the demo config (etc/automationd.toml, with its state, socket and ports moved
into a temp dir) for the whole module; each test gets a fresh browser context. Screenshots of
every page go to one folder under the test session's tmp dir (printed at the end).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.web import web_address

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]

try:
    from playwright.sync_api import Browser, sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None  # type: ignore[assignment]


def demo_config(base: Path) -> str:
    """The demo config with state, socket and ports inside ``base`` and JSON logs."""
    text = (REPO / "etc" / "automationd.toml").read_text()
    text = re.sub(r"(?m)^state_dir = .*$", f'state_dir = "{base / "state"}"', text)
    text = re.sub(r"(?m)^admin_socket = .*$", f'admin_socket = "{base / "admin.sock"}"', text)
    text = re.sub(r"(?m)^metrics_listen = .*$", 'metrics_listen = ""', text)
    text = re.sub(r"(?m)^log_format = .*$", 'log_format = "json"', text)
    if re.search(r"(?m)^\[web\]", text):
        text = re.sub(r"(?m)^listen = .*$", 'listen = "127.0.0.1:0"', text)
    else:
        text += '\n[web]\nlisten = "127.0.0.1:0"\n'
    return text


@pytest.fixture(scope="module")
def demo() -> Iterator[DaemonProcess]:
    if sync_playwright is None or not CHROMIUM.exists():
        pytest.skip(
            "browser tests need Debian's chromium at /usr/bin/chromium and the playwright "
            "package (apt-get install chromium; pip install -e '.[dev]')"
        )
    base = Path(tempfile.mkdtemp(prefix="ad-web-", dir="/tmp"))
    d = DaemonProcess(base, demo_config(base))
    d.start()
    web_address(d)
    yield d
    d.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(demo: DaemonProcess) -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("console-screens")
    yield folder
    print(f"\nweb console screenshots: {folder}")


@pytest.fixture
def page(browser: Browser, demo: DaemonProcess) -> Iterator[Any]:
    """A logged-in page (through a fresh one-time link) in its own browser context."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.goto(demo.call_sync("web.login")["url"])
    yield pg
    context.close()
    assert errors == [], errors  # no script errors, no CSP violations
