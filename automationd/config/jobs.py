"""One ``[[jobs]]`` table (or a ``jobs.add`` request) → a validated ``JobSpec``.

Theory of operation: a job file may hold 100,000 jobs (~10 µs each here), so ``parse_job``
checks the table's keys against one frozenset, then reads each known key with a single dict
probe: an absent key costs one ``get``, a present one its converter. Anything shared between
jobs is computed once: time zones, schedules (by text and zone), durations and python
callables are cached, records are built with every field given (no default factories run),
and the dotted key path for an error message is only built when something is wrong.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from automationd.config import values as v
from automationd.config.model import (
    ActionSpec,
    Defaults,
    ExecAction,
    HttpAction,
    JobSpec,
    Misfire,
    Overlap,
    PythonAction,
    ServiceConfig,
)
from automationd.core.schedule import Schedule, parse_schedule
from automationd.errors import ConfigError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_name_ok = NAME_RE.fullmatch
_NO_WHEN: Mapping[str, Any] = MappingProxyType({})  # shared: an absent `when` matches anything
_NO_ENV: Mapping[str, str] = MappingProxyType({})
_NO_CODES: frozenset[int] = frozenset()
_CALLABLE_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_METHOD_RE = re.compile(r"[A-Za-z]+")

_EXEC_KEYS = frozenset({"type", "argv", "env", "cwd", "timeout", "retryable_exit_codes"})
_HTTP_KEYS = frozenset(
    {"type", "method", "url", "headers", "json", "body", "timeout", "expect", "follow_redirects"}
)
_PYTHON_KEYS = frozenset({"type", "callable", "timeout"})


@functools.lru_cache(maxsize=4096)
def parsed_schedule(text: str, tz_name: str) -> Schedule:
    """The Schedule for ``text`` in zone ``tz_name``; cached because thousands of jobs share a
    handful of schedules. Raises ValueError with the parser's message."""
    return parse_schedule(text, v.zone(tz_name))


_path_added: set[str] = set()
_resolved: dict[str, Any] = {}


def _resolve(spec: str, base_dir: Path) -> Any:
    """Import a python action once; the config's folder goes on sys.path so operators can
    keep their action modules beside the config file."""
    fn = _resolved.get(spec)
    if fn is not None:
        return fn
    folder = str(base_dir)
    if folder not in _path_added:
        _path_added.add(folder)
        sys.path.insert(0, folder)
    from automationd.actions.python import resolve_callable  # lazy: it pulls in asyncio

    fn = resolve_callable(spec)
    _resolved[spec] = fn  # only successes: a fixed module is picked up on the next reload
    return fn


def _timeout(raw: Mapping[str, Any], here: str) -> float | None:
    t = raw.get("timeout")
    return None if t is None else v.duration(t, here, "timeout", positive=True)


def _exec(raw: Mapping[str, Any], here: str, base_dir: Path) -> ExecAction:
    for key in raw:
        if key not in _EXEC_KEYS:
            v.unknown_key(here, key, _EXEC_KEYS)
    get = raw.get
    argv = get("argv")
    if argv is None:
        v.fail(here, "argv", "missing (a non-empty array of strings)")
    if type(argv) is not list or not argv:
        v.fail(here, "argv", f"expected a non-empty array of strings, got {v.show(argv)}")
    for arg in argv:
        if type(arg) is not str:
            i = next(i for i, a in enumerate(argv) if type(a) is not str)
            v.fail(here, f"argv[{i}]", f"expected a string, got {v.show(arg)}")
    if not argv[0]:
        v.fail(here, "argv[0]", "must not be empty")
    env = get("env")
    cwd = get("cwd")
    timeout = get("timeout")
    codes = get("retryable_exit_codes")
    return ExecAction(
        argv=tuple(argv),
        env=_NO_ENV if env is None else v.str_map(env, here, "env"),
        cwd=None if cwd is None else v.local_path(cwd, here, "cwd", base_dir),
        timeout=None if timeout is None else v.duration(timeout, here, "timeout", positive=True),
        retryable_exit_codes=(
            _NO_CODES
            if codes is None
            else frozenset(v.int_list(codes, here, "retryable_exit_codes", low=0, high=255))
        ),
    )


def _http(raw: Mapping[str, Any], here: str) -> HttpAction:
    v.check_keys(raw, here, _HTTP_KEYS)
    url = raw.get("url")
    if url is None:
        v.fail(here, "url", "missing")
    url = v.nonempty(url, here, "url")
    if not url.startswith(("http://", "https://", "${")):
        v.fail(here, "url", f"expected an http:// or https:// URL, got {url!r}")
    method = v.string(raw.get("method", "GET"), here, "method")
    if not _METHOD_RE.fullmatch(method):
        v.fail(here, "method", f"bad HTTP method {method!r}")
    if "json" in raw and "body" in raw:
        v.fail(here, "body", "give either 'json' or 'body', not both")
    body = raw.get("body")
    headers = raw.get("headers")
    expect = raw.get("expect")
    return HttpAction(
        method=method.upper(),
        url=url,
        headers={} if headers is None else v.str_map(headers, here, "headers"),
        json=raw.get("json"),
        body=None if body is None else v.string(body, here, "body"),
        timeout=_timeout(raw, here),
        expect=() if expect is None else v.int_list(expect, here, "expect", low=100, high=599),
        follow_redirects=v.boolean(raw.get("follow_redirects", False), here, "follow_redirects"),
    )


def _python(raw: Mapping[str, Any], here: str, base_dir: Path) -> PythonAction:
    v.check_keys(raw, here, _PYTHON_KEYS)
    spec = raw.get("callable")
    if spec is None:
        v.fail(here, "callable", "missing ('package.module:function')")
    if type(spec) is not str or not _CALLABLE_RE.fullmatch(spec):
        v.fail(here, "callable", f"expected 'package.module:function', got {v.show(spec)}")
    try:
        fn = _resolve(spec, base_dir)
    except ValueError as exc:
        v.fail(here, "callable", str(exc))
    return PythonAction(callable=spec, timeout=_timeout(raw, here), fn=fn)


def parse_action(value: object, where: str, key: str, base_dir: Path) -> ActionSpec:
    """An action table by its ``type``: exec, http or python."""
    raw = value if type(value) is dict else v.table(value, where, key)
    here = f"{where}.{key}"
    kind = raw.get("type")
    if kind == "exec":
        return _exec(raw, here, base_dir)
    if kind == "http":
        return _http(raw, here)
    if kind == "python":
        return _python(raw, here, base_dir)
    if kind is None:
        v.fail(here, "type", "missing (exec, http or python)")
    v.fail(here, "type", f"unknown action type {v.show(kind)} (expected exec, http or python)")


def _targets(value: object, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        v.fail(where, "targets", f"expected an array, got {v.show(value)}")
    if not value:
        v.fail(where, "targets", "must not be empty (leave it out for a single untargeted run)")
    return tuple(value)


JOB_KEYS = frozenset(
    {
        "name",
        "schedule",
        "on",
        "when",
        "timezone",
        "service",
        "priority",
        "jitter",
        "max_runs",
        "targets",
        "timeout",
        "retries",
        "backoff",
        "overlap",
        "misfire",
        "misfire_grace",
        "action",
        "check",
        "verify",
    }
)


def parse_job(
    raw: Mapping[str, Any],
    *,
    where: str,
    defaults: Defaults,
    services: Mapping[str, ServiceConfig],
    base_dir: Path,
    default_tz: str,
    source: str = "config",
) -> JobSpec:
    """Validate one job table; errors read ``{where}.{key}: {problem}`` (no file prefix).

    Absent keys cost one dict probe each; that is what keeps 100,000 jobs fast."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {v.show(raw)}")
    for key in raw:
        if key not in JOB_KEYS:
            v.unknown_key(where, key, JOB_KEYS)
    get = raw.get

    name = get("name")
    if name is None:
        v.fail(where, "name", "missing")
    if type(name) is not str or not _name_ok(name):
        v.fail(where, "name", f"bad job name {v.show(name)} (expected {NAME_RE.pattern})")

    tz = get("timezone")
    tz = default_tz if tz is None else v.timezone(tz, where, "timezone")
    on = get("on")
    if on is not None:
        on = v.nonempty(on, where, "on")
    schedule = get("schedule")
    if schedule is not None:
        schedule = v.nonempty(schedule, where, "schedule")
        try:
            parsed_schedule(schedule, tz)
        except ValueError as exc:
            v.fail(where, "schedule", str(exc))
    elif on is None:
        raise ConfigError(f"{where}: a job needs 'schedule' or 'on' (or both)")
    when = get("when")
    if when is not None:
        if on is None:
            v.fail(where, "when", "needs 'on' (it filters the payload of triggering events)")
        when = dict(v.table(when, where, "when"))

    service = get("service")
    if service is not None:
        service = v.string(service, where, "service")
        if service not in services:
            known = ", ".join(sorted(services)) or "none defined"
            v.fail(where, "service", f"unknown service {service!r} (known: {known})")

    action = get("action")
    if action is None:
        v.fail(where, "action", "missing (every job needs an action table)")
    check = get("check")
    verify = get("verify")
    priority = get("priority")
    jitter = get("jitter")
    max_runs = get("max_runs")
    targets = get("targets")
    timeout = get("timeout")
    retries = get("retries")
    bo = get("backoff")
    overlap = get("overlap")
    misfire = get("misfire")
    grace = get("misfire_grace")
    return JobSpec(
        name=name,
        schedule=schedule,
        on=on,
        when=_NO_WHEN if when is None else when,
        timezone=tz,
        service=service,
        priority=0 if priority is None else v.integer(priority, where, "priority"),
        jitter=0.0 if jitter is None else v.duration(jitter, where, "jitter"),
        max_runs=0 if max_runs is None else v.integer(max_runs, where, "max_runs", minimum=0),
        targets=None if targets is None else _targets(targets, where),
        action=parse_action(action, where, "action", base_dir),
        check=None if check is None else parse_action(check, where, "check", base_dir),
        verify=None if verify is None else parse_action(verify, where, "verify", base_dir),
        timeout=(
            defaults.timeout
            if timeout is None
            else v.duration(timeout, where, "timeout", positive=True)
        ),
        retries=defaults.retries
        if retries is None
        else v.integer(retries, where, "retries", minimum=0),
        backoff=(
            defaults.backoff if bo is None else v.backoff(bo, where, "backoff", defaults.backoff)
        ),
        overlap=defaults.overlap
        if overlap is None
        else v.choice(overlap, where, "overlap", Overlap),
        misfire=defaults.misfire
        if misfire is None
        else v.choice(misfire, where, "misfire", Misfire),
        misfire_grace=(
            defaults.misfire_grace if grace is None else v.duration(grace, where, "misfire_grace")
        ),
        source=source,
        raw=raw,
    )
