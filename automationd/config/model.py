"""Frozen config records: what ``config/load.py`` produces and every component receives a slice of.

Durations are float seconds, rates are ``units.Rate``; nothing here parses or validates.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automationd.units import Rate


class Overlap(enum.StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class Misfire(enum.StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    base: float = 2.0
    max: float = 64.0
    multiplier: float = 2.0
    jitter: float = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    failures: int = 5
    reset: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    state_dir: Path = Path("/var/lib/automationd")
    admin_socket: Path = Path("/run/automationd/admin.sock")
    admin_group: str = ""
    metrics_listen: str = "127.0.0.1:9464"
    timezone: str = "UTC"
    shutdown_timeout: float = 30.0
    log_format: str = "json"  # json | console
    log_level: str = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkersConfig:
    max_concurrency: int = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    runs_max_age: float = 30 * 86400.0
    events_max_age: float = 7 * 86400.0
    prune_interval: float = 300.0  # seconds between prune passes (the first is sooner)


@dataclass(frozen=True, slots=True, kw_only=True)
class Defaults:
    timeout: float = 300.0
    retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    name: str
    rate: Rate | None = None
    burst: int | None = None  # None: max(1, ceil(rate per second))
    concurrency: int | None = None  # None: unlimited (only the global pool bounds it)
    breaker: BreakerConfig | None = None
    rate_limited_backoff: Backoff = field(
        default_factory=lambda: Backoff(base=16.0, max=64.0, multiplier=2.0, jitter=0.2)
    )
    max_retry_after: float = 3600.0
    retry_budget: float = 0.2
    retry_budget_floor: Rate = field(default_factory=lambda: Rate(10, 1.0, "10/s"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecAction:
    type: str = "exec"
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    timeout: float | None = None
    retryable_exit_codes: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAction:
    type: str = "http"
    method: str = "GET"
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    body: str | None = None
    timeout: float | None = None
    expect: tuple[int, ...] = ()  # extra statuses counted as success; empty = any 2xx
    follow_redirects: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonAction:
    type: str = "python"
    callable: str  # "package.module:function"
    timeout: float | None = None
    fn: Any = field(default=None, compare=False)  # the resolved async function, set by the loader


ActionSpec = ExecAction | HttpAction | PythonAction


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """One job as declared (config or API). ``schedule`` is the raw text; the parsed form
    lives in the scheduler, built once per distinct (schedule, timezone)."""

    name: str
    action: ActionSpec
    schedule: str | None = None
    on: str | None = None
    when: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    service: str | None = None
    priority: int = 0
    jitter: float = 0.0
    max_runs: int = 0
    targets: tuple[Any, ...] | None = None
    timeout: float = 300.0
    retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    overlap: Overlap = Overlap.SKIP
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace: float = 60.0
    check: ActionSpec | None = None
    verify: ActionSpec | None = None
    source: str = "config"  # config | api
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)  # as written, for the API


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    defaults: Defaults = field(default_factory=Defaults)
    services: Mapping[str, ServiceConfig] = field(default_factory=dict)
    jobs: tuple[JobSpec, ...] = ()
