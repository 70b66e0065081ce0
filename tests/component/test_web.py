"""obs/web.py against a real aiohttp server on 127.0.0.1: /metrics, /healthz, binding."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from automationd.errors import AutomationdError
from automationd.obs.metrics import Metrics
from automationd.obs.web import parse_listen, serve_app, serve_metrics
from tests.support.spec import SPEC_FAMILIES


def _ok() -> tuple[bool, str]:
    return True, "ok"


def _fill(m: Metrics) -> None:
    """One sample in every labelled family, as a running daemon would have."""
    job = m.job("sync")
    m.runs_total.labels(job, "succeeded").inc()
    m.attempts_total.labels(job, "ok").inc()
    m.run_duration_seconds.labels(job).observe(0.2)
    m.schedule_lateness_seconds.observe(0.001)
    m.ratelimit_tokens.labels("api").set(3)
    m.ratelimit_wait_seconds.labels("api").observe(0.0)
    m.http_responses_total.labels("api", "200").inc()
    m.breaker_state.labels("api").set(0)
    m.events_published_total.inc()


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_metrics_serves_every_spec_family_after_before_scrape() -> None:
    """GET /metrics is parseable Prometheus text with every SPEC §6 family, refreshed first."""
    m = Metrics()
    _fill(m)
    scrapes = 0

    def refresh() -> None:
        nonlocal scrapes
        scrapes += 1
        m.queue_depth.set(7)

    async with asyncio.timeout(5), serve_metrics("127.0.0.1:0", m.registry, _ok, refresh) as addr:
        assert addr is not None and addr.startswith("127.0.0.1:")
        status, ctype, body = await _get(f"http://{addr}/metrics")
    assert status == 200
    assert ctype.startswith("text/plain") and "version=" in ctype
    assert scrapes == 1
    families = {f.name: f for f in text_string_to_metric_families(body)}
    exposed = {f"{name}_total" if f.type == "counter" else name for name, f in families.items()}
    assert exposed >= SPEC_FAMILIES
    [depth] = families["automationd_queue_depth"].samples
    assert depth.value == 7


async def test_metrics_still_served_when_before_scrape_fails() -> None:
    """A failing gauge refresh is logged and the scrape still answers with the last values."""
    m = Metrics()

    def broken() -> None:
        raise RuntimeError("store gone")

    with capture_logs() as logs:
        async with asyncio.timeout(5), serve_metrics("127.0.0.1:0", m.registry, _ok, broken) as a:
            status, _, body = await _get(f"http://{a}/metrics")
    assert status == 200 and "automationd_build_info" in body
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["metrics.refresh_failed"]


async def test_healthz_follows_health_callable() -> None:
    """GET /healthz is 200 "ok" while health() is true, then 503 with the reason."""
    state = (True, "ok")
    m = Metrics()
    async with asyncio.timeout(5), serve_metrics("127.0.0.1:0", m.registry, lambda: state) as a:
        assert await _get(f"http://{a}/healthz") == (200, "text/plain; charset=utf-8", "ok\n")
        state = (False, "store: database is locked")
        status, _, body = await _get(f"http://{a}/healthz")
        assert (status, body) == (503, "store: database is locked\n")
        state = (True, "ok")
        assert (await _get(f"http://{a}/healthz"))[0] == 200


async def test_healthz_is_503_when_health_raises() -> None:
    """A health check that raises reports unhealthy instead of a 500."""

    def explode() -> tuple[bool, str]:
        raise RuntimeError("no loop")

    async with asyncio.timeout(5), serve_metrics("127.0.0.1:0", Metrics().registry, explode) as a:
        status, _, body = await _get(f"http://{a}/healthz")
    assert status == 503 and "no loop" in body


async def test_empty_listen_disables_endpoint() -> None:
    """metrics_listen "" yields None and opens nothing."""
    async with asyncio.timeout(5), serve_metrics("", Metrics().registry, _ok) as addr:
        assert addr is None


async def test_ipv6_bracket_form_binds() -> None:
    """ "[::1]:0" binds the IPv6 loopback and yields a bracketed address."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    async with asyncio.timeout(5), serve_metrics("[::1]:0", Metrics().registry, _ok) as addr:
        assert addr is not None and addr.startswith("[::1]:")
        assert (await _get(f"http://{addr}/healthz"))[0] == 200


async def test_bind_failure_names_the_address() -> None:
    """A port already in use raises AutomationdError naming metrics_listen's value."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(AutomationdError, match=listen.replace(".", r"\.")):
            async with asyncio.timeout(5), serve_metrics(listen, Metrics().registry, _ok):
                pass


async def test_server_is_closed_after_the_block() -> None:
    """Leaving serve_metrics closes the listener, so the port refuses connections."""
    async with asyncio.timeout(5):
        async with serve_metrics("127.0.0.1:0", Metrics().registry, _ok) as addr:
            assert addr is not None
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(f"http://{addr}/healthz")


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_parse_listen_accepts(listen: str, expected: tuple[str, int]) -> None:
    """host:port and [v6]:port split into host and port."""
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9464", ":9464", "host:", "host:99999", "::1:9464", "[x]:1"])
def test_parse_listen_rejects(listen: str) -> None:
    """Malformed metrics_listen values raise ValueError naming the value."""
    with pytest.raises(ValueError, match="metrics_listen"):
        parse_listen(listen)


async def test_serve_app_runs_any_app_and_names_its_key_when_it_cannot_bind() -> None:
    """The one runner both listeners use (metrics and the console): an app is served on the
    bound address until the block exits, and a taken port is an error naming the config key."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/", hello)
    async with asyncio.timeout(5):
        async with serve_app(app, "127.0.0.1:0", "web.listen") as addr:
            assert (await _get(f"http://{addr}/"))[2] == "hi"
            with pytest.raises(AutomationdError, match=rf"web\.listen '{addr}': cannot listen"):
                async with serve_app(web.Application(), addr, "web.listen"):
                    pass
        with pytest.raises(aiohttp.ClientConnectionError):
            await _get(f"http://{addr}/")
