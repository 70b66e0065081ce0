"""``automationd run|check-config|check-store|migrate``: argv → exit code, nothing more.

Exit codes (SPEC §1): 0 clean stop / valid config, 2 bad config or bad usage, 1 any other
fatal error (decided by the daemon). A bad config is always exactly one stderr line and
never a traceback: operators read it in ``systemctl status``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from automationd.config.load import load_config, parsed_schedule
from automationd.config.model import Config, JobSpec
from automationd.config.values import zone
from automationd.ctl_args import Version
from automationd.ctl_format import clock_time
from automationd.errors import ConfigError

DEFAULT_CONFIG = Path("/etc/automationd/automationd.toml")
FIRES_SHOWN = 3


def _config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` as every command that reads the config takes it."""
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
        help=f"the TOML config file (default: {DEFAULT_CONFIG})",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``automationd`` command line (also the source of its man page and completion)."""
    parser = argparse.ArgumentParser(
        prog="automationd",
        description="Single-process automation daemon: schedules and events start runs of "
        "exec, http and python actions, with rate limits, breakers, retries and a durable "
        "SQLite run log. Controlled with automationctl(1).",
        epilog="Exit status: 0 clean stop or valid config; 1 a fatal error; 2 a bad config "
        "or usage (one line on stderr naming the file, key and problem).",
    )
    parser.add_argument("--version", action=Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground until SIGTERM/SIGINT",
        description="Run the daemon in the foreground until SIGTERM/SIGINT (drain, then exit "
        "0); SIGHUP reloads the config file. Logs go to stderr.",
    )
    _config_option(run)
    check = sub.add_parser(
        "check-config",
        help="validate a config file and show each job's next 3 fire times",
        description="Validate a config file without starting anything, and print each job "
        "with its next 3 fire times in the job's time zone (a fire moved by DST is marked).",
    )
    check.add_argument(
        "file", type=Path, nargs="?", metavar="FILE",
        help=f"the TOML config file (default: the one `run` uses, {DEFAULT_CONFIG})",
    )  # fmt: skip
    check.add_argument(
        "--config", type=Path, dest="config", metavar="FILE", help="the same as FILE"
    )
    migrate = sub.add_parser(
        "migrate",
        help='create or upgrade the PostgreSQL schema ([store] backend = "postgresql")',
        description="Create or upgrade the schema of the PostgreSQL database the config "
        "names (run it once before the first start and after each upgrade; `run` never "
        "migrates). Exit 0, or 1 with one line on stderr. SQLite migrates itself at start.",
    )
    _config_option(migrate)
    store = sub.add_parser(
        "check-store",
        help="check the store for damage (the daemon running or not)",
        description="Check the SQLite store of a config for damage: SQLite's integrity_check,"
        " rows pointing at runs that are not stored, and every row decoded. Exit 0 sound,"
        " 1 damaged (one line per problem), 2 bad config.",
    )
    _config_option(store)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``automationd`` script; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command == "run":
        return _run(args.config)
    if args.command == "check-store":
        return _check_store(args.config)
    if args.command == "migrate":
        return _migrate(args.config)
    return _check(args.file or args.config or DEFAULT_CONFIG)


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _run(path: Path) -> int:
    config = _load(path)
    if config is None:
        return ConfigError.exit_code
    from automationd.daemon import run_daemon  # lazy: check-config must not pay for the engine

    return run_daemon(config)


def _migrate(path: Path) -> int:
    """Exit 0 with what was done, or 1 with one line (SPEC §7.4)."""
    config = _load(path)
    if config is None:
        return ConfigError.exit_code
    if config.store.backend != "postgresql":
        print(f"{path}: [store] backend is {config.store.backend}: it migrates itself at start")
        return 0
    import asyncio  # lazy, as for run

    from automationd.errors import StoreError
    from automationd.store.pg.schema_cmd import migrate_database

    try:
        before, after = asyncio.run(migrate_database(config.store.dsn))
    except StoreError as exc:
        print(f"automationd migrate: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if before == after:
        print(f"PostgreSQL schema is up to date (version {after})")
    else:
        print(f"PostgreSQL schema migrated from version {before} to {after}")
    return 0


def _check(path: Path) -> int:
    config = _load(path)
    if config is None:
        return ConfigError.exit_code
    from automationd.clock import SystemClock  # lazy: it pulls in asyncio

    now = SystemClock().time()
    width = max((len(job.name) for job in config.jobs), default=0)
    out = sys.stdout
    for job in config.jobs:
        out.write(f"{job.name:<{width}}  {describe_job(job, now)}\n")
    services = len(config.services)
    out.write(
        f"{path}: OK ({len(config.jobs)} job{'s' * (len(config.jobs) != 1)}, "
        f"{services} service{'s' * (services != 1)})\n"
    )
    return 0


def _check_store(path: Path) -> int:
    config = _load(path)
    if config is None:
        return ConfigError.exit_code
    from automationd.store.sqlite.check import check_problems  # lazy, as in _run
    from automationd.store.sqlite.store import DB_NAME

    db = config.daemon.state_dir / DB_NAME
    if not db.exists():
        print(f"{db}: no store yet (the daemon creates it at its first start)", file=sys.stderr)
        return 1
    problems = check_problems(db)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{db}: DAMAGED ({len(problems)} problem(s) above)", file=sys.stderr)
        return 1
    print(f"{db}: OK (integrity, references and every row checked)")
    return 0


def describe_job(job: JobSpec, now: float, count: int = FIRES_SHOWN) -> str:
    """``SCHEDULE  TZ  next: T1, T2, T3`` and/or ``on: GLOB``, fires in the job's zone with
    a ``[note]`` after any fire that DST moved."""
    parts: list[str] = []
    if job.schedule is not None:
        schedule = parsed_schedule(job.schedule, job.timezone)
        fires: list[str] = []
        after = now
        for _ in range(count):
            fire = schedule.next_after(after)
            if fire is None:
                break
            text = _local(fire, job.timezone)
            note = schedule.dst_note(fire)
            fires.append(f"{text} [{note}]" if note else text)
            after = fire
        parts.append(f"{job.schedule}  {job.timezone}  next: {', '.join(fires) or '(none)'}")
    if job.on is not None:
        parts.append(f"on: {job.on}")
    return "  ".join(parts)


def _local(fire: float, tz_name: str) -> str:
    """A fire in the one human time format, in the job's own zone (where DST moves it)."""
    return clock_time(fire, zone(tz_name))
