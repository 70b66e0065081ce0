"""Action tables (``action``, ``check``, ``verify``) → validated ``ActionSpec`` records.

Each action type has its own key set and reader; ``parse_action`` picks one by ``type``. Equal
actions across many jobs come back as one record when a ``Shared`` table is given (a common
``{type, argv}`` exec is looked up before it is even validated again).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from automationd.config import values as v
from automationd.config.model import ActionSpec, ExecAction, HttpAction, PythonAction
from automationd.config.shared import Shared

_NO_ENV: Mapping[str, str] = MappingProxyType({})
_NO_CODES: frozenset[int] = frozenset()
_CALLABLE_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_METHOD_RE = re.compile(r"[A-Za-z]+")

_EXEC_KEYS = frozenset({"type", "argv", "env", "cwd", "timeout", "retryable_exit_codes"})
_HTTP_KEYS = frozenset(
    {"type", "method", "url", "headers", "json", "body", "timeout", "expect", "follow_redirects"}
)
_PYTHON_KEYS = frozenset({"type", "callable", "timeout"})

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


def _exec(raw: Mapping[str, Any], here: str, base_dir: Path, shared: Shared | None) -> ExecAction:
    if not _EXEC_KEYS.issuperset(raw):
        v.check_keys(raw, here, _EXEC_KEYS)
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
    args = tuple(argv)
    if len(raw) == 2:  # the common case: {type, argv}; parse_action looks it up first
        action = ExecAction(argv=args, env=_NO_ENV)
        if shared is not None:
            shared.execs[args] = action
        return action
    env = get("env")
    cwd = get("cwd")
    timeout = get("timeout")
    codes = get("retryable_exit_codes")
    action = ExecAction(
        argv=args,
        env=_NO_ENV if env is None else v.str_map(env, here, "env"),
        cwd=None if cwd is None else v.local_path(cwd, here, "cwd", base_dir),
        timeout=None if timeout is None else v.duration(timeout, here, "timeout", positive=True),
        retryable_exit_codes=(
            _NO_CODES
            if codes is None
            else frozenset(v.int_list(codes, here, "retryable_exit_codes", low=0, high=255))
        ),
    )
    if shared is None or env is not None:
        return action
    a = action
    return shared.keep(("exec", args, a.cwd, a.timeout, a.retryable_exit_codes), a)


def _http(raw: Mapping[str, Any], here: str, shared: Shared | None) -> HttpAction:
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
    action = HttpAction(
        method=method.upper(),
        url=url,
        headers={} if headers is None else v.str_map(headers, here, "headers"),
        json=raw.get("json"),
        body=None if body is None else v.string(body, here, "body"),
        timeout=_timeout(raw, here),
        expect=() if expect is None else v.int_list(expect, here, "expect", low=100, high=599),
        follow_redirects=v.boolean(raw.get("follow_redirects", False), here, "follow_redirects"),
    )
    if shared is None or headers is not None or action.json is not None:
        return action  # a table inside: not hashable, and rarely repeated verbatim
    a = action
    return shared.keep(("http", a.method, url, a.body, a.timeout, a.expect, a.follow_redirects), a)


def _python(
    raw: Mapping[str, Any], here: str, base_dir: Path, shared: Shared | None
) -> PythonAction:
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
    action = PythonAction(callable=spec, timeout=_timeout(raw, here), fn=fn)
    if shared is None:
        return action
    return shared.keep(("python", spec, action.timeout), action)


def parse_action(
    value: object, where: str, key: str, base_dir: Path, shared: Shared | None = None
) -> ActionSpec:
    """An action table by its ``type``: exec, http or python. With ``shared``, equal
    actions (same argv, same URL, ...) come back as one record."""
    if shared is not None and type(value) is dict and len(value) == 2:
        argv = value.get("argv")
        if type(argv) is list and value.get("type") == "exec":
            try:
                found = shared.execs.get(tuple(argv))  # only validated argvs are in there
            except TypeError:  # an unhashable element: the checks below name it
                found = None
            if found is not None:
                return found
    raw = value if type(value) is dict else v.table(value, where, key)
    here = f"{where}.{key}"
    kind = raw.get("type")
    if kind == "exec":
        return _exec(raw, here, base_dir, shared)
    if kind == "http":
        return _http(raw, here, shared)
    if kind == "python":
        return _python(raw, here, base_dir, shared)
    if kind is None:
        v.fail(here, "type", "missing (exec, http or python)")
    v.fail(here, "type", f"unknown action type {v.show(kind)} (expected exec, http or python)")
