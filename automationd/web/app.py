"""The web console's aiohttp application and its listener on ``[web] listen``
(web/wiring.py is how the daemon starts it).

Started like the metrics endpoint, by obs/web.py's ``serve_app`` (signals left to daemon.py,
no access log); :func:`serve_web` is an async context manager the daemon enters into its
exit stack. Leaving it ends every live stream first (they would otherwise hold the shutdown
for the runner's shutdown timeout), then closes the listener. The feed's task runs in the
daemon's TaskGroup (daemon.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import structlog
from aiohttp import web

from automationd.obs.web import serve_app
from automationd.web.api import make_api
from automationd.web.console import Console
from automationd.web.forms import make_forms
from automationd.web.guard import add_headers, make_guard
from automationd.web.job_pages import make_job_pages
from automationd.web.pages import make_pages
from automationd.web.run_pages import make_run_pages
from automationd.web.stream import make_streams

log = structlog.get_logger("automationd.web")

MAX_BODY = 1 << 20  # like the socket's request line: 1 MiB


def make_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[make_guard(console)], client_max_size=MAX_BODY)
    for routes in (
        make_pages(console),
        make_job_pages(console),
        make_run_pages(console),
        make_forms(console),
        make_streams(console),
        make_api(console),
    ):
        app.router.add_routes(routes)
    static = resources.files("automationd.web").joinpath("static")
    app.router.add_static("/static/", str(static), append_version=False)
    app.on_response_prepare.append(add_headers)
    return app


def url_host(address: str) -> str:
    """The bound address as a browser should be sent to it (a wildcard means this host)."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "[::]":
        host = "[::1]"
    return f"{host}:{port}"


@asynccontextmanager
async def serve_web(console: Console, tg: asyncio.TaskGroup) -> AsyncIterator[str]:
    """Serve the console until the block exits, its feed's task in ``tg``; yields the bound
    address."""
    async with serve_app(make_app(console), console.listen, "web.listen") as address:
        console.auth.base_url = f"http://{url_host(address)}"
        log.info("web.listening", address=address, read_only=console.read_only)
        feed = tg.create_task(console.feed.run(), name="web:feed")
        try:
            yield address
        finally:
            feed.cancel()
            console.feed.close()
