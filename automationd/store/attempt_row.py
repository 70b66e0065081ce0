"""An attempt's two rows (its start and its end) from one head made once per attempt.

The head is the first six ATTEMPT params (store/rows.py: run_id, n, phase, target_idx,
target, started_at); the start row adds no outcome, the end row its outcome. Why a head and
not an ``Attempt`` record: a run's attempt is written twice, and building a frozen record
for each row cost more than the rest of the row (the target's JSON is encoded once, too).
"""

from __future__ import annotations

from typing import Any

from automationd.records import Phase
from automationd.store.rows import dumps
from automationd.store.write import Stmt, Write

_PHASE = {p: p.value for p in Phase}  # plain str: SQLite binds a StrEnum member ~4x slower
AttemptHead = tuple[str, int, str, int, str | None, float]
_NO_END = (None, None, None, None, None, None)


def attempt_head(
    run_id: str, n: int, phase: Phase, target_idx: int, target: Any, started_at: float
) -> AttemptHead:
    """The first six ATTEMPT params (which attempt, of what, since when), made once per
    attempt: its start and its end rows share them, with no ``Attempt`` record for either."""
    return (run_id, n, _PHASE[phase], target_idx, dumps(target), started_at)


def w_attempt_start(head: AttemptHead) -> Write:
    """ "Attempt n started": its row with no outcome (what recovery closes as interrupted)."""
    return Write(Stmt.ATTEMPT, head + _NO_END, key=(head[0], head[1]))


def w_attempt_end(
    head: AttemptHead,
    finished_at: float,
    outcome: str,
    error: str | None,
    stdout: str | None = None,
    stderr: str | None = None,
) -> Write:
    return Write(
        Stmt.ATTEMPT,
        (*head, finished_at, outcome, error, stdout, stderr, None),
        key=(head[0], head[1]),
    )
