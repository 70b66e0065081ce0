"""The rows of runs made ahead of their fire (engine/ahead.py, engine/herd.py): forgetting one
that never started, and a whole unit of them starting at once.

Kept apart from store/rows.py (one builder per record there): these say something about
many runs at once, in one statement each, and only the herd path writes them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from automationd.store.write import Stmt, Write

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def w_run_delete(run_id: str) -> Write:
    """Forget a run made ahead of its fire that never started (engine/ahead.py); a run that
    did start is kept whatever is asked (the statement checks)."""
    return Write(Stmt.RUN_DELETE, (run_id,), barrier=True)


def w_runs_started(run_ids: Sequence[str], started_at: float, lease: int) -> Write:
    """Runs made ahead, now ``running`` with attempt 1 started at ``started_at`` (what
    ``w_run`` would write for each, with their mark cleared), as one statement: at a herd's
    due time a full row per run cost the writer twice as much (engine/ahead.py)."""
    return Write(Stmt.RUNS_STARTED, (started_at, lease, _dumps(list(run_ids))), barrier=True)


def w_attempts_started(
    run_ids: Sequence[str], phase: str, target_idx: int, started_at: float
) -> Write:
    """Attempt 1 of each of ``run_ids`` started (no target value: the implicit target or a
    check), as one statement (see ``w_runs_started``)."""
    ids = _dumps(list(run_ids))
    return Write(Stmt.ATTEMPTS_STARTED, (phase, target_idx, started_at, ids), barrier=True)


def w_jobs_counted(counted: Sequence[tuple[str, str]]) -> Write:
    """Each ``(job, run_id)``: the job counted one more run, ``run_id`` its last (what
    ``w_job_of`` would write after ``count_run``), as one statement for a unit of a herd.
    A relative update, so a barrier: full job rows before it are written before it, and
    those built after the count (which include it) after it. The job's row must exist: a
    run made ahead writes it with the run."""
    return Write(Stmt.JOBS_COUNTED, (_dumps([list(p) for p in counted]),), barrier=True)
