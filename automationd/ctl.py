"""``automationctl``: one admin request over the Unix socket, printed as a table or as JSON.

Exit codes (SPEC §1): 0 ok, 1 the daemon answered an error, 2 usage error, 3 the socket could
not be reached (or did not answer). A short-lived CLI, so it uses a plain blocking socket.

The argparse tree *is* the command table: every leaf records its socket ``cmd``, the
argument names it forwards, and the view that renders its result (``ctl_render``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tomllib
from collections.abc import Callable, Sequence
from typing import Any

from automationd.admin.protocol import encode_request
from automationd.clock import SystemClock
from automationd.ctl_render import render
from automationd.units import parse_duration, parse_rfc3339, rfc3339

DEFAULT_SOCKET = "/run/automationd/admin.sock"
SOCKET_ENV = "AUTOMATIOND_SOCKET"
TIMEOUT = 30.0

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Unreachable(Exception):
    """The daemon could not be reached, or closed/timed out without answering."""


# --- argument types: a bad value is a usage error (exit 2) -------------------------------------


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _json_object(text: str) -> dict[str, Any]:
    value = _json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _toml_job(path: str) -> dict[str, Any]:
    """A TOML file holding one job table's keys (a lone ``[[jobs]]`` entry is accepted too)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
    jobs = data.get("jobs")
    if list(data) == ["jobs"] and isinstance(jobs, list) and len(jobs) == 1:
        return dict(jobs[0])
    return data


def _since(text: str) -> str:
    """An RFC 3339 time, or a duration meaning "that long ago" (``1h`` → now minus 1 h)."""
    try:
        return rfc3339(SystemClock().time() - parse_duration(text)) or text
    except ValueError:
        pass
    try:
        parse_rfc3339(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad time {text!r}: expected RFC 3339 (2026-01-31T12:00:00Z) or a duration (1h)"
        ) from None
    return text


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return n


# --- the command tree --------------------------------------------------------------------------


_HELP = {
    "jobs.list": "list jobs",
    "jobs.get": "one job, its next fire times and last runs",
    "jobs.remove": "remove a job added through the socket",
    "jobs.pause": "pause a job (survives restarts and reloads)",
    "jobs.resume": "resume a paused job",
    "jobs.trigger": "start a run now",
    "runs.list": "list runs, newest first",
    "runs.get": "one run with its attempts and targets",
    "runs.logs": "captured output of a run",
    "runs.cancel": "cancel a run",
    "runs.retry": "re-run the failed targets of a failed/partial run",
    "dlq.list": "list dead-lettered targets",
    "dlq.retry": "requeue dead-lettered targets",
    "dlq.purge": "drop dead-lettered targets",
    "events.list": "list stored events",
    "events.publish": "publish an event",
    "events.replay": "re-deliver stored events to today's triggers",
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
    """``--socket``/``--json`` work before or after the subcommand."""
    p.add_argument("--socket", metavar="PATH", default=default, help="admin socket path")
    p.add_argument(
        "--json",
        action="store_true",
        default=default if default is argparse.SUPPRESS else False,
        help="print the result as JSON",
    )


def _group(sub: Any, name: str, help: str) -> Any:
    p = sub.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest=f"{name}_action", required=True, metavar="ACTION")


def _target_choice(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("id", nargs="?", help="one dead-letter entry")
    g.add_argument("--job", help="every entry of this job")
    g.add_argument("--all", action="store_true", help="every entry")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automationctl",
        description="Control a running automationd over its admin socket.",
        epilog=f"Socket: --socket, then ${SOCKET_ENV}, then {DEFAULT_SOCKET}.",
    )
    _add_common(parser, None)
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _leaf(top, "status", "status", "status", help="daemon status")
    _leaf(top, "limits", "limits.list", "limits", help="rate limits per service")
    _leaf(top, "breakers", "breakers.list", "breakers", help="circuit breakers per service")
    _leaf(top, "reload", "reload", "reload", help="reload the config file")
    _leaf(top, "check-store", "store.check", "store_check", help="check the store for damage")

    jobs = _group(top, "jobs", "list and manage jobs")
    _leaf(jobs, "list", "jobs.list", "jobs", ["state"]).add_argument("--state")
    for name, cmd, view in (
        ("show", "jobs.get", "job"),
        ("remove", "jobs.remove", "job_removed"),
        ("pause", "jobs.pause", "job_paused"),
        ("resume", "jobs.resume", "job_resumed"),
    ):
        _leaf(jobs, name, cmd, view, ["name"]).add_argument("name", metavar="NAME")
    p = _leaf(jobs, "add", "jobs.add", "job_added", ["job"], help="add a job (persisted)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--file", dest="job", type=_toml_job, metavar="JOB.toml")
    g.add_argument("--json-job", dest="job", type=_json_object, metavar="'{...}'")
    p = _leaf(
        jobs, "trigger", "jobs.trigger", "triggered",
        ["name", "payload", "idempotency_key", "dry_run"],
    )  # fmt: skip
    p.add_argument("name", metavar="NAME")
    p.add_argument("--payload", type=_json_value, metavar="JSON")
    p.add_argument("--idempotency-key", metavar="K")
    p.add_argument("--dry-run", action="store_true", help="run only the check phase")

    runs = _group(top, "runs", "inspect and manage runs")
    p = _leaf(runs, "list", "runs.list", "runs", ["job", "state", "limit", "offset"])
    p.add_argument("--job")
    p.add_argument("--state")
    p.add_argument("--limit", type=_count)
    p.add_argument("--offset", type=_count)
    for name, cmd, view in (
        ("show", "runs.get", "run"),
        ("logs", "runs.logs", "logs"),
        ("cancel", "runs.cancel", "run_cancelled"),
        ("retry", "runs.retry", "run_retried"),
    ):
        _leaf(runs, name, cmd, view, ["id"]).add_argument("id", metavar="ID")

    dlq = _group(top, "dlq", "the dead-letter queue")
    p = _leaf(dlq, "list", "dlq.list", "dlq", ["job", "limit"])
    p.add_argument("--job")
    p.add_argument("--limit", type=_count)
    _target_choice(_leaf(dlq, "retry", "dlq.retry", "dlq_retried", ["id", "job", "all"]))
    _target_choice(_leaf(dlq, "purge", "dlq.purge", "dlq_purged", ["id", "job", "all"]))

    events = _group(top, "events", "list, publish and replay events")
    p = _leaf(events, "list", "events.list", "events", ["name", "since", "limit"])
    p.add_argument("--name")
    p.add_argument("--since", type=_since, metavar="T")
    p.add_argument("--limit", type=_count)
    p = _leaf(
        events, "publish", "events.publish", "published", ["name", "payload", "idempotency_key"]
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--payload", type=_json_value, metavar="JSON")
    p.add_argument("--idempotency-key", metavar="K")
    p = _leaf(events, "replay", "events.replay", "replayed", ["since", "until", "name", "force"])
    p.add_argument("--since", type=_since, required=True, metavar="T")
    p.add_argument("--until", type=_since, metavar="T")
    p.add_argument("--name")
    p.add_argument("--force", action="store_true")
    return parser


def request_of(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(cmd, args) for a parsed command line; unset options and false flags are left out."""
    args: dict[str, Any] = {}
    for field in ns.fields:
        value = getattr(ns, field, None)
        if value is not None and value is not False:
            args[field] = value
    return ns.cmd, args


# --- transport ---------------------------------------------------------------------------------


def call(path: str, cmd: str, args: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request and return the response object; ``Unreachable`` on any transport woe."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            raise Unreachable(f"cannot reach the daemon at {path}: {exc.strerror or exc}") from None
        # Refused before we finished writing? Its one-line answer may still be queued for us.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode_request(1, cmd, args))
        buf = bytearray()
        while b"\n" not in buf:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise Unreachable(f"the daemon at {path} closed the connection without answering")
            buf += chunk
    except TimeoutError:
        raise Unreachable(f"no answer from the daemon at {path} within {timeout:g}s") from None
    except ConnectionResetError:
        raise Unreachable(f"the daemon at {path} reset the connection") from None
    finally:
        sock.close()
    resp = json.loads(bytes(buf[: buf.index(b"\n")]))
    if not isinstance(resp, dict):
        raise ValueError("response is not a JSON object")
    return resp


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``automationctl`` console script; returns the exit code."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help → 0, usage errors → 2
        return int(exc.code or 0)
    path = ns.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    cmd, args = request_of(ns)
    out = _stream(sys.stdout)
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
            render(ns.view, result, out)
    except BrokenPipeError:  # `automationctl runs list | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet the exit flush
    if cmd == "store.check" and isinstance(result, dict) and result.get("ok") is False:
        return EXIT_ERROR  # a damaged store fails the command, so scripts can act on it
    return EXIT_OK


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
