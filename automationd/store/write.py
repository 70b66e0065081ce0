"""A write as a value: which statement, with which parameters (see store/api.py).

Kept apart from the interface so the row builders (store/rows.py, store/jobs.py) and the
group-commit writer can use it without importing the interface's records.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

Then = Callable[[BaseException | None], None]
# Told the writes of each durable batch, one sequence per entry (Store.watch).
Observer = Callable[[list["Sequence[Write]"]], None]


class Stmt(enum.Enum):
    """Every statement the engine writes with; a backend maps each to its SQL."""

    RUN = "run"  # full-row upsert of a run
    TARGET = "target"  # full-row upsert of a target
    ATTEMPT = "attempt"  # upsert of an attempt (its start, then its end)
    ATTEMPT_PGID = "attempt_pgid"  # the process group an exec attempt spawned (barrier)
    ATTEMPT_INTERRUPTED = "attempt_interrupted"  # close an attempt a crash cut short
    DLQ = "dlq"  # a dead letter
    DLQ_DELETE = "dlq_delete"  # remove a dead letter (barrier)
    EVENT = "event"  # a stored event (insert)
    JOB = "job"  # full-row upsert of a job's durable state
    JOB_DELETE = "job_delete"  # remove a job's row (barrier)
    AUDIT = "audit"  # one audit-trail entry (insert)
    # A job's state as an operator set it (added, paused, resumed, completed): the same
    # params as JOB. On SQLite the same full-row upsert; on PostgreSQL JOB only merges
    # counters (several daemons keep their own), and only this one changes pause and spec.
    JOB_STATE = "job_state"
    # Remove a run made ahead of its fire (engine/ahead.py) that never started: the job
    # changed before the fire was due, or the daemon restarted (barrier).
    RUN_DELETE = "run_delete"
    # Many runs' first attempts started at once (a herd, engine/ahead.py): the runs' rows
    # and their attempt rows, each one statement for a whole unit of runs (barriers).
    RUNS_STARTED = "runs_started"
    ATTEMPTS_STARTED = "attempts_started"
    # Each named job counted one more run (its row exists): run_count + 1, last_run (barrier).
    JOBS_COUNTED = "jobs_counted"


class Write(NamedTuple):
    """One statement and its parameters (a named tuple: several are built per run).

    ``key`` identifies the row for collapsing (None: never collapsed); a ``barrier`` is never
    reordered with what comes before or after it in its batch.
    """

    stmt: Stmt
    params: tuple[Any, ...]
    key: Hashable | None = None
    barrier: bool = False
