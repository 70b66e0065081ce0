"""A job as the ``[[jobs]]`` table ``config/jobs.py`` reads back into the same job: what
``JobSpec.raw`` shows (``jobs.get``) and persists for a config job that keeps no copy.

Durations come out in the loader's units and enums by value; only optional keys that are set
are written. Why records are read by attribute here, not by class: ``config/model.py`` calls
this, so importing its classes back would be an import cycle; every action record says which
it is in its ``type``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from automationd.units import format_duration


def job_table(spec: Any) -> dict[str, Any]:
    """``spec`` is a ``config.model.JobSpec``."""
    out: dict[str, Any] = {"name": spec.name}
    if spec.description is not None:
        out["description"] = spec.description
    if spec.schedule is not None:
        out["schedule"] = spec.schedule
    if spec.on is not None:
        out["on"] = spec.on
        if spec.when:
            out["when"] = dict(spec.when)
    out["timezone"] = spec.timezone
    if spec.service is not None:
        out["service"] = spec.service
    out["priority"] = spec.priority
    if spec.jitter:
        out["jitter"] = format_duration(spec.jitter)
    out["max_runs"] = spec.max_runs
    if spec.targets is not None:
        out["targets"] = list(spec.targets)
    b = spec.backoff
    out.update(
        timeout=format_duration(spec.timeout),
        retries=spec.retries,
        backoff={
            "base": format_duration(b.base),
            "max": format_duration(b.max),
            "multiplier": b.multiplier,
            "jitter": b.jitter,
        },
        overlap=spec.overlap.value,
        misfire=spec.misfire.value,
        misfire_grace=format_duration(spec.misfire_grace),
        action=action_table(spec.action),
    )
    if spec.check is not None:
        out["check"] = action_table(spec.check)
    if spec.verify is not None:
        out["verify"] = action_table(spec.verify)
    if spec.undo is not None:
        out["undo"] = action_table(spec.undo)
    if spec.on_failure.value != "none":
        out["on_failure"] = spec.on_failure.value
    if spec.preview_ttl != _default(spec.rules, "preview_ttl"):
        out["preview_ttl"] = format_duration(spec.preview_ttl)
    return out


def _default(spec: Any, name: str) -> Any:
    """The rules record's own default for ``name`` (read off the dataclass: see the module note)."""
    return next(f.default for f in dataclasses.fields(spec) if f.name == name)


def action_table(action: Any) -> dict[str, Any]:
    """An action record (``config.model.ActionSpec``) as the table it was read from."""
    out: dict[str, Any] = {"type": action.type}
    if action.type == "exec":
        out["argv"] = list(action.argv)
        if action.env:
            out["env"] = dict(action.env)
        if action.cwd is not None:
            out["cwd"] = str(action.cwd)
        if action.retryable_exit_codes:
            out["retryable_exit_codes"] = sorted(action.retryable_exit_codes)
    elif action.type == "http":
        out["method"] = action.method
        out["url"] = action.url
        if action.headers:
            out["headers"] = dict(action.headers)
        if action.json is not None:
            out["json"] = action.json
        if action.body is not None:
            out["body"] = action.body
        if action.expect:
            out["expect"] = list(action.expect)
        if action.follow_redirects:
            out["follow_redirects"] = True
    else:
        out["callable"] = action.callable
    if action.timeout is not None:
        out["timeout"] = format_duration(action.timeout)
    return out
