"""The one wiring place: builds every part, runs them under one TaskGroup, stops in order.

Lifecycle (habits 7 and 8):
1. start: lock + open the store → HTTP clients → services → engine → jobs from config and
   store → crash recovery → scheduler (misfire catch-up) → admin socket → metrics endpoint →
   READY=1.
2. run: signal handlers only put requests on a queue; this module is the one owner that acts:
   SIGHUP reloads (a bad config is logged and the old one stays), SIGTERM/SIGINT stop, a
   second SIGINT forces.
3. stop: STOPPING=1 → stop intake (admin socket closed, scheduler stopped) → drain: running
   attempts may finish up to ``shutdown_timeout``, nothing new starts → cancel the rest
   (they resume at next start) and log the count → flush the store → exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import uvloop

from automationd import __version__
from automationd.actions.base import HttpClients
from automationd.admin.command import invoke
from automationd.admin.daemon_cmds import DaemonCommands
from automationd.admin.events_cmds import EventCommands
from automationd.admin.fleet_cmds import FleetCommands
from automationd.admin.jobs_cmds import JobCommands
from automationd.admin.runs_cmds import RunCommands
from automationd.admin.served import Parts, served_table
from automationd.admin.server import serve_admin
from automationd.admin.undo_cmds import UndoCommands
from automationd.backend import Backend
from automationd.caller import Caller, Via
from automationd.clock import Clock, SystemClock
from automationd.config.load import load_config
from automationd.config.model import Config
from automationd.engine.catalog import Catalog
from automationd.engine.eventbus import EventBus
from automationd.engine.intake import Intake
from automationd.engine.jobs import JobTable
from automationd.engine.launcher import Launcher
from automationd.engine.redo import Redo
from automationd.engine.report import Report
from automationd.engine.scheduler import Scheduler
from automationd.engine.services import ServiceRegistry
from automationd.engine.wiring import wire_run_life
from automationd.errors import AdminError, AutomationdError, ConfigError, LockedError, bad_request
from automationd.obs.logs import configure_logging
from automationd.obs.metrics import Metrics
from automationd.obs.systemd import Notifier, forget_env, run_watchdog
from automationd.obs.web import serve_metrics
from automationd.store.retention import Retention
from automationd.web.wiring import WebConsole

log = structlog.get_logger("automationd.daemon")


class Request(enum.Enum):
    STOP = "stop"
    RELOAD = "reload"
    FORCE = "force"


class Daemon:
    def __init__(self, config: Config, notifier: Notifier, clock: Clock) -> None:
        self.config = config
        self.notifier = notifier
        self.clock = clock
        self.requests: asyncio.Queue[Request] = asyncio.Queue()
        self._stopping = False
        self._force: asyncio.Future[None] | None = None
        self.stop_reason = "running"
        self._hup: Callable[[], Awaitable[Any]] | None = None  # SIGHUP: the audited reload

    # ----------------------------------------------------------------- signals
    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.requests.put_nowait(Request.RELOAD)
        elif self._stopping and signum == signal.SIGINT:
            self.requests.put_nowait(Request.FORCE)
            if self._force is not None and not self._force.done():
                self._force.set_result(None)
        else:
            self._stopping = True
            self.requests.put_nowait(Request.STOP)

    # ----------------------------------------------------------------- the whole life
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        cfg = self.config
        clock = self.clock
        started = clock.time()
        try:
            async with contextlib.AsyncExitStack() as stack:
                metrics = Metrics()
                metrics.workers_max.set(cfg.workers.max_concurrency)
                jobs = JobTable()
                # issue 16: SQLite for one host, or a PostgreSQL several daemons share
                backend = Backend(cfg.store, jobs, clock)
                store = await stack.enter_async_context(
                    backend.open_store(cfg.daemon.state_dir, metrics.store_error)
                )
                http = await stack.enter_async_context(HttpClients())
                services = ServiceRegistry(cfg.services, clock, metrics, backend.gates(store))
                rng = random.Random()
                life = wire_run_life(
                    clock=clock,
                    store=store,
                    http=http,
                    metrics=metrics,
                    jobs=jobs,
                    workers=cfg.workers.max_concurrency,
                    rng=rng,
                    dead_letters=await store.dlq_count(),
                    leases=backend.leases,
                )
                pool, ids, draining, outbox = life.pool, life.ids, life.draining, life.outbox
                dlq, report, launcher = life.dlq, life.report, life.launcher
                scheduler = Scheduler(
                    launcher=launcher,
                    report=report,
                    store=store,
                    jobs=jobs,
                    clock=clock,
                    rng=rng,
                    metrics=metrics,
                    unit_per_fire=backend.fleet,
                )
                catalog = Catalog(
                    config=cfg,
                    jobs=jobs,
                    store=store,
                    clock=clock,
                    metrics=metrics,
                    scheduler=scheduler,
                    services=services,
                )
                # Issue 4: no cyclic collections while 100,000 jobs load and are placed;
                # gc.freeze() below makes them permanent, then collection resumes.
                gc.disable()
                catalog.load(await store.job_rows())
                crew = backend.crew(
                    store,
                    launcher=launcher,
                    scheduler=scheduler,
                    catalog=catalog,
                    report=report,
                    pool=pool,
                )
                bus = EventBus(
                    clock=clock,
                    ids=ids,
                    launcher=launcher,
                    jobs=jobs,
                    store=store,
                    outbox=outbox,
                    metrics=metrics,
                )

                redo = Redo(launcher, jobs, store, dlq, report)

                async def reload() -> dict[str, int]:
                    # A bad file is the caller's problem to fix, not an internal error.
                    try:
                        return await self._reload(catalog)
                    except ConfigError as exc:
                        raise bad_request(f"config rejected, old one stays: {exc}") from None

                table = served_table(
                    [
                        DaemonCommands(
                            jobs=jobs,
                            pool=pool,
                            launcher=launcher,
                            dlq=dlq,
                            store=store,
                            services=services,
                            clock=clock,
                            started_at=started,
                            reload=reload,
                            crew=crew,
                        ),
                        JobCommands(
                            catalog=catalog,
                            intake=Intake(launcher, store, report, jobs),
                            store=store,
                            clock=clock,
                        ),
                        RunCommands(
                            store=store, launcher=launcher, report=report, redo=redo, crew=crew
                        ),
                        EventCommands(bus=bus, store=store, clock=clock),
                        UndoCommands(redo=redo, store=store),  # issue 15: rollback, dlq.summary
                        FleetCommands(crew=crew),  # issue 16: workers.list
                        (web := WebConsole(cfg, clock, store, jobs, (pool, launcher, dlq))),
                    ],
                    Parts(
                        catalog=catalog,
                        store=store,
                        clock=clock,
                        ids=ids,
                        launcher=launcher,
                        pool=pool,
                    ),
                )
                hup = Caller(via=Via.SIGNAL, user="SIGHUP")
                self._hup = lambda: invoke(table["reload"], {}, hup)
                retention = Retention(store, clock, cfg.retention)

                def health() -> tuple[bool, str]:
                    if not store.healthy:
                        return False, store.health_reason or "store: unhealthy"
                    return True, "ok"

                def before_scrape() -> None:
                    metrics.queue_depth.set(pool.waiting)
                    metrics.workers_busy.set(pool.busy)
                    services.observe()

                async with asyncio.TaskGroup() as tg:
                    launcher.attach(tg)
                    resumed = await crew.start()  # crash recovery; on a fleet: join it
                    scheduler.load(catch_up=True)
                    # Scheduling perf (issue 4): everything loaded so far (jobs, schedules,
                    # wheel entries) lives as long as the daemon. Freezing it moves it out of
                    # the collector's generations, so a gen-2 pass walks only newer objects
                    # (with 100,000 jobs a full pass cost tens of ms of fire lateness).
                    gc.freeze()
                    # Throughput (issue 3): the objects of the runs in flight survive a few
                    # young collections and then die by reference count; promoted to gen 1,
                    # they made every 10th young pass walk thousands of them (8 % of a busy
                    # daemon's time). Young passes stay small (short pauses, what the
                    # scheduler's lateness needs); the older ones become rare.
                    gc.set_threshold(700, 1000, 10)
                    gc.enable()
                    background = [
                        tg.create_task(scheduler.run(), name="scheduler"),
                        tg.create_task(retention.run(), name="retention"),
                        tg.create_task(bus.deliver_forever(), name="events:deliver"),
                        tg.create_task(crew.run(), name="crew"),
                    ]
                    if self.notifier.watchdog_interval:
                        background.append(
                            tg.create_task(
                                run_watchdog(self.notifier, clock, lambda: health()[0]),
                                name="watchdog",
                            )
                        )
                    async with contextlib.AsyncExitStack() as edges, web.serve(table, tg):
                        await edges.enter_async_context(
                            serve_admin(
                                cfg.daemon.admin_socket,
                                table,
                                group=cfg.daemon.admin_group,
                                user_group=cfg.daemon.user_group,
                            )
                        )
                        addr = await edges.enter_async_context(
                            serve_metrics(
                                cfg.daemon.metrics_listen, metrics.registry, health, before_scrape
                            )
                        )
                        self.notifier.ready(f"running: {len(jobs)} jobs")
                        log.info(
                            "daemon.ready",
                            version=__version__,
                            pid=os.getpid(),
                            jobs=len(jobs),
                            resumed_runs=resumed,
                            metrics=addr,
                            socket=str(cfg.daemon.admin_socket),
                            startup_s=round(clock.time() - started, 3),
                        )
                        forced = await self._serve_requests(catalog)
                        self.notifier.stopping()
                        self.notifier.status("stopping: draining running attempts")
                    # intake is closed: the socket is gone; now stop firing and drain
                    scheduler.stopped = True
                    draining.set()
                    pool.close()
                    await self._drain(launcher, forced)
                    await self._settle(report)
                    for task in background:
                        task.cancel()
                    await crew.stop()  # a fleet: hand what is left to the others now
            log.info("daemon.stopped", reason=self.stop_reason)
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def _serve_requests(self, catalog: Catalog) -> bool:
        """Act on signal requests until a stop; returns True if the stop is forced."""
        while True:
            req = await self.requests.get()
            if req is Request.RELOAD:
                with contextlib.suppress(ConfigError, AdminError):
                    await (self._hup() if self._hup is not None else self._reload(catalog))
                continue
            self.stop_reason = "signal"
            return req is Request.FORCE

    async def _reload(self, catalog: Catalog) -> dict[str, int]:
        self.notifier.reloading()
        try:
            try:
                new = await asyncio.to_thread(load_config, self.config.path)
            except ConfigError as exc:
                log.error("config.reload_rejected", error=str(exc))
                raise
            counts = await catalog.reload(new)
            self.config = new
            log.info("config.reloaded", **counts)
            return counts
        finally:
            self.notifier.ready()

    async def _drain(self, launcher: Launcher, forced: bool) -> None:
        """Let attempts in flight finish (up to shutdown_timeout), then cancel the rest."""
        loop = asyncio.get_running_loop()
        tasks = set(launcher.tasks())
        if tasks and not forced:
            timeout = self.config.daemon.shutdown_timeout
            log.info("daemon.draining", runs=len(tasks), timeout_s=timeout)
            self._force = loop.create_future()
            try:
                async with asyncio.timeout(timeout):
                    while tasks and not self._force.done():
                        await asyncio.wait(
                            [*tasks, self._force], return_when=asyncio.FIRST_COMPLETED
                        )
                        tasks = {t for t in tasks if not t.done()}
            except TimeoutError:
                pass
        left = [t for t in launcher.tasks() if not t.done()]
        for t in left:
            t.cancel()
        if left:
            log.warning("daemon.cancelled_runs", runs=len(left), note="they resume at next start")
            await asyncio.wait(left)

    @staticmethod
    async def _settle(report: Report) -> None:
        """Runs that ended are durable (their run.* events stored) before the store closes."""
        try:
            async with asyncio.timeout(5):
                await report.settle()
        except (TimeoutError, AutomationdError) as exc:
            log.warning("daemon.settle_incomplete", error=str(exc))


def run_daemon(config: Config, clock: Clock | None = None) -> int:
    """Run until stopped; returns the process exit code (0 clean, 1 fatal)."""
    configure_logging(config.daemon.log_format, config.daemon.log_level)
    notifier = Notifier.from_env(os.environ)
    forget_env(os.environ)
    daemon = Daemon(config, notifier, clock or SystemClock())
    try:
        return uvloop.run(daemon.run())
    except* LockedError as eg:
        _fatal(eg.exceptions[0])
    except* AutomationdError as eg:
        _fatal(eg.exceptions[0])
    except* OSError as eg:
        _fatal(eg.exceptions[0])
    return 1


def _fatal(exc: BaseException) -> None:
    log.error("daemon.fatal", error=str(exc))
    print(f"automationd: {exc}", file=sys.stderr)
