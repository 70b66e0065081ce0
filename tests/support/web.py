"""The web console of a real daemon subprocess: where it listens, logging in, API calls.

d = web_daemon(daemon_factory, jobs=JOBS)         # [web] listen on 127.0.0.1:0
async with WebClient(d) as w:
    await w.login()                               # through web.login's one-time link
    status, body = await w.api("runs.list", {"limit": 5})
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.daemon import DaemonProcess


def web_daemon(
    factory: Callable[..., DaemonProcess],
    *,
    jobs: str = "",
    services: str = "",
    read_only: bool = False,
    sub: str = "d",
) -> DaemonProcess:
    web = f'[web]\nlisten = "127.0.0.1:0"\nread_only = {"true" if read_only else "false"}\n'
    d = factory(jobs=jobs, services=services, extra=web, sub=sub)
    d.start()
    return d


def web_address(d: DaemonProcess, timeout: float = 10.0) -> str:
    """``http://127.0.0.1:PORT`` from the daemon's ``web.listening`` log line."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for event in d.log_events():
            if event.get("event") == "web.listening":
                return f"http://{event['address']}"
        time.sleep(0.02)
    raise TimeoutError(f"no web.listening line:\n{d.logs()[-2000:]}")


def web_token(d: DaemonProcess) -> str:
    return (d.base / "state" / "web.token").read_text().strip()


class WebClient:
    """An aiohttp session against one daemon's console (cookies kept, no redirects followed)."""

    def __init__(self, d: DaemonProcess) -> None:
        self.d = d
        self.base = web_address(d)
        self.session: aiohttp.ClientSession | None = None
        self.csrf = ""

    async def __aenter__(self) -> WebClient:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1 (an IP host)
        self.session = aiohttp.ClientSession(
            cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=15)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    async def login(self) -> None:
        """Log in through a one-time link from ``web.login``, and keep the CSRF token."""
        url = (await self.d.call("web.login"))["url"]
        async with self.http.get(url, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        status, text = await self.page("/")
        assert status == 200
        found = re.search(r'name="csrf-token" content="([^"]+)"', text)
        assert found is not None
        self.csrf = found.group(1)

    async def page(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.base + path, allow_redirects=False, **kw) as resp:
            return resp.status, await resp.text()

    async def form(self, path: str, fields: dict[str, str], **kw: Any) -> aiohttp.ClientResponse:
        """POST a form as the page would (same origin, the CSRF token); ``headers`` given
        replace the browser's own."""
        headers = kw.pop("headers", None) or {"Origin": self.base, "Sec-Fetch-Site": "same-origin"}
        data = {"csrf": self.csrf, **fields}
        async with self.http.post(
            self.base + path, data=data, headers=headers, allow_redirects=False, **kw
        ) as resp:
            await resp.read()
            return resp

    async def api(
        self,
        cmd: str,
        args: dict[str, Any] | None = None,
        *,
        method: str = "POST",
        token: str | None = "auto",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One API call with the bearer token (``token=None``: none; or the session's)."""
        h = dict(headers or {})
        if token == "auto":
            token = web_token(self.d)
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        url = f"{self.base}/api/v1/{cmd}"
        if method == "GET":
            params = {
                k: v if isinstance(v, str) else json.dumps(v) for k, v in (args or {}).items()
            }
            async with self.http.get(url, params=params, headers=h) as resp:
                return resp.status, await resp.json()
        async with self.http.request(
            method, url, data=json.dumps(args or {}) if args is not None else b"", headers=h
        ) as resp:
            return resp.status, await resp.json()
