"""``automationctl``: one admin request over the Unix socket, printed as a table or as JSON.

Exit codes (SPEC §1): 0 ok, 1 the daemon answered an error, 2 usage error, 3 the socket could
not be reached (or did not answer). A short-lived CLI, so it uses a plain blocking socket.

The argparse tree *is* the command table: every leaf records its socket ``cmd``, the
argument names it forwards, and the view that renders its result (``ctl_render``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from automationd import ctl_ops
from automationd.clock import SystemClock
from automationd.core.runstate import RunState
from automationd.ctl_args import Version
from automationd.ctl_args import count as _count
from automationd.ctl_args import json_object as _json_object
from automationd.ctl_args import json_value as _json_value
from automationd.ctl_args import since as _since
from automationd.ctl_args import toml_job as _toml_job
from automationd.ctl_client import DEFAULT_SOCKET, SOCKET_ENV, TIMEOUT, Unreachable, call
from automationd.ctl_format import Style, use_style
from automationd.ctl_render import VIEWS, render
from automationd.errors import ErrorKind

VIEWS.update(ctl_ops.VIEWS)  # issue 14: jobs edit/explain/backfill, audit, backup

__all__ = ["DEFAULT_SOCKET", "SOCKET_ENV", "TIMEOUT", "Unreachable", "build_parser", "call"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


# --- the command tree --------------------------------------------------------------------------

TIME_HELP = (
    "RFC 3339 (2026-12-02T19:32:00Z) or a duration meaning that long ago "
    "(250ms, 90s, 15m, 1h30m, 7d)"
)
JOB_STATES = ("enabled", "paused", "completed")
RUN_STATES = tuple(s.value for s in RunState)
ERROR_KINDS = tuple(k.value for k in ErrorKind)
SHELLS = ("bash", "zsh", "fish")
# shtab's completion hint for a path argument, per shell (shtab.FILE, without importing it)
FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f",
        "fish": "(__fish_complete_path (commandline -ct))"}  # fmt: skip

_HELP = {
    "status": "daemon status: version, uptime, jobs, workers, queue, DLQ size",
    "limits.list": "rate limits per service: tokens, waiting attempts, pause",
    "breakers.list": "circuit breakers per service: state, failures, when opened",
    "reload": "re-read the config file (as SIGHUP); a bad file is refused, the old one stays",
    "store.check": "check the store for damage: integrity, references, every row decoded "
    "(exit 1 when damaged)",
    "workers.list": "daemons sharing the store (a PostgreSQL fleet): heartbeat, load, leader",
    "web.login": "print a one-time login link for the web console (it works once, for 10 min)",
    "jobs.list": "list jobs with their next and last run",
    "jobs.get": "one job, its next 5 fire times and last 5 runs",
    "jobs.add": "add a job (persisted; kept across restarts and reloads)",
    "jobs.remove": "remove a job added through the socket",
    "jobs.pause": "pause a job (survives restarts and reloads)",
    "jobs.resume": "resume a paused job",
    "jobs.trigger": "start a run now (durable once answered)",
    "runs.list": "list runs, newest first",
    "runs.get": "one run with its attempts and targets",
    "runs.logs": "captured output of a run (last 64 KiB per stream and attempt)",
    "runs.cancel": "cancel a queued, running or retrying run",
    "runs.retry": "new run that re-does only the failed targets of a failed/partial run",
    "runs.rollback": "undo the succeeded targets of a failed/partial run (same run)",
    "dlq.summary": "dead letters counted by job and error kind",
    "dlq.list": "list dead-lettered targets",
    "dlq.retry": "requeue dead-lettered targets as new runs",
    "dlq.purge": "drop dead-lettered targets",
    "events.list": "list stored events, newest first",
    "events.publish": "publish an event; starts every enabled job whose `on` matches",
    "events.replay": "re-deliver stored events to the triggers as they are now",
}


def _leaf(
    sub: Any, name: str, cmd: str, view: str, fields: Sequence[str] = (), help: str = ""
) -> argparse.ArgumentParser:
    """A subcommand sending ``cmd`` with ``fields`` (namespace attrs named like socket args)."""
    help = help or _HELP.get(cmd, "")
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    p.set_defaults(cmd=cmd, view=view, fields=tuple(fields))
    _add_common(p, argparse.SUPPRESS)
    return p


def _add_common(p: argparse.ArgumentParser, default: Any) -> None:
    """``--socket``, ``--json``, ``--utc``, ``--wide`` work before or after the subcommand."""
    flag = default if default is argparse.SUPPRESS else False
    p.add_argument(
        "--socket",
        metavar="PATH",
        default=default,
        help=f"admin socket (default: ${SOCKET_ENV}, then {DEFAULT_SOCKET})",
    ).complete = FILE  # type: ignore[attr-defined]
    p.add_argument(
        "--json",
        action="store_true",
        default=flag,
        help="print the daemon's result as JSON instead of a table",
    )
    p.add_argument(
        "--utc",
        action="store_true",
        default=flag,
        help="show times in UTC (2026-12-02 19:32:00Z); the default unless stdout "
        "is a terminal, which gets local time with its offset",
    )
    p.add_argument(
        "--wide",
        action="store_true",
        default=flag,
        help="print long values (errors, payloads) whole: no cutting, no wrapping",
    )


def _group(sub: Any, name: str, help: str) -> Any:
    p = sub.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION")


def _target_choice(p: argparse.ArgumentParser, verb: str) -> None:
    """``ID``, or filters that must all hold (``--job``, ``--kind``, ``--since``), or
    ``--all``: exactly one of the three ways (a usage error otherwise)."""
    p.add_argument("id", nargs="?", help=f"{verb} this dead-letter entry (ID from `dlq list`)")
    _dlq_filters(p, f"{verb} only entries")
    p.add_argument("--all", action="store_true", help=f"{verb} every entry")

    def check(ns: argparse.Namespace) -> None:
        filters = ns.job is not None or ns.kind is not None or ns.since is not None
        ways = (ns.id is not None) + filters + bool(ns.all)
        if ways != 1:
            p.error("give one of: ID, filters (--job/--kind/--since), or --all")

    p.set_defaults(check=check)


def _dlq_filters(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--job", metavar="JOB", help=f"{what} of this job")
    p.add_argument("--kind", choices=ERROR_KINDS, help=f"{what} whose error has this kind")
    p.add_argument("--since", type=_since, metavar="T", help=f"{what} failed since T: {TIME_HELP}")


def _name(p: argparse.ArgumentParser, what: str = "the job's name") -> None:
    p.add_argument("name", metavar="NAME", help=what)


def _limit(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--limit", type=_count, metavar="N", help=what)


def _payload(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--payload",
        type=_json_value,
        metavar="JSON",
        help=f"{what}: a JSON value, e.g. '{{\"sku\": 1}}' (at most 1 MiB)",
    )
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="a repeat with the same key (at most 256 characters) returns the "
                        "first answer instead of doing it again")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. A new subcommand is one ``_leaf(...)`` entry (plus its
    arguments, each with help text); its cmd's help goes in ``_HELP``."""
    parser = argparse.ArgumentParser(
        prog="automationctl",
        description="Control a running automationd over its admin socket.",
        epilog=f"Socket: --socket, then ${SOCKET_ENV}, then {DEFAULT_SOCKET}. "
        f"Times: {TIME_HELP}. Exit status: 0 ok, 1 the daemon answered an error, "
        "2 usage error, 3 the socket could not be reached.",
    )
    parser.add_argument("--version", action=Version, help="print the version and exit")
    _add_common(parser, None)
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _leaf(top, "status", "status", "status")
    _leaf(top, "limits", "limits.list", "limits")
    _leaf(top, "breakers", "breakers.list", "breakers")
    _leaf(top, "reload", "reload", "reload")
    _leaf(top, "check-store", "store.check", "store_check")
    _leaf(top, "workers", "workers.list", "workers")
    _leaf(top, "web-login", "web.login", "web_login")

    jobs = _group(top, "jobs", "list and manage jobs")
    p = _leaf(jobs, "list", "jobs.list", "jobs", ["state"])
    p.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    _name(_leaf(jobs, "show", "jobs.get", "job", ["name"]))
    p = _leaf(jobs, "remove", "jobs.remove", "job_removed", ["name", "override"])
    _name(p)
    p.add_argument("--override", action="store_true",
                   help="remove a config job anyway; it stays removed across reloads until "
                        "`jobs edit NAME --drop-override`")  # fmt: skip
    _name(_leaf(jobs, "pause", "jobs.pause", "job_paused", ["name"]))
    _name(_leaf(jobs, "resume", "jobs.resume", "job_resumed", ["name"]))
    p = _leaf(jobs, "add", "jobs.add", "job_added", ["job"])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--file", dest="job", type=_toml_job, metavar="JOB.toml",
                   help="a TOML file with one job's keys, as in a [[jobs]] table "
                        "(a file holding one [[jobs]] entry works too)"
                   ).complete = FILE  # type: ignore[attr-defined]  # fmt: skip
    g.add_argument("--json-job", dest="job", type=_json_object, metavar="'{...}'",
                   help="the job's keys as a JSON object")  # fmt: skip
    p = _leaf(
        jobs, "trigger", "jobs.trigger", "triggered",
        ["name", "payload", "idempotency_key", "dry_run"],
    )  # fmt: skip
    _name(p)
    _payload(p, "the run's payload")
    p.add_argument("--dry-run", action="store_true",
                   help="store a preview: run only the check phase and show its plan")  # fmt: skip
    p = _leaf(
        jobs, "apply", "jobs.trigger", "applied", ["apply", "name"],
        help="apply a stored preview: perform its plan if it still holds",
    )  # fmt: skip
    p.add_argument("apply", metavar="RUN_ID", help="the preview run to apply")
    p.add_argument("--job", dest="name", metavar="JOB",
                   help="the preview's job (refused if it is not; user_group members must "
                        "give it)")  # fmt: skip

    runs = _group(top, "runs", "inspect and manage runs")
    p = _leaf(runs, "list", "runs.list", "runs", ["job", "state", "limit", "offset"])
    p.add_argument("--job", metavar="JOB", help="only runs of this job")
    p.add_argument("--state", choices=RUN_STATES, help="only runs in this state")
    _limit(p, "at most N runs (default 50, at most 1000)")
    p.add_argument("--offset", type=_count, metavar="N", help="skip the N newest runs first")
    for name, cmd, view in (
        ("show", "runs.get", "run"),
        ("logs", "runs.logs", "logs"),
        ("cancel", "runs.cancel", "run_cancelled"),
        ("retry", "runs.retry", "run_retried"),
        ("rollback", "runs.rollback", "run_rolled_back"),
    ):
        _leaf(runs, name, cmd, view, ["id"]).add_argument(
            "id", metavar="ID", help="the run's id (from `runs list`)"
        )

    dlq = _group(top, "dlq", "the dead-letter queue: targets that exhausted their retries")
    p = _leaf(dlq, "list", "dlq.list", "dlq", ["job", "limit"])
    p.add_argument("--job", metavar="JOB", help="only entries of this job")
    _limit(p, "at most N entries")
    picks = ["id", "job", "kind", "since", "all"]
    _target_choice(_leaf(dlq, "retry", "dlq.retry", "dlq_retried", picks), "requeue")
    _target_choice(_leaf(dlq, "purge", "dlq.purge", "dlq_purged", picks), "drop")
    p = _leaf(dlq, "summary", "dlq.summary", "dlq_summary", ["job", "kind", "since"])
    _dlq_filters(p, "count only entries")

    events = _group(top, "events", "list, publish and replay events")
    p = _leaf(events, "list", "events.list", "events", ["name", "since", "limit"])
    p.add_argument("--name", metavar="GLOB", help="only events whose name matches (demo.*)")
    p.add_argument("--since", type=_since, metavar="T", help=f"only events since T: {TIME_HELP}")
    _limit(p, "at most N events")
    p = _leaf(
        events, "publish", "events.publish", "published", ["name", "payload", "idempotency_key"]
    )
    _name(p, "the event's name (jobs' `on` globs match it)")
    _payload(p, "the event's payload (it becomes the runs' payload)")
    p = _leaf(events, "replay", "events.replay", "replayed", ["since", "until", "name", "force"])
    p.add_argument("--since", type=_since, required=True, metavar="T",
                   help=f"replay events stored since T: {TIME_HELP}")  # fmt: skip
    p.add_argument(
        "--until",
        type=_since,
        metavar="T",
        help="and before T (same formats as --since; default: now)",
    )
    p.add_argument("--name", metavar="GLOB", help="only events whose name matches")
    p.add_argument("--force", action="store_true",
                   help="start runs even for events this window already re-delivered")  # fmt: skip

    ctl_ops.add_commands(top, jobs, _leaf, _toml_job, _since, _count)  # issue 14

    p = top.add_parser("completion", help="print a shell completion script",
                       description=COMPLETION_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="the shell")
    p.set_defaults(cmd=None, local=print_completion)
    return parser


COMPLETION_HELP = """print a shell completion script for automationctl on stdout

  bash  . <(automationctl completion bash), or save it as
        /usr/share/bash-completion/completions/automationctl
  zsh   save it as _automationctl in a folder on $fpath
        (e.g. /usr/local/share/zsh/site-functions/_automationctl),
        or eval "$(automationctl completion zsh)" after compinit
  fish  save it as ~/.config/fish/completions/automationctl.fish"""


def print_completion(ns: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``automationctl completion SHELL``: shtab's static script for this very parser."""
    import shtab  # lazy: only this command needs it

    out(shtab.complete(build_parser(), shell=ns.shell))
    return EXIT_OK


def request_of(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(cmd, args) for a parsed command line; unset options and false flags are left out."""
    args: dict[str, Any] = {}
    for field in ns.fields:
        value = getattr(ns, field, None)
        if value is not None and value is not False:
            args[field] = value
    return ns.cmd, args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``automationctl`` console script; returns the exit code."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
        check = getattr(ns, "check", None)
        if check is not None:
            check(ns)
    except SystemExit as exc:  # argparse: --help/--version → 0, usage errors → 2
        return int(exc.code or 0)
    out = _stream(sys.stdout)
    local = getattr(ns, "local", None)
    if local is not None:  # answered here, without the daemon
        return int(local(ns, out))
    path = ns.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    cmd, args = request_of(ns)
    try:
        # store.check reads the whole database: seconds per few hundred MB, not a socket hop
        resp = call(path, cmd, args, timeout=TIMEOUT if cmd != "store.check" else 3600.0)
    except Unreachable as exc:
        print(f"automationctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ValueError as exc:
        print(f"error: internal: malformed response from the daemon: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not resp.get("ok"):
        err = resp.get("error") or {}
        print(f"error: {err.get('code', 'internal')}: {err.get('message', '')}", file=sys.stderr)
        return EXIT_ERROR
    result = resp.get("result")
    try:
        if ns.json:
            out(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        else:
            with use_style(output_style(ns, sys.stdout)):
                render(ns.view, result, out)
    except BrokenPipeError:  # `automationctl runs list | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet the exit flush
    if cmd == "store.check" and isinstance(result, dict) and result.get("ok") is False:
        return EXIT_ERROR  # a damaged store fails the command, so scripts can act on it
    return EXIT_OK


def output_style(ns: argparse.Namespace, stdout: Any) -> Style:
    """Local time and wrapping to the terminal's width when stdout is a terminal; UTC and
    whole lines otherwise (or with ``--utc``/``--wide``)."""
    tty = bool(getattr(stdout, "isatty", lambda: False)())
    width = shutil.get_terminal_size().columns if tty and not ns.wide else None
    return Style(utc=ns.utc or not tty, wide=ns.wide, width=width, now=SystemClock().time())


def _stream(f: Any) -> Callable[[str], None]:
    """A writer that never dies on lone surrogates from captured output."""

    def write(text: str) -> None:
        f.write(
            text.encode(f.encoding or "utf-8", "backslashreplace").decode(f.encoding or "utf-8")
        )
        f.flush()

    return write


if __name__ == "__main__":
    sys.exit(main())
