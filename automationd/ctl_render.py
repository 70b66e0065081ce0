"""Human output for ``automationctl``: one view per command, plain aligned text tables.

Views read results defensively (``.get`` everywhere): the daemon may add fields (SPEC allows
it) and an older daemon may lack some, and a CLI must never crash on either. Unknown views
and unexpected shapes fall back to a generic key/value or table rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from automationd.ctl_format import (
    cell,
    epoch,
    keyvalues,
    relative,
    span,
    style,
    table,
    when,
    whole,
)

__all__ = ["VIEWS", "cell", "keyvalues", "render", "rows_of", "table", "when", "whole"]

Out = Callable[[str], None]


def _error(err: Any) -> str:
    """``kind: message`` of an error object (a plain string as it is), never cut."""
    if isinstance(err, Mapping):
        return f"{err.get('kind', 'error')}: {err.get('message', '')}"
    return whole(err)


def _rest(obj: Mapping[str, Any], shown: Iterable[str]) -> list[tuple[str, Any]]:
    skip = set(shown)
    return [(k, v) for k, v in obj.items() if k not in skip and v not in (None, "", [], {})]


# --- jobs --------------------------------------------------------------------------------------


def _trigger_of(job: Mapping[str, Any]) -> str:
    parts = [str(job["schedule"])] if job.get("schedule") else []
    if job.get("on"):
        parts.append(f"on {job['on']}")
    return "; ".join(parts) or "-"


def last_run(job: Mapping[str, Any], rel: bool = False) -> str:
    """The job's last run as its end time and outcome (``2026-12-02 19:32:00Z failed``)."""
    at, state = job.get("last_run_at"), job.get("last_run_state")
    if at is None and state is None:
        return "running" if job.get("running") else "-"
    text = f"{when(at)} {state or ''}".rstrip()
    now = style().now
    if rel and now is not None and (ts := epoch(at)) is not None:
        text += f" ({relative(ts, now)})"
    return text


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["NAME", "STATE", "SCHEDULE/ON", "NEXT RUN", "LAST RUN", "RUNS", "SERVICE"],
        [
            [
                cell(j.get("name")),
                cell(j.get("state")),
                cell(_trigger_of(j)),
                when(j.get("next_run"), rel=True),
                last_run(j),
                cell(j.get("run_count")),
                cell(j.get("service")),
            ]
            for j in jobs
        ],
    )


_JOB_KEYS = ("name", "description", "state", "source", "schedule", "on", "when", "timezone")
_JOB_TIMES = ("next_run", "last_run", "last_success")
_JOB_HIDDEN = ("last_run_state", "last_run_at", "next_fires", "last_runs", "spec")


def job_detail(job: Mapping[str, Any]) -> str:
    """One aligned key/value block, then the next fires and the last runs as tables."""
    pairs: list[tuple[str, Any]] = [(k, job.get(k)) for k in _JOB_KEYS if k in job]
    if "next_run" in job:
        pairs.append(("next_run", when(job.get("next_run"), rel=True)))
    if "last_run" in job:
        run = last_run(job, rel=True)
        pairs.append(("last_run", f"{run}, run {job['last_run']}" if job["last_run"] else run))
    if "last_success" in job:
        pairs.append(("last_success", when(job.get("last_success"), rel=True)))
    rest = _rest(job, (*_JOB_KEYS, *_JOB_TIMES, *_JOB_HIDDEN))
    spec = job.get("spec")
    if isinstance(spec, Mapping):  # keys as written where they say more (actions in full)
        rest += [(f"spec.{k}", v) for k, v in spec.items() if job.get(k) != v]
    text = keyvalues([(k, v) for k, v in pairs if v not in (None, {}, "", "-")] + rest)
    fires = job.get("next_fires")
    if isinstance(fires, list):
        rows = [[when(f.get("at"), rel=True), cell(f.get("note"))] for f in fires]
        text += "\nNext fires:\n" + table(["AT", "NOTE"], rows)
    last = job.get("last_runs")
    if isinstance(last, list):
        text += "\nLast runs:\n" + runs_table(last)
    return text


# --- runs --------------------------------------------------------------------------------------


def _targets(t: Any) -> str:
    if isinstance(t, list):
        done = sum(1 for x in t if isinstance(x, dict) and x.get("state") == "succeeded")
        return f"{done}/{len(t)} ok" if t else "-"
    if not isinstance(t, Mapping) or not t.get("total"):
        return "-"
    text = f"{t.get('succeeded', 0)}/{t['total']} ok"
    if t.get("failed"):
        text += f", {t['failed']} failed"
    if t.get("pending"):
        text += f", {t['pending']} pending"
    return text


def runs_table(runs: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["ID", "JOB", "STATE", "TRIGGER", "CREATED", "ATTEMPTS", "TARGETS", "ERROR"],
        [
            [
                cell(r.get("id")),
                cell(r.get("job")),
                cell(r.get("state")),
                cell(r.get("trigger")),
                when(r.get("created_at")),
                cell(len(a) if isinstance(a := r.get("attempts"), list) else a),
                _targets(r.get("targets")),
                _error(r["error"]) if r.get("error") else "-",
            ]
            for r in runs
        ],
    )


_RUN_KEYS = ("id", "job", "state", "trigger", "scheduled_for", "created_at", "started_at")
_RUN_KEYS2 = ("finished_at", "idempotency_key", "reason", "origin")


def _duration(run: Mapping[str, Any]) -> str | None:
    start, end = epoch(run.get("started_at")), epoch(run.get("finished_at"))
    if start is None or end is None:
        return None
    secs = end - start
    return f"{secs * 1000:.0f}ms" if secs < 1 else span(secs)


def run_detail(run: Mapping[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [
        (k, when(run.get(k), rel=True) if k.endswith(("_at", "_for")) else run.get(k))
        for k in _RUN_KEYS + _RUN_KEYS2
    ]
    pairs.append(("duration", _duration(run)))
    pairs.append(("targets", _targets(run.get("targets"))))
    pairs.append(("error", _error(run["error"]) if run.get("error") else None))
    shown = (*_RUN_KEYS, *_RUN_KEYS2, "targets", "error", "attempts")
    pairs = [(k, v) for k, v in pairs if v not in (None, "", "-")]
    text = keyvalues(pairs + _rest(run, shown))
    attempts = run.get("attempts")
    if isinstance(attempts, list):
        rows = [
            [
                cell(a.get("n")),
                cell(a.get("phase")),
                cell(a.get("target")),
                when(a.get("started_at")),
                when(a.get("finished_at")),
                cell(a.get("outcome") or "running"),
                _error(a["error"]) if a.get("error") else "-",
            ]
            for a in attempts
        ]
        headers = ["N", "PHASE", "TARGET", "STARTED", "FINISHED", "OUTCOME", "ERROR"]
        text += "\nAttempts:\n" + table(headers, rows)
    targets = run.get("targets")
    if isinstance(targets, list):
        rows = [
            [cell(t.get("target")), cell(t.get("state")), cell(t.get("attempts")), _err(t)]
            for t in targets
        ]
        text += "\nTargets:\n" + table(["TARGET", "STATE", "ATTEMPTS", "ERROR"], rows)
    return text


def _err(obj: Mapping[str, Any]) -> str:
    return _error(obj["error"]) if obj.get("error") else "-"


def logs(chunks: Sequence[Mapping[str, Any]]) -> str:
    if not chunks:
        return "(no captured output)\n"
    out = []
    for c in chunks:
        target = c.get("target")
        head = f"attempt {c.get('attempt')}, {c.get('phase')}"
        if target is not None:
            head += f", target {cell(target)}"
        out.append(f"== {head}, {c.get('stream')} ==\n")
        text = str(c.get("text") or "")
        out.append(text if text.endswith("\n") or not text else text + "\n")
    return "".join(out)


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
        if key == "message":
            return whole(v)
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
    if "id" not in r or "job" not in r:  # a dry run reports what would be performed
        return generic(r)
    note = " (existing run for this idempotency key)" if r.get("existing") else ""
    return _run_line("triggered")(r).rstrip("\n") + note + "\n"


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
    "dlq": lambda d: rows_of(
        d,
        [
            ("ID", "id"),
            ("RUN", "run_id"),
            ("JOB", "job"),
            ("TARGET", "target"),
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
