"""Human output for ``automationctl``: one view per command, plain aligned text tables.

Views read results defensively (``.get`` everywhere): the daemon may add fields (SPEC allows
it) and an older daemon may lack some, and a CLI must never crash on either. Unknown views
and unexpected shapes fall back to a generic key/value or table rendering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from automationd.units import format_duration

Out = Callable[[str], None]

_CONTROL = {c: " " for c in range(32)} | {127: " "}
_MAX_CELL = 60


def cell(value: Any, width: int = _MAX_CELL) -> str:
    """One table cell: ``-`` for null, compact JSON for containers, control chars flattened."""
    if value is None or value == "":
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.1f}" if abs(value) < 1e6 else f"{value:.3g}"
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = str(value)
    text = text.translate(_CONTROL)
    return text if len(text) <= width else text[: width - 1] + "…"


def when(value: Any) -> str:
    """RFC 3339 → ``2026-11-22 13:45:00Z`` (milliseconds dropped) for tables."""
    if not isinstance(value, str) or len(value) < 19 or value[10] != "T":
        return cell(value)
    return value[:10] + " " + value[11:19] + "Z"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    body = [list(r) for r in rows]
    if not body:
        return "(none)\n"
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    lines = []
    for r in [list(headers), *body]:
        parts = [v.ljust(w) for v, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"


def keyvalues(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = [(k, v if isinstance(v, str) else cell(v, 200)) for k, v in pairs]
    if not pairs:
        return ""
    width = max(len(k) for k, _ in pairs)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in pairs)


def _error(err: Any) -> str:
    if isinstance(err, Mapping):
        return f"{err.get('kind', 'error')}: {err.get('message', '')}"
    return cell(err)


def _rest(obj: Mapping[str, Any], shown: Iterable[str]) -> list[tuple[str, Any]]:
    skip = set(shown)
    return [(k, v) for k, v in obj.items() if k not in skip and v not in (None, "", [], {})]


# --- jobs --------------------------------------------------------------------------------------


def _trigger_of(job: Mapping[str, Any]) -> str:
    parts = [str(job["schedule"])] if job.get("schedule") else []
    if job.get("on"):
        parts.append(f"on {job['on']}")
    return "; ".join(parts) or "-"


def jobs_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["NAME", "STATE", "SCHEDULE/ON", "NEXT RUN", "LAST RUN", "RUNS", "SERVICE"],
        [
            [
                cell(j.get("name")),
                cell(j.get("state")),
                cell(_trigger_of(j)),
                when(j.get("next_run")),
                when(j.get("last_run")),
                cell(j.get("run_count")),
                cell(j.get("service")),
            ]
            for j in jobs
        ],
    )


_JOB_KEYS = ("name", "state", "source", "schedule", "on", "service", "next_run", "last_run")


def job_detail(job: Mapping[str, Any]) -> str:
    text = keyvalues([(k, job.get(k)) for k in (*_JOB_KEYS, "run_count")])
    text += keyvalues(_rest(job, (*_JOB_KEYS, "run_count", "next_fires", "last_runs")))
    fires = job.get("next_fires")
    if isinstance(fires, list):
        rows = [[when(f.get("at")), cell(f.get("note"))] for f in fires if isinstance(f, dict)]
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
        ["ID", "JOB", "STATE", "TRIGGER", "CREATED", "ATTEMPTS", "TARGETS"],
        [
            [
                cell(r.get("id")),
                cell(r.get("job")),
                cell(r.get("state")),
                cell(r.get("trigger")),
                when(r.get("created_at")),
                cell(len(a) if isinstance(a := r.get("attempts"), list) else a),
                _targets(r.get("targets")),
            ]
            for r in runs
        ],
    )


_RUN_KEYS = ("id", "job", "state", "trigger", "scheduled_for", "created_at", "started_at")
_RUN_KEYS2 = ("finished_at", "idempotency_key", "reason", "origin")


def run_detail(run: Mapping[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [(k, run.get(k)) for k in _RUN_KEYS + _RUN_KEYS2]
    pairs.append(("targets", _targets(run.get("targets"))))
    pairs.append(("error", _error(run["error"]) if run.get("error") else None))
    shown = (*_RUN_KEYS, *_RUN_KEYS2, "targets", "error", "attempts")
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
                cell(a.get("error")),
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
    return cell(_error(obj["error"])) if obj.get("error") else "-"


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
    pairs: list[tuple[str, Any]] = [
        ("version", s.get("version")),
        ("pid", s.get("pid")),
        ("started_at", s.get("started_at")),
        ("uptime", format_duration(round(uptime)) if isinstance(uptime, int | float) else None),
        ("jobs", f"{jobs.get('total', 0)} total, {jobs.get('enabled', 0)} enabled, "
                 f"{jobs.get('paused', 0)} paused"),
        ("workers", f"{workers.get('busy', 0)}/{workers.get('max', '?')} busy"),
        ("queue_depth", s.get("queue_depth")),
        ("runs_in_flight", s.get("runs_in_flight")),
        ("dlq_size", s.get("dlq_size")),
    ]  # fmt: skip
    shown = ("version", "pid", "started_at", "uptime_s", "jobs", "workers", "queue_depth")
    return keyvalues(pairs + _rest(s, (*shown, "runs_in_flight", "dlq_size")))


def rows_of(items: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]]) -> str:
    """A table of ``cols`` = [(HEADER, key)]; keys ending in ``_at``/``_until`` are times."""

    def fmt(key: str, v: Any) -> str:
        if key == "error":
            return cell(_error(v)) if v else "-"
        return when(v) if key.endswith(("_at", "_until")) else cell(v)

    return table([h for h, _ in cols], [[fmt(k, i.get(k)) for _, k in cols] for i in items])


def generic(result: Any) -> str:
    if isinstance(result, list) and all(isinstance(x, dict) for x in result):
        keys = list(dict.fromkeys(k for x in result for k in x))
        return rows_of(result, [(k.upper(), k) for k in keys])
    if isinstance(result, dict):
        return keyvalues(result.items())
    return cell(result, 10_000) + "\n"


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
            ("ERROR", "error"),
            ("FAILED AT", "failed_at"),
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
            ("PAUSED UNTIL", "paused_until"),
            ("IN FLIGHT", "in_flight"),
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
    "store_check": lambda r: (
        "store OK\n"
        if r.get("ok")
        else "store DAMAGED:\n" + "".join(f"  {cell(p, 200)}\n" for p in r.get("problems") or [])
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
