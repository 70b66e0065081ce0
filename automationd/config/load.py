"""TOML file → frozen ``Config`` in one pass (SPEC §2).

Every key is read exactly once and every key nobody reads is an error, so a typo never
silently falls back to a default. All failures are one ``ConfigError`` line of the form
``FILE: dotted.key: problem``; the readers below raise without the file prefix and
``load_config`` adds it once, which is also how ``parse_job`` serves the admin socket.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from automationd.config import values as v
from automationd.config.jobs import parse_job, parsed_schedule
from automationd.config.model import (
    BreakerConfig,
    Config,
    DaemonConfig,
    Defaults,
    JobSpec,
    Misfire,
    Overlap,
    RetentionConfig,
    ServiceConfig,
    StoreConfig,
    WorkersConfig,
)
from automationd.config.shared import Shared
from automationd.errors import ConfigError

try:  # tomli is the same parser as the stdlib's tomllib, compiled: 3x faster on big files
    import tomli as toml
except ImportError:  # pragma: no cover - tomli is optional; same behaviour, only slower
    import tomllib as toml  # type: ignore[no-redef]  # one module or the other, same API

__all__ = ["gc_paused", "load_config", "parse_job", "parsed_schedule"]

_TOP_KEYS = frozenset({"daemon", "workers", "retention", "defaults", "services", "jobs", "store"})
_DAEMON_KEYS = frozenset(
    {
        "state_dir",
        "admin_socket",
        "admin_group",
        "user_group",
        "metrics_listen",
        "timezone",
        "shutdown_timeout",
        "log_format",
        "log_level",
    }
)
_SERVICE_KEYS = frozenset(
    {
        "rate",
        "burst",
        "concurrency",
        "breaker",
        "rate_limited_backoff",
        "max_retry_after",
        "retry_budget",
        "retry_budget_floor",
    }
)
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DEFAULTS_KEYS = frozenset({"timeout", "retries", "backoff", "overlap", "misfire", "misfire_grace"})
_LOG_FORMATS = ("json", "console")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raises ``ConfigError`` with one line naming file and key."""
    shown = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    with gc_paused():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{shown}: invalid TOML: not UTF-8 ({exc.reason})") from None
        try:
            try:
                return _load_in_pieces(text, path.absolute())
            except _Whole:
                return build_config(toml.loads(text), path=path.absolute())
        except toml.TOMLDecodeError as exc:
            raise ConfigError(f"{shown}: invalid TOML: {_one_line(str(exc))}") from None
        except ConfigError as exc:
            raise ConfigError(f"{shown}: {_one_line(str(exc))}") from None


# A big job file is parsed in pieces of about this many characters, each validated before
# the next is parsed: the parser's output (~1 KB a job) then never exists all at once, so
# start-up peaks lower, and what the jobs keep is not scattered through 100 MB of freed
# parser output that the allocator could not give back (RSS after READY, issue 4).
_PIECE = 256 * 1024
_CUT = "\n[[jobs]]\n"
# Any other header (or array line) after the first [[jobs]]: not a plain list of jobs.
_OTHER_LINE = re.compile(r"^[ \t]*\[(?!\[jobs\]\]$)(?!\[?jobs\.)", re.M)


class _Whole(Exception):
    """The file is not a plain head followed by [[jobs]] tables: parse it in one go."""


def _load_in_pieces(text: str, path: Path) -> Config:
    """Parse the head (everything before the first ``[[jobs]]`` line), then the jobs piece by
    piece, each piece cut just before a ``[[jobs]]`` line. Raises ``_Whole`` where that may
    not mean the same as parsing the whole file, and on any TOML error (so that the error
    is reported by the whole-file parse, with its true line number).

    Why a cut is safe: without multi-line strings, a line that is exactly ``[[jobs]]`` is a
    header (inside a single-line string or a comment it is not at a line start; inside a
    multi-line array it is not a valid value, so the whole file is invalid and a piece ends
    inside the array, which fails). After the first one, every header must be ``[[jobs]]``,
    ``[jobs.…]`` or ``[[jobs.…]]``, so each piece holds only jobs and later pieces cannot
    change the head."""
    if text.startswith("[[jobs]]\n"):
        first = 0
    else:
        first = text.find(_CUT) + 1
        if first == 0:
            raise _Whole
    if '"""' in text or "'''" in text or "\r" in text or _OTHER_LINE.search(text, first):
        raise _Whole
    head = _parse_piece(text[:first])
    if "jobs" in head:
        raise _Whole  # e.g. jobs = [...] before a [[jobs]] header: invalid, let tomli say so
    return build_config(head, path=path, pieces=_pieces(text, first))


def _pieces(text: str, start: int) -> Iterator[list[Any]]:
    while start < len(text):
        end = text.find(_CUT, start + _PIECE) + 1 or len(text)
        piece = _parse_piece(text[start:end])
        if piece.keys() != {"jobs"} or not isinstance(piece["jobs"], list):
            raise _Whole
        yield piece["jobs"]
        start = end


def _parse_piece(text: str) -> dict[str, Any]:
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError:
        raise _Whole from None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Parsing allocates hundreds of thousands of acyclic containers that all stay alive;
    the cyclic collector would rescan them again and again (a third of the load time for
    100,000 jobs) without ever finding garbage. The pause is process-wide, so a reload in a
    worker thread also pauses collection for the event loop, for the length of the load."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip()


def build_config(raw: Mapping[str, Any], *, path: Path, pieces: Iterable[list[Any]] = ()) -> Config:
    """Validate an already-parsed TOML document; errors carry the dotted path only. Jobs
    come from ``raw["jobs"]``, or from ``pieces`` (lists of job tables) when given."""
    v.check_keys(raw, "", _TOP_KEYS)
    base_dir = path.parent
    daemon = _daemon(_section(raw, "daemon"), base_dir)
    workers = _section(raw, "workers")
    v.check_keys(workers, "workers", frozenset({"max_concurrency"}))
    retention = _section(raw, "retention")
    v.check_keys(
        retention, "retention", frozenset({"runs_max_age", "events_max_age", "prune_interval"})
    )
    defaults = _defaults(_section(raw, "defaults"))
    services = _services(_section(raw, "services"))
    return Config(
        path=path,
        daemon=daemon,
        workers=WorkersConfig(
            max_concurrency=v.integer(
                workers.get("max_concurrency", 16), "workers", "max_concurrency", minimum=1
            )
        ),
        retention=RetentionConfig(
            runs_max_age=v.duration(
                retention.get("runs_max_age", "30d"), "retention", "runs_max_age", positive=True
            ),
            events_max_age=v.duration(
                retention.get("events_max_age", "7d"), "retention", "events_max_age", positive=True
            ),
            prune_interval=v.duration(
                retention.get("prune_interval", "5m"), "retention", "prune_interval", positive=True
            ),
        ),
        defaults=defaults,
        services=services,
        jobs=_jobs(pieces or (raw.get("jobs", []),), defaults, services, base_dir, daemon.timezone),
        store=_store(_section(raw, "store")),
    )


_STORE_KEYS = frozenset({"backend", "dsn", "lease_ttl", "node_id"})
_BACKENDS = ("sqlite", "postgresql")


def _store(raw: Mapping[str, Any]) -> StoreConfig:
    """``[store]`` (SPEC §7.4): the backend, and for PostgreSQL its DSN and fleet settings."""
    v.check_keys(raw, "store", _STORE_KEYS)
    d = StoreConfig()
    w = "store"
    get = raw.get
    dsn = v.string(get("dsn", d.dsn), w, "dsn")
    if not dsn.startswith(("postgresql://", "postgres://")):
        v.fail(w, "dsn", f"expected a postgresql:// URL, got {dsn!r}")
    ttl = v.duration(get("lease_ttl", "15s"), w, "lease_ttl", positive=True)
    if ttl < 1.0:
        v.fail(w, "lease_ttl", "must be at least 1s (heartbeats go out every third of it)")
    node_id = v.string(get("node_id", d.node_id), w, "node_id")
    if len(node_id) > 128 or any(ord(c) < 32 for c in node_id):
        v.fail(w, "node_id", "at most 128 printable characters")
    return StoreConfig(
        backend=v.one_of(get("backend", d.backend), w, "backend", _BACKENDS),
        dsn=dsn,
        lease_ttl=ttl,
        node_id=node_id,
    )


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return v.table(raw.get(key, {}), "", key)


def _daemon(raw: Mapping[str, Any], base_dir: Path) -> DaemonConfig:
    v.check_keys(raw, "daemon", _DAEMON_KEYS)
    d = DaemonConfig()
    w = "daemon"
    get = raw.get
    state_dir = get("state_dir")
    socket = get("admin_socket")
    listen = v.string(get("metrics_listen", d.metrics_listen), w, "metrics_listen")
    if listen:
        _check_listen(listen)
    return DaemonConfig(
        state_dir=(
            d.state_dir if state_dir is None else v.local_path(state_dir, w, "state_dir", base_dir)
        ),
        admin_socket=(
            d.admin_socket if socket is None else v.local_path(socket, w, "admin_socket", base_dir)
        ),
        admin_group=v.string(get("admin_group", d.admin_group), w, "admin_group"),
        user_group=v.string(get("user_group", d.user_group), w, "user_group"),
        metrics_listen=listen,
        timezone=v.timezone(get("timezone", d.timezone), w, "timezone"),
        shutdown_timeout=v.duration(get("shutdown_timeout", "30s"), w, "shutdown_timeout"),
        log_format=v.one_of(get("log_format", d.log_format), w, "log_format", _LOG_FORMATS),
        log_level=v.one_of(get("log_level", d.log_level), w, "log_level", _LOG_LEVELS),
    )


def _check_listen(listen: str) -> None:
    """``HOST:PORT`` with a numeric port; IPv6 hosts in brackets (``[::1]:9464``)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        v.fail("daemon", "metrics_listen", f'expected HOST:PORT or "", got {listen!r}')


def _defaults(raw: Mapping[str, Any]) -> Defaults:
    w = "defaults"
    base = Defaults()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "timeout":
            out[key] = v.duration(value, w, key, positive=True)
        elif key == "misfire_grace":
            out[key] = v.duration(value, w, key)
        elif key == "retries":
            out[key] = v.integer(value, w, key, minimum=0)
        elif key == "backoff":
            out[key] = v.backoff(value, w, key, base.backoff)
        elif key == "overlap":
            out[key] = v.choice(value, w, key, Overlap)
        elif key == "misfire":
            out[key] = v.choice(value, w, key, Misfire)
        else:
            v.unknown_key(w, key, _DEFAULTS_KEYS)
    return Defaults(**out)


def _services(raw: Mapping[str, Any]) -> dict[str, ServiceConfig]:
    return {name: _service(name, table) for name, table in raw.items()}


def _service(name: str, value: object) -> ServiceConfig:
    raw = v.table(value, "services", name)
    w = f"services.{name}"
    if not _SERVICE_NAME.fullmatch(name):
        raise ConfigError(f"{w}: bad service name (expected letters, digits, '.', '_' or '-')")
    v.check_keys(raw, w, _SERVICE_KEYS)
    d = ServiceConfig(name=name)
    get = raw.get
    rate = get("rate")
    burst = get("burst")
    concurrency = get("concurrency")
    breaker = get("breaker")
    rlb = get("rate_limited_backoff")
    floor = get("retry_budget_floor")
    return ServiceConfig(
        name=name,
        rate=None if rate is None else v.rate(rate, w, "rate"),
        burst=None if burst is None else v.integer(burst, w, "burst", minimum=1),
        concurrency=(
            None if concurrency is None else v.integer(concurrency, w, "concurrency", minimum=1)
        ),
        breaker=None if breaker is None else _breaker(breaker, w),
        rate_limited_backoff=(
            d.rate_limited_backoff
            if rlb is None
            else v.backoff(rlb, w, "rate_limited_backoff", d.rate_limited_backoff)
        ),
        max_retry_after=v.duration(get("max_retry_after", "1h"), w, "max_retry_after"),
        retry_budget=v.number(get("retry_budget", 0.2), w, "retry_budget", low=0.0, high=1.0),
        retry_budget_floor=(
            d.retry_budget_floor if floor is None else v.rate(floor, w, "retry_budget_floor")
        ),
    )


def _breaker(value: object, where: str) -> BreakerConfig:
    raw = v.table(value, where, "breaker")
    w = f"{where}.breaker"
    v.check_keys(raw, w, frozenset({"failures", "reset"}))
    return BreakerConfig(
        failures=v.integer(raw.get("failures", 5), w, "failures", minimum=1),
        reset=v.duration(raw.get("reset", "60s"), w, "reset", positive=True),
    )


def _jobs(
    pieces: Iterable[object],
    defaults: Defaults,
    services: Mapping[str, ServiceConfig],
    base_dir: Path,
    default_tz: str,
) -> tuple[JobSpec, ...]:
    shared = Shared()
    jobs: list[JobSpec] = []
    for value in pieces:
        if not isinstance(value, list):
            v.fail("", "jobs", f"expected an array of tables ([[jobs]]), got {v.show(value)}")
        n = len(jobs)
        jobs.extend(
            parse_job(
                raw,
                where=f"jobs[{n + i}]",
                defaults=defaults,
                services=services,
                base_dir=base_dir,
                default_tz=default_tz,
                shared=shared,
            )
            for i, raw in enumerate(value)
        )
    if len({job.name for job in jobs}) != len(jobs):
        seen: set[str] = set()
        for i, job in enumerate(jobs):
            if job.name in seen:
                v.fail(f"jobs[{i}]", "name", f"duplicate job name {job.name!r}")
            seen.add(job.name)
    return tuple(jobs)
