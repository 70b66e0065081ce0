"""The web console's aiohttp application and its listener on ``[web] listen``
(web/wiring.py is how the daemon starts it).

Like the metrics endpoint (obs/web.py): an ``AppRunner`` that leaves signals to daemon.py
(``handle_signals=False``) and writes no access log; :func:`serve_web` is an async context
manager the daemon enters into its exit stack. Leaving it ends every live stream first
(they would otherwise hold the shutdown for ``_SHUTDOWN_TIMEOUT``), then closes the
listener. The feed's task runs in the daemon's TaskGroup (daemon.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import structlog
from aiohttp import web

from automationd.errors import AutomationdError
from automationd.obs.web import format_address, parse_listen
from automationd.web.api import make_api
from automationd.web.console import Console
from automationd.web.forms import make_forms
from automationd.web.guard import add_headers, make_guard
from automationd.web.job_pages import make_job_pages
from automationd.web.pages import make_pages
from automationd.web.run_pages import make_run_pages
from automationd.web.stream import make_streams

log = structlog.get_logger("automationd.web")

_SHUTDOWN_TIMEOUT = 1.0
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
    listen = console.listen
    host, port = parse_listen(listen)
    runner = web.AppRunner(
        make_app(console),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise AutomationdError(f"web.listen {listen!r}: cannot listen: {reason}") from exc
        address = format_address(runner.addresses[0]) if runner.addresses else listen
        console.auth.base_url = f"http://{url_host(address)}"
        log.info("web.listening", address=address, read_only=console.read_only)
        feed = tg.create_task(console.feed.run(), name="web:feed")
        try:
            yield address
        finally:
            feed.cancel()
            console.feed.close()
    finally:
        await runner.cleanup()
