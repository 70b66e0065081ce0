"""How ``automationctl`` shows jobs and runs: their tables, their detail blocks, run logs.

Read defensively (``.get`` everywhere), like every view: a daemon may add fields and an older
one may lack some. Errors are never cut (the last column wraps); see ``ctl_format``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


def error_text(err: Any) -> str:
    """``kind: message`` of an error object (a plain string as it is), never cut."""
    if isinstance(err, Mapping):
        return f"{err.get('kind', 'error')}: {err.get('message', '')}"
    return whole(err)


def rest(obj: Mapping[str, Any], shown: Iterable[str]) -> list[tuple[str, Any]]:
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
    """The widest columns last: on a narrow terminal LAST RUN wraps under itself."""
    return table(
        ["NAME", "STATE", "SCHEDULE/ON", "SERVICE", "RUNS", "NEXT RUN", "LAST RUN"],
        [
            [
                cell(j.get("name")),
                cell(j.get("state")),
                cell(_trigger_of(j)),
                cell(j.get("service")),
                cell(j.get("run_count")),
                when(j.get("next_run"), rel=True),
                last_run(j),
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
    more = rest(job, (*_JOB_KEYS, *_JOB_TIMES, *_JOB_HIDDEN))
    spec = job.get("spec")
    if isinstance(spec, Mapping):  # keys as written where they say more (actions in full)
        more += [(f"spec.{k}", v) for k, v in spec.items() if job.get(k) != v]
    text = keyvalues([(k, v) for k, v in pairs if v not in (None, {}, "", "-")] + more)
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
                error_text(r["error"]) if r.get("error") else "-",
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
    pairs.append(("error", error_text(run["error"]) if run.get("error") else None))
    pairs.append(("plan", plan_line(run.get("plan"))))
    shown = (*_RUN_KEYS, *_RUN_KEYS2, "targets", "error", "attempts", "plan")
    pairs = [(k, v) for k, v in pairs if v not in (None, "", "-")]
    text = keyvalues(pairs + rest(run, shown))
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
                error_text(a["error"]) if a.get("error") else "-",
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


def plan_line(plan: Any) -> str | None:
    """A preview's plan in one line: what it would perform, and its hash (SPEC §7.2)."""
    if not isinstance(plan, Mapping):
        return None
    targets = plan.get("targets")
    what = f"{len(targets)} target(s)" if isinstance(targets, list) else "one untargeted perform"
    what = "nothing to perform" if plan.get("perform") is False else what
    return f"{what}; hash {str(plan.get('hash', ''))[:16]}"


def _err(obj: Mapping[str, Any]) -> str:
    return error_text(obj["error"]) if obj.get("error") else "-"


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
