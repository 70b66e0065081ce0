"""Human output for ``automationctl``: one view per command, plain aligned text tables.

Jobs and runs have their views in ``ctl_records``; the primitives (cells, times, tables,
wrapping) are in ``ctl_format``. A new command's view is one entry in ``VIEWS``.

Views read results defensively (``.get`` everywhere): the daemon may add fields (SPEC allows
it) and an older daemon may lack some, and a CLI must never crash on either. Unknown views
and unexpected shapes fall back to a generic key/value or table rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from automationd.ctl_format import cell, keyvalues, span, table, when, whole
from automationd.ctl_records import error_text as _error
from automationd.ctl_records import job_detail, jobs_table, last_run, logs, run_detail, runs_table
from automationd.ctl_records import plan_line as _plan_line
from automationd.ctl_records import rest as _rest

__all__ = [
    "VIEWS",
    "cell",
    "job_detail",
    "jobs_table",
    "keyvalues",
    "last_run",
    "render",
    "rows_of",
    "run_detail",
    "runs_table",
    "table",
    "when",
    "whole",
]

Out = Callable[[str], None]


# --- everything else ---------------------------------------------------------------------------


def status(s: Mapping[str, Any]) -> str:
    jobs, workers = s.get("jobs") or {}, s.get("workers") or {}
    uptime = s.get("uptime_s")
    job_counts = f"{jobs.get('total', 0)} total, {jobs.get('enabled', 0)} enabled, " + (
        f"{jobs.get('paused', 0)} paused"
    )
    if jobs.get("completed"):
        job_counts += f", {jobs['completed']} completed"
    pairs: list[tuple[str, Any]] = [
        ("version", s.get("version")),
        ("pid", s.get("pid")),
        ("started_at", when(s.get("started_at"), rel=True) if s.get("started_at") else None),
        ("uptime", span(uptime) if isinstance(uptime, int | float) else None),
        ("jobs", job_counts),
        ("workers", f"{workers.get('busy', 0)}/{workers.get('max', '?')} busy"),
        ("queue_depth", s.get("queue_depth")),
        ("runs_in_flight", s.get("runs_in_flight")),
        ("dlq_size", s.get("dlq_size")),
        ("store", _health(s.get("store"))),
    ]
    shown = ("version", "pid", "started_at", "uptime_s", "jobs", "workers", "queue_depth", "store")
    pairs = [(k, v) for k, v in pairs if v is not None]
    return keyvalues(pairs + _rest(s, (*shown, "runs_in_flight", "dlq_size")))


def _health(store: Any) -> Any:
    if not isinstance(store, Mapping) or "healthy" not in store:
        return store
    return "healthy" if store["healthy"] else f"unhealthy: {store.get('reason') or '?'}"


def rows_of(items: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]]) -> str:
    """A table of ``cols`` = [(HEADER, key)]; keys ending in ``_at``/``_until`` are times
    (``_until``, ``opened_at`` and ``next_*`` with their relative time); ``error`` and
    ``message`` are never cut (put them last: the last column wraps)."""

    def fmt(key: str, v: Any) -> str:
        if key == "error":
            return _error(v) if v else "-"
        if key in ("message", "sample"):
            return whole(v)
        if key in ("oldest", "newest"):
            return when(v)
        if key.endswith(("_at", "_until")) or key.startswith("next_"):
            return when(v, rel=key.endswith("_until") or key in ("opened_at", "next_fire"))
        return cell(v)

    return table([h for h, _ in cols], [[fmt(k, i.get(k)) for _, k in cols] for i in items])


def generic(result: Any) -> str:
    if isinstance(result, list) and all(isinstance(x, dict) for x in result):
        keys = list(dict.fromkeys(k for x in result for k in x))
        return rows_of(result, [(k.upper(), k) for k in keys])
    if isinstance(result, dict):
        return keyvalues(result.items())
    return whole(result) + "\n"


def _ids(ids: Any) -> str:
    return ", ".join(map(str, ids)) if isinstance(ids, list) and ids else "none"


def _count(value: Any) -> str:
    return (
        f"{len(value)} ({', '.join(map(str, value))})" if isinstance(value, list) else cell(value)
    )


def _job_line(verb: str) -> Callable[[Any], str]:
    return lambda j: f"{verb} job {j.get('name')} (state: {j.get('state')})\n"


def _run_line(verb: str) -> Callable[[Any], str]:
    return lambda r: f"{verb} run {r.get('id')} of job {r.get('job')} (state: {r.get('state')})\n"


def _triggered(r: Mapping[str, Any]) -> str:
    if "id" not in r or "job" not in r:  # an older daemon's dry run: what would be performed
        return generic(r)
    if r.get("trigger") == "preview":
        return _previewed(r)
    note = " (existing run for this idempotency key)" if r.get("existing") else ""
    return _run_line("triggered")(r).rstrip("\n") + note + "\n"


# --- previews, apply and rollback (SPEC §7.2) ---------------------------------------------------


def _previewed(r: Mapping[str, Any]) -> str:
    note = " (existing preview for this idempotency key)" if r.get("existing") else ""
    raw, err = r.get("plan"), _error(r["error"]) if r.get("error") else None
    plan: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    pairs = [("plan", _plan_line(plan or None)), ("payload", plan.get("payload")), ("error", err)]
    text = _run_line("preview")(r).rstrip("\n") + note + "\n"
    text += keyvalues([(k, v) for k, v in pairs if v is not None])
    if isinstance(plan.get("targets"), list):
        text += "\nTargets:\n" + "".join(f"  {cell(t)}\n" for t in plan["targets"])
    apply = f"\napply with: automationctl jobs apply {r.get('id')}\n"
    return text + (apply if r.get("state") == "previewed" else "")


def _applied(r: Mapping[str, Any]) -> str:
    again = " (this preview was applied before)" if r.get("existing") else ""
    text = f"apply of preview {r.get('origin')}: run {r.get('id')} (state: {r.get('state')})"
    return text + again + "\n" + (f"error: {_error(r['error'])}\n" if r.get("error") else "")


def _rolled_back(r: Mapping[str, Any]) -> str:
    n = (r.get("targets") or {}).get("rolled_back", 0)
    text = f"run {r.get('id')} of job {r.get('job')}: {r.get('state')} ({n} target(s) undone)\n"
    failed = r.get("state") != "rolled_back" and r.get("error")
    return text + (f"error: {_error(r['error'])}\n" if failed else "")


_SUMMARY_KEYS = ("job", "kind", "count", "oldest", "newest", "sample")


VIEWS: dict[str, Callable[[Any], str]] = {
    "status": status,
    "jobs": jobs_table,
    "job": job_detail,
    "job_added": lambda j: _job_line("added")(j) + job_detail(j),
    "job_removed": _job_line("removed"),
    "job_paused": _job_line("paused"),
    "job_resumed": _job_line("resumed"),
    "triggered": _triggered,
    "runs": runs_table,
    "run": run_detail,
    "logs": logs,
    "run_cancelled": _run_line("cancelled"),
    "run_retried": _run_line("created retry"),
    "applied": _applied,
    "run_rolled_back": _rolled_back,
    "dlq_summary": lambda d: rows_of(d, [(k.upper(), k) for k in _SUMMARY_KEYS]),
    "dlq": lambda d: rows_of(
        d,
        [
            ("ID", "id"),
            ("RUN", "run_id"),
            ("JOB", "job"),
            ("TARGET", "target"),
            ("PHASE", "phase"),
            ("FAILED AT", "failed_at"),
            ("ERROR", "error"),
        ],
    ),
    "dlq_retried": lambda r: f"requeued {r.get('requeued', 0)}\n",
    "dlq_purged": lambda r: f"purged {r.get('purged', 0)}\n",
    "events": lambda e: rows_of(
        e,
        [("ID", "id"), ("NAME", "name"), ("CREATED", "created_at"), ("PAYLOAD", "payload")],
    ),
    "published": lambda e: (
        f"published event {e.get('id')} ({e.get('name')}); "
        f"triggered runs: {_ids(e.get('triggered'))}\n"
    ),
    "replayed": lambda r: (
        f"replayed {r.get('events', 0)} event(s); triggered runs: {_ids(r.get('triggered'))}\n"
    ),
    "limits": lambda rows: rows_of(
        rows,
        [
            ("SERVICE", "service"),
            ("RATE", "rate"),
            ("BURST", "burst"),
            ("TOKENS", "tokens"),
            ("WAITING", "waiting"),
            ("IN FLIGHT", "in_flight"),
            ("PAUSED UNTIL", "paused_until"),
        ],
    ),
    "breakers": lambda rows: rows_of(
        rows,
        [
            ("SERVICE", "service"),
            ("STATE", "state"),
            ("FAILURES", "failures"),
            ("OPENED AT", "opened_at"),
        ],
    ),
    "web_login": lambda r: f"{r['url']}\n",
    "store_check": lambda r: (
        "store OK\n"
        if r.get("ok")
        else "store DAMAGED:\n" + "".join(f"  {cell(p, 200)}\n" for p in r.get("problems") or [])
    ),
    "workers": lambda rows: rows_of(
        [{**w, "leader": "yes" if w.get("leader") else ""} for w in rows],
        [
            ("ID", "id"),
            ("HOST", "host"),
            ("PID", "pid"),
            ("VERSION", "version"),
            ("STARTED", "started_at"),
            ("HEARTBEAT", "heartbeat_at"),
            ("BUSY", "busy"),
            ("CAPACITY", "capacity"),
            ("LEADER", "leader"),
        ],
    ),
    "reload": lambda r: (
        f"reloaded: {_count(r.get('jobs_added'))} added, {_count(r.get('jobs_updated'))} "
        f"updated, {_count(r.get('jobs_removed'))} removed\n"
    ),
}


def render(view: str, result: Any, out: Out) -> None:
    """Write ``result`` as the human view ``view``; odd shapes fall back to generic output."""
    fn = VIEWS.get(view, generic)
    try:
        text = fn(result)
    except (AttributeError, KeyError, TypeError, ValueError):
        text = generic(result)
    out(text)
