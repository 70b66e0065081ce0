"""A herd: many runs whose first attempts start at once (the scheduler's fires at one
instant, engine/ahead.py).

- ``open_together``: the first attempts of a unit of runs made ahead, opened at one instant
  and stored as two statements for the whole unit (the runs ``running``, their attempt rows:
  ``w_runs_started``, ``w_attempts_started``) instead of two full rows per run. Why: at a
  herd's due time the writer's work per run is what delays the last actions; one full run
  row upsert cost SQLite about 12 µs and its binding held the GIL, the grouped update about
  5 µs with one value bound per unit (measured on 2,000 runs, store/sqlite/sql.py).
- ``Starts``: the herd runs that have not called their actions yet, which ends wait for.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

from automationd.engine.attempt import AttemptTools, open_attempt
from automationd.engine.live import LiveRun, LiveTarget
from automationd.records import Phase
from automationd.store.ahead_rows import w_attempts_started, w_jobs_counted, w_runs_started
from automationd.store.api import Write


def together(
    lives: Sequence[LiveRun],
    first_step: Callable[[LiveRun], tuple[Phase, LiveTarget | None] | None],
    try_acquire: Callable[[], bool],
) -> tuple[list[tuple[LiveRun, Phase, LiveTarget | None]], list[LiveRun]]:
    """Which of ``lives`` may start together (``open_together``: made ahead, first attempt
    without a target value, nothing else to write, a worker free now), and the rest."""
    firsts: list[tuple[LiveRun, Phase, LiveTarget | None]] = []
    rest: list[LiveRun] = []
    for live in lives:
        first = first_step(live) if live.made else None
        if (
            first is not None
            and (first[1] is None or first[1].value is None)
            and not live.persist_targets
            and live.unposted is None
            and try_acquire()
        ):
            firsts.append((live, *first))
        else:
            rest.append(live)
    return firsts, rest


def open_together(
    t: AttemptTools,
    firsts: Sequence[tuple[LiveRun, Phase, LiveTarget | None]],
    lease: int,
) -> list[Write]:
    """Open attempt 1 of each run (made ahead: its row exists; no target value, no rows of
    targets, nothing riding) at one instant; the writes that say so, for all of them, with
    their jobs' counters."""
    if not firsts:
        return []
    now = t.clock.time()
    groups: dict[tuple[str, int], list[str]] = {}
    for live, phase, target in firsts:
        live.first, _ = open_attempt(t, live, phase, target, now=now, rows=False)
        key = (phase.value, target.idx if target is not None else -1)
        group = groups.get(key)
        if group is None:
            groups[key] = [live.id]
        else:
            group.append(live.id)
    writes = [w_runs_started([live.id for live, _, _ in firsts], now, lease)]
    for (phase_text, idx), ids in groups.items():
        writes.append(w_attempts_started(ids, phase_text, idx, now))
    writes.append(w_jobs_counted([(live.job_name, live.id) for live, _, _ in firsts]))
    return writes


HERD_SWITCH = 0.0001  # the GIL switch interval while a herd starts (``Starts``)


class Starts:
    """Herd runs whose first attempt is opened but whose task has not taken its first step.

    Why: when 2,000 scheduled runs start in one second, every run's end (its rows, its
    report) costs about as much as its start. A run about to end while herd runs still wait
    to call their actions waits for them first (engine/run.py ``_execute``), so the herd's
    actions start before its ends are made. Only runs that wait for nothing but the writer
    are counted (not those waiting for a worker), so the wait is short and always ends.

    While herd runs are pending, the interpreter's GIL switch interval is ``HERD_SWITCH``
    instead of its default 5 ms: the event loop is then busy without a pause, and the store's
    writer thread, which gives the GIL up around every statement, waited up to 5 ms to get
    it back each time (a herd's first commit took 40 ms). Measured on the 2,000-job herd:
    action-start p50/p99 132/168 → 95/132 ms. Not kept on all the time: at 64 synchronous
    clients it cost 25 % more CPU per run.
    """

    __slots__ = ("_switch", "idle", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._switch = 0.0

    def add(self, live: LiveRun) -> None:
        live.herd = True
        if not self.pending:
            self.idle.clear()
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(HERD_SWITCH)
        self.pending += 1

    def done(self, live: LiveRun) -> None:
        """``live`` took its first step (or left memory without one)."""
        if live.herd:
            live.herd = False
            self.pending -= 1
            if not self.pending:
                sys.setswitchinterval(self._switch)
                self.idle.set()
