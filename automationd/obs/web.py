"""The HTTP side of observability: ``GET /metrics`` and ``GET /healthz`` on ``metrics_listen``.

One small aiohttp app, run by an ``AppRunner`` that leaves signals to ``daemon.py``
(``handle_signals=False``) and writes no access log (a scrape every few seconds would flood the
journal). :func:`serve_metrics` is an async context manager so the daemon can enter it into its
exit stack; leaving it closes the listener.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from automationd.errors import AutomationdError

log = structlog.get_logger()

Health = Callable[[], tuple[bool, str]]

# Scrapes are short; do not hold shutdown for a slow client.
_SHUTDOWN_TIMEOUT = 1.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → ``(host, port)``; ``ValueError`` naming the value."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics_listen {listen!r}: expected 'host:port' or '[v6addr]:port'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"metrics_listen {listen!r}: bad IPv6 address {host!r}") from None
    elif ":" in host:
        raise ValueError(f"metrics_listen {listen!r}: put an IPv6 address in brackets")
    return host, int(port_text)


def format_address(sockname: object) -> str:
    """A socket name tuple → ``"host:port"`` or ``"[v6]:port"``."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), int(sockname[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(sockname)


def make_app(
    registry: CollectorRegistry,
    health: Health,
    before_scrape: Callable[[], None] | None = None,
) -> web.Application:
    """The aiohttp application (separate from the runner so tests can inspect routes)."""

    async def metrics(request: web.Request) -> web.Response:
        if before_scrape is not None:
            try:
                before_scrape()
            except Exception:
                # Stale gauges beat no metrics at all; say so in the log.
                log.exception("metrics.refresh_failed")
        body = generate_latest(registry)
        return web.Response(
            body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
        )

    async def healthz(request: web.Request) -> web.Response:
        try:
            ok, reason = health()
        except Exception as exc:
            ok, reason = False, f"health check failed: {exc!r}"
        if ok:
            return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})
        return web.Response(status=503, text=f"{reason}\n", headers={"Cache-Control": "no-store"})

    app = web.Application(client_max_size=4096)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


@asynccontextmanager
async def serve_metrics(
    listen: str,
    registry: CollectorRegistry,
    health: Health,
    before_scrape: Callable[[], None] | None = None,
) -> AsyncIterator[str | None]:
    """Serve ``/metrics`` and ``/healthz`` on ``listen`` until the block exits.

    Yields the bound address (``"127.0.0.1:40123"`` when ``listen`` asked for port 0), or
    ``None`` when ``listen`` is ``""`` (endpoint disabled). A failure to bind raises
    ``AutomationdError`` naming the address and the reason.
    """
    if not listen:
        log.info("metrics.disabled")
        yield None
        return
    app = make_app(registry, health, before_scrape)
    async with serve_app(app, listen, "metrics_listen") as address:
        log.info("metrics.listening", address=address)
        yield address


@asynccontextmanager
async def serve_app(app: web.Application, listen: str, key: str) -> AsyncIterator[str]:
    """Serve ``app`` on ``listen`` until the block exits; yields the bound address
    (``"127.0.0.1:40123"`` for port 0). The one start-up of both listeners (metrics and the
    web console): an ``AppRunner`` that leaves signals to daemon.py, writes no access log and
    gives open requests ``_SHUTDOWN_TIMEOUT`` at the end. A failure to bind is an
    ``AutomationdError`` naming the config ``key``, the address and the reason."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise AutomationdError(f"{key} {listen!r}: cannot listen: {reason}") from exc
        yield format_address(runner.addresses[0]) if runner.addresses else listen
    finally:
        await runner.cleanup()
