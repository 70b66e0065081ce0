"""The real daemon's metrics endpoint: Prometheus text with every SPEC §6 family, and /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from automationd import __version__
from tests.support.daemon import DaemonProcess
from tests.support.spec import SPEC_FAMILIES

CONFIG = """
[[jobs]]
name = "echo"
on = "demo.*"
service = "api"
action = { type = "exec", argv = ["true"] }

[[jobs]]
name = "later"
schedule = "@daily"
action = { type = "exec", argv = ["true"] }
"""
SERVICES = '[services.api]\nrate = "10/s"\nburst = 5\n'


async def _get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def _families(body: str) -> dict[str, list[Sample]]:
    """Family name as exposed (counters keep their ``_total``) → its samples."""
    out: dict[str, list[Sample]] = {}
    for f in text_string_to_metric_families(body):
        name = f"{f.name}_total" if f.type == "counter" else f.name
        out[name] = list(f.samples)
    return out


def _value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


async def test_metrics_parse_with_every_spec_family_and_healthz_is_200(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """1. A daemon with 2 jobs and one service; scrape /metrics, then publish an event that
       runs a job and scrape again.
    Result: both scrapes parse and hold all 15 SPEC §6 families; gauges and counters show the
    config, the run and the event; /healthz answers 200.
    """
    d = daemon_factory(jobs=CONFIG, services=SERVICES, daemon="[workers]\nmax_concurrency = 3")
    d.start()
    ready = next(e for e in d.log_events() if e.get("event") == "daemon.ready")
    base = f"http://{ready['metrics']}"
    async with asyncio.timeout(10):
        status, ctype, body = await _get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        fam = _families(body)
        assert set(fam) >= SPEC_FAMILIES, SPEC_FAMILIES - set(fam)
        assert _value(fam["automationd_build_info"], "automationd_build_info",
                      version=__version__) == 1  # fmt: skip
        assert _value(fam["automationd_workers_max"], "automationd_workers_max") == 3
        assert _value(fam["automationd_jobs"], "automationd_jobs", state="enabled") == 2
        assert _value(fam["automationd_queue_depth"], "automationd_queue_depth") == 0
        assert _value(fam["automationd_dlq_size"], "automationd_dlq_size") == 0
        tokens = _value(fam["automationd_ratelimit_tokens"], "automationd_ratelimit_tokens",
                        service="api")  # fmt: skip
        assert tokens == 5
        in_flight = _value(fam["automationd_service_in_flight"], "automationd_service_in_flight",
                           service="api")  # fmt: skip
        assert in_flight == 0
        # the standard process/python collectors, as on any Prometheus exporter
        rss = _value(fam["process_resident_memory_bytes"], "process_resident_memory_bytes")
        assert rss is not None and rss > 10 * 2**20
        assert (_value(fam["process_open_fds"], "process_open_fds") or 0) > 3
        assert _value(fam["python_info"], "python_info", implementation="CPython") == 1

        published = await d.call("events.publish", {"name": "demo.hi"})
        [run_id] = published["triggered"]
        assert (await asyncio.to_thread(d.wait_run, run_id))["state"] == "succeeded"
        status, _, body = await _get(f"{base}/metrics")
        fam = _families(body)
        assert set(fam) >= SPEC_FAMILIES
        runs = fam["automationd_runs_total"]
        assert _value(runs, "automationd_runs_total", job="echo", state="succeeded") == 1
        attempts = fam["automationd_attempts_total"]
        assert _value(attempts, "automationd_attempts_total", job="echo", outcome="ok") == 1
        duration = fam["automationd_run_duration_seconds"]
        assert _value(duration, "automationd_run_duration_seconds_count", job="echo") == 1
        events = fam["automationd_events_published_total"]
        published_total = _value(events, "automationd_events_published_total")
        assert published_total is not None and published_total >= 1  # + the daemon's run.*

        status, _, text = await _get(f"{base}/healthz")
        assert (status, text) == (200, "ok\n")
    assert d.stop() == 0
