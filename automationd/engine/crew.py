"""This daemon's part in a fleet on PostgreSQL: heartbeats, leadership, rescue, claims.

Theory of operation (the statements are store/pg/fleet.py's):

1. Life. ``start`` registers the node (a row with this life's token) and starts as a
   follower. Every ``ttl / 3`` the heartbeat renews the row and takes or renews the leader
   row. A heartbeat that finds the row gone means the others declared us dead (we stalled
   past the TTL): every run in memory is abandoned (another daemon holds it now; the store
   refuses our writes anyway, fleet/leases.py) and a new life starts.
2. Leadership. Only the leader's scheduler fires. On becoming leader it re-reads the jobs'
   last fires and applies misfire policy to what nobody fired meanwhile
   (``Scheduler.lead``). A leader that could not renew for two thirds of the TTL stops
   firing before its row can lapse, so two leaders overlap only if a stall outlasts that;
   the store's one-run-per-(job, due time) key covers the rest.
3. Rescue. The reaper sleeps until the first peer's heartbeat would be older than its TTL
   (no fixed poll), then declares such peers dead and rescues their runs: unowned, new
   tokens, open attempts closed ``interrupted`` (the crash-recovery rule on one host).
4. Claims. NOTIFY on the work channel wakes the claim loop (a fallback poll every TTL covers
   a lost notification); it claims up to its free room, highest priority first, and resumes
   the runs as crash recovery would (engine/recovery.py). It claims again when room frees
   while more work may wait.
5. Lost runs (the store refused a write: stale token) are abandoned as they are reported.
6. Job changes elsewhere (NOTIFY on the jobs channel) are re-read and adopted by the
   catalog; a cancel for a run we hold (NOTIFY on the cancel channel) cancels it here.
7. ``stop`` (after the drain) hands our unfinished runs to the others at once, gives up
   the leader row and deletes our row: a clean stop never waits for a TTL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from automationd.clock import Clock
from automationd.engine.catalog import Catalog
from automationd.engine.launcher import Launcher
from automationd.engine.pool import WorkerPool
from automationd.engine.recovery import resume_runs
from automationd.engine.report import Report
from automationd.engine.scheduler import Scheduler
from automationd.errors import AutomationdError, unavailable
from automationd.fleet.leases import Leases
from automationd.store.pg.fleet import PgFleet
from automationd.store.pg.sql import CANCEL_CHANNEL, JOBS_CHANNEL, WORK_CHANNEL
from automationd.store.pg.store import PgStore
from automationd.units import rfc3339

log = structlog.get_logger("automationd.fleet")

CLAIM_BATCH = 64
CANCEL_WAIT = 10.0
CANCEL_POLL = 0.05  # seconds between looks at a run being cancelled elsewhere


class FleetCrew:
    def __init__(
        self,
        *,
        fleet: PgFleet,
        leases: Leases,
        store: PgStore,
        launcher: Launcher,
        scheduler: Scheduler,
        catalog: Catalog,
        report: Report,
        pool: WorkerPool,
        clock: Clock,
    ) -> None:
        self._fleet = fleet
        self._leases = leases
        self._store = store
        self._launcher = launcher
        self._scheduler = scheduler
        self._catalog = catalog
        self._report = report
        self._pool = pool
        self._clock = clock
        self._interval = fleet.ttl / 3
        self._leading = False
        self._nodes = 1
        self._work = asyncio.Event()
        self._jobs_changed: set[str] = set()
        self._jobs_event = asyncio.Event()
        self._cancels: set[str] = set()

    @property
    def node_id(self) -> str:
        return self._fleet.node_id

    @property
    def leader(self) -> bool:
        return self._leading

    # -- life -----------------------------------------------------------------------------
    async def start(self) -> int:
        self._scheduler.follow()
        await self._fleet.open()
        self._leases.reborn(await self._fleet.register())
        await self._listen()
        self._work.set()  # claim at once: runs may be waiting (ours from a previous life too)
        return 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._heartbeats(), name="fleet:heartbeat")
            tg.create_task(self._reaper(), name="fleet:reaper")
            tg.create_task(self._claims(), name="fleet:claims")
            tg.create_task(self._abandon_lost(), name="fleet:lost")
            tg.create_task(self._adopt_jobs(), name="fleet:jobs")

    async def stop(self) -> None:
        self._set_leading(False, None)
        try:
            handed = await self._fleet.leave()
            log.info("node.left", node=self.node_id, runs_handed_over=handed)
        except AutomationdError as exc:
            log.warning("node.leave_failed", node=self.node_id, error=str(exc))
        await self._fleet.close()

    async def _listen(self) -> None:
        def work(_: str) -> None:
            self._work.set()

        def jobs(payload: str) -> None:
            node, _, name = payload.partition("\t")
            if node != self.node_id:
                self._jobs_changed.add(name)
                self._jobs_event.set()

        def cancel(run_id: str) -> None:
            if self._launcher.cancel(run_id) is not None:
                log.info("run.cancel_forwarded", run_id=run_id)

        try:
            await self._fleet.listen(
                {WORK_CHANNEL: work, JOBS_CHANNEL: jobs, CANCEL_CHANNEL: cancel}
            )
        except Exception as exc:  # polling covers it until the next heartbeat retries
            log.warning("fleet.listen_failed", error=str(exc))

    # -- heartbeats and leadership ------------------------------------------------------
    async def _heartbeats(self) -> None:
        clock = self._clock
        led_at = -1e9
        while True:
            began = clock.monotonic()
            try:
                if not await self._fleet.beat(self._pool.busy):
                    await self._reborn()
                if await self._fleet.lead():
                    led_at = clock.monotonic()
                    if not self._leading:
                        self._set_leading(True, await self._store.job_rows())
                elif self._leading:
                    self._set_leading(False, None)
                self._nodes = await self._fleet.count()
                if not self._fleet.listening():
                    await self._listen()
            except AutomationdError as exc:
                log.warning("node.heartbeat_failed", node=self.node_id, error=str(exc))
            if self._leading and clock.monotonic() - led_at > 2 * self._interval:
                self._set_leading(False, None)  # cannot tell we still lead: stop firing
            await clock.sleep_until(began + self._interval)

    def _set_leading(self, leading: bool, rows: Any) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            self._scheduler.lead(rows)
            log.info("node.leading", node=self.node_id, term=self._fleet.term)
        else:
            self._scheduler.follow()
            log.info("node.following", node=self.node_id)

    async def _reborn(self) -> None:
        """Declared dead while alive (a stall): drop everything, start a new life."""
        self._set_leading(False, None)
        dropped = 0
        for run_id in list(self._launcher.live):
            dropped += self._launcher.abandon(run_id)
        token = await self._fleet.register()
        self._leases.reborn(token)
        log.error("node.declared_dead", node=self.node_id, runs_abandoned=dropped, new_life=token)
        self._work.set()

    # -- rescue of dead peers -------------------------------------------------------------
    async def _reaper(self) -> None:
        clock = self._clock
        while True:
            try:
                left = await self._fleet.next_death()
            except AutomationdError:
                left = self._interval
            await clock.sleep_until(clock.monotonic() + min(max(left, 0.0) + 0.02, self._interval))
            try:
                for node, runs in await self._fleet.reap():
                    log.warning("node.declared_dead_peer", peer=node, runs_rescued=runs)
            except AutomationdError as exc:
                log.warning("node.reap_failed", error=str(exc))

    # -- claims ---------------------------------------------------------------------------
    async def _claims(self) -> None:
        launcher, freed = self._launcher, self._launcher.freed
        while True:
            try:
                async with asyncio.timeout(self._fleet.ttl):
                    await self._work.wait()
            except TimeoutError:
                pass  # the fallback poll
            # room for two pools' worth: the next claim is in flight while these run
            room = min(CLAIM_BATCH, 2 * self._pool.max - len(launcher.live))
            if room <= 0:  # full: claim again once a run leaves
                freed.clear()
                await freed.wait()
                continue
            self._work.clear()
            try:
                runs = await self._fleet.claim(room)
            except AutomationdError as exc:
                log.warning("fleet.claim_failed", error=str(exc))
                continue
            if not runs:
                continue
            for run in runs:
                self._leases.hold(run.id, run.lease)
            log.info("fleet.claimed", runs=len(runs))
            await self._resume(runs)
            if len(runs) >= room:
                self._work.set()  # there may be more

    async def _resume(self, runs: list[Any]) -> None:
        for run in runs:
            if run.job not in self._catalog.jobs:
                await self._adopt(run.job)  # an API job added elsewhere a moment ago
        await resume_runs(
            runs,
            store=self._store,
            jobs=self._catalog.jobs,
            launcher=self._launcher,
            report=self._report,
            now=self._clock.time(),
            targets=await self._fleet.targets_of([r.id for r in runs]),
        )
        for run in runs:
            if run.id in self._cancels:
                self._cancels.discard(run.id)
                self._launcher.cancel(run.id)

    async def _abandon_lost(self) -> None:
        while True:
            for run_id in await self._leases.lost():
                if self._launcher.abandon(run_id):
                    log.warning("run.lost", run_id=run_id, node=self.node_id)

    # -- jobs changed elsewhere -----------------------------------------------------------
    async def _adopt_jobs(self) -> None:
        while True:
            await self._jobs_event.wait()
            self._jobs_event.clear()
            names, self._jobs_changed = self._jobs_changed, set()
            for name in sorted(names):
                await self._adopt(name)

    async def _adopt(self, name: str) -> None:
        try:
            row = await self._fleet.job_row(name)
            self._catalog.adopt(name, row)
        except AutomationdError as exc:
            log.warning("job.adopt_failed", job=name, error=str(exc))

    # -- views and control ----------------------------------------------------------------
    async def workers(self) -> list[dict[str, Any]]:
        rows = await self._fleet.workers()
        return [
            {
                "id": r["id"],
                "host": r["host"],
                "pid": r["pid"],
                "version": r["version"],
                "started_at": rfc3339(r["started_at"]),
                "heartbeat_at": rfc3339(r["heartbeat_at"]),
                "capacity": r["capacity"],
                "busy": r["busy"],
                "leader": bool(r["leader"]),
            }
            for r in rows
        ]

    def status(self) -> dict[str, Any]:
        return {
            "node": {"id": self.node_id, "leader": self._leading},
            "fleet": {"nodes": self._nodes},
        }

    async def cancel_elsewhere(self, run_id: str) -> bool:
        """Cancel a live run we do not hold: claim it if nobody does, else ask its holder;
        then wait (up to ``CANCEL_WAIT``, on the injected clock) for it to end. A run still
        live at the deadline is ``unavailable``: its holder did not act, and saying it was
        cancelled would be untrue."""
        run = await self._fleet.claim_run(run_id)
        if run is not None:
            self._leases.hold(run.id, run.lease)
            self._cancels.add(run.id)
            await self._resume([run])
        else:
            await self._fleet.ask_cancel(run_id)
        clock = self._clock
        deadline = clock.monotonic() + CANCEL_WAIT
        while True:
            current = await self._store.run(run_id)
            if current is None or current.state.terminal:
                return True
            if clock.monotonic() >= deadline:
                raise unavailable(
                    f"run {run_id} is held by another daemon that did not cancel it within"
                    f" {CANCEL_WAIT:g} s (see workers.list); it is {current.state.value}"
                )
            await clock.sleep_until(min(deadline, clock.monotonic() + CANCEL_POLL))
