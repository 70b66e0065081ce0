"""Every SPEC §6 metric family, declared once on a private registry.

The registry also carries prometheus-client's standard ``process_*`` (memory, CPU, open fds,
start time: restarts show as ``changes(process_start_time_seconds[1h])``) and ``python_*``
(``python_info``, garbage collection) collectors, as any Prometheus exporter does.

Label children for jobs are capped: after ``JOB_LABEL_CAP`` distinct job names, further jobs
report under ``job="_other"`` so the series count stays bounded. Children are cached so the hot
path is a dict lookup plus an ``inc()``.

The dead-man's switch ``automationd_job_last_success_timestamp_seconds`` has a series only for
a job that has succeeded: it is filled from the store at start (``last_succeeded``) and set at
every success; a job that never succeeded has none (a ``0`` would read as "not for 56 years"),
and a removed job's series goes with it (``forget_job``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from automationd import __version__

JOB_LABEL_CAP = 500
OTHER = "_other"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry(auto_describe=True)
        self.runs_total = Counter(
            "automationd_runs_total", "Runs that reached a state", ["job", "state"], registry=r
        )
        self.attempts_total = Counter(
            "automationd_attempts_total", "Attempts by outcome", ["job", "outcome"], registry=r
        )
        self.run_duration_seconds = Histogram(
            "automationd_run_duration_seconds",
            "Run duration from start to end",
            ["job"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.schedule_lateness_seconds = Histogram(
            "automationd_schedule_lateness_seconds",
            "Scheduler fire time minus due time (jitter included in due)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "automationd_queue_depth", "Attempts waiting for a worker", registry=r
        )
        self.workers_busy = Gauge("automationd_workers_busy", "Attempts in flight", registry=r)
        self.workers_max = Gauge("automationd_workers_max", "workers.max_concurrency", registry=r)
        self.dlq_size = Gauge(
            "automationd_dlq_size", "Entries in the dead-letter queue", registry=r
        )
        self.ratelimit_tokens = Gauge(
            "automationd_ratelimit_tokens",
            "Tokens in the service's bucket",
            ["service"],
            registry=r,
        )
        self.ratelimit_wait_seconds = Histogram(
            "automationd_ratelimit_wait_seconds",
            "Time an attempt waited for its service (token, slot, pause)",
            ["service"],
            buckets=(*_LATENCY_BUCKETS, 30, 60, 300),
            registry=r,
        )
        self.http_responses_total = Counter(
            "automationd_http_responses_total",
            "HTTP responses by service and status code",
            ["service", "code"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "automationd_breaker_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["service"],
            registry=r,
        )
        self.events_published_total = Counter(
            "automationd_events_published_total", "Events stored", registry=r
        )
        self.jobs = Gauge("automationd_jobs", "Jobs by state", ["state"], registry=r)
        self.build_info = Gauge(
            "automationd_build_info", "Build information", ["version"], registry=r
        )
        self.fires_missed_total = Counter(
            "automationd_fires_missed_total",
            "Scheduled fires dropped by the misfire policy",
            ["job"],
            registry=r,
        )
        self.job_last_success_timestamp_seconds = Gauge(
            "automationd_job_last_success_timestamp_seconds",
            "When the job's last run succeeded (dead-man's switch)",
            ["job"],
            registry=r,
        )
        self.store_errors_total = Counter(
            "automationd_store_errors_total",
            "Store batches that failed, by kind (disk_full, io, read_only, busy, corrupt, other)",
            ["kind"],
            registry=r,
        )
        self.service_in_flight = Gauge(
            "automationd_service_in_flight",
            "Attempts in flight against the service (every [services.*] has one series)",
            ["service"],
            registry=r,
        )
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)  # stateless: they read /proc, gc and platform per scrape
        self.build_info.labels(__version__).set(1)
        for state in ("enabled", "paused", "completed"):
            self.jobs.labels(state).set(0)
        self._job_labels: dict[str, str] = {}

    def store_error(self, kind: str) -> None:
        self.store_errors_total.labels(kind).inc()

    def last_succeeded(self, name: str, at: float) -> None:
        """The job's last success as the store knows it (at start, before any run)."""
        self.job_last_success_timestamp_seconds.labels(self.job(name)).set(at)

    def forget_job(self, name: str) -> None:
        """A removed job: drop its dead-man series (not ``_other``, which others share)."""
        label = self._job_labels.get(name)
        if label is not None and label != OTHER:
            with contextlib.suppress(KeyError):
                self.job_last_success_timestamp_seconds.remove(label)

    def job(self, name: str) -> str:
        """The label value to use for job ``name`` (its own name, or ``_other`` past the cap)."""
        label = self._job_labels.get(name)
        if label is None:
            label = name if len(self._job_labels) < JOB_LABEL_CAP else OTHER
            self._job_labels[name] = label
        return label


class JobMetrics:
    """One job's label children, resolved once (``labels()`` costs a lock and a tuple)."""

    __slots__ = ("_attempts", "_duration", "_m", "_runs", "_success", "label")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._m = metrics
        self.label = metrics.job(name)
        self._attempts: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}
        self._duration = metrics.run_duration_seconds.labels(self.label)
        self._success: Any = None  # made at the first success: no series before (see top)

    def attempt(self, outcome: str, n: int = 1) -> None:
        child = self._attempts.get(outcome)
        if child is None:
            child = self._attempts[outcome] = self._m.attempts_total.labels(self.label, outcome)
        child.inc(n)

    def runs_ended(
        self, states: dict[str, int], durations: list[float], last_success: float | None
    ) -> None:
        """Many runs at once (runs per state, their durations, the latest success time)."""
        for state, n in states.items():
            child = self._runs.get(state)
            if child is None:
                child = self._runs[state] = self._m.runs_total.labels(self.label, state)
            child.inc(n)
        observe = self._duration.observe
        for d in durations:
            observe(d)
        if last_success is not None:
            self._succeeded(last_success)

    def run_ended(self, state: str, duration: float | None, now: float) -> None:
        child = self._runs.get(state)
        if child is None:
            child = self._runs[state] = self._m.runs_total.labels(self.label, state)
        child.inc()
        if duration is not None:
            self._duration.observe(duration)
        if state == "succeeded":
            self._succeeded(now)

    def _succeeded(self, at: float) -> None:
        if self._success is None:
            self._success = self._m.job_last_success_timestamp_seconds.labels(self.label)
        self._success.set(at)
