"""What the report counts and hands on: only events that were stored are published, and a
run end the store refused publishes nothing."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from structlog.testing import capture_logs

from automationd.clock import SystemClock
from automationd.config.model import JobSpec, PythonAction
from automationd.core.ids import IdGenerator
from automationd.core.runstate import RunEvent, RunState
from automationd.engine.jobs import JobRuntime
from automationd.engine.live import LiveRun
from automationd.engine.outbox import Outbox
from automationd.engine.report import DlqCount, Report
from automationd.errors import ErrorKind, StoreError
from automationd.obs.metrics import Metrics
from automationd.records import Run, RunError, Trigger
from automationd.store.api import Then, Write


class SettlingStore:
    """Settles every submitted unit at once: stored, or refused with ``refuse``."""

    def __init__(self, refuse: BaseException | None = None) -> None:
        self.refuse = refuse
        self.units: list[Sequence[Write]] = []

    def submit_then(self, writes: Sequence[Write], then: Then, **_: Any) -> None:
        self.units.append(writes)
        then(self.refuse)

    def post(self, writes: Sequence[Write]) -> None:
        self.units.append(writes)


def _report(store: SettlingStore) -> tuple[Report, Metrics, Outbox]:
    metrics, outbox = Metrics(), Outbox()
    report = Report(
        clock=SystemClock(),
        ids=IdGenerator(random.Random(3)),
        store=store,  # type: ignore[arg-type]
        metrics=metrics,
        dlq=DlqCount(metrics),
        outbox=outbox,
        listening=lambda name: ["a listener"],
    )
    return report, metrics, outbox


def _published(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("automationd_events_published_total")
    assert value is not None
    return value


def _live(state: RunState) -> LiveRun:
    spec = JobSpec(name="j", action=PythonAction(callable="t:j", fn=lambda ctx: None))
    return LiveRun(
        id="r1",
        job=JobRuntime(spec=spec, schedule=None),
        trigger=Trigger.MANUAL,
        created_at=1.0,
        state=state,
    )


async def test_only_ends_that_store_an_event_count_as_published() -> None:
    """A cancelled run stores no ``run.*`` event and counts none; a succeeded run's event is
    stored with its end and counted once."""
    report, metrics, outbox = _report(SettlingStore())
    report.end(_live(RunState.QUEUED), RunEvent.CANCEL, reason="by request")
    assert _published(metrics) == 0 and len(outbox) == 0
    report.end(_live(RunState.RUNNING), RunEvent.SUCCEED)
    assert _published(metrics) == 1 and len(outbox) == 1


async def test_a_refused_jobless_end_publishes_nothing() -> None:
    """A jobless run's end that the store refused (another daemon holds the run) is logged
    as refused: no ``run.failed_jobless`` line, no count, no event for listeners."""
    refused = StoreError("run r1 is held by another daemon", kind="fenced")
    report, metrics, outbox = _report(SettlingStore(refuse=refused))
    run = Run(id="r1", job="gone", state=RunState.RUNNING, trigger=Trigger.MANUAL, created_at=1.0)
    with capture_logs() as logs:
        report.end_jobless(run, RunError(kind=ErrorKind.FATAL, message="job 'gone' is gone"))
    assert [e["event"] for e in logs] == ["run.end_refused"]
    assert _published(metrics) == 0 and len(outbox) == 0
