"""``automationctl`` commands for changing jobs safely (issue 14): ``jobs edit``, ``jobs
explain``, ``jobs backfill``, ``audit`` and ``backup``; their parsers and their views.

``build_parser`` (ctl.py) calls ``add_commands``; the views join ``ctl_render.VIEWS``.
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from automationd.ctl_render import rows_of, when

Leaf = Callable[..., argparse.ArgumentParser]
NAME_HELP = "the job's name"
TIME_HELP = (
    "RFC 3339 (2026-12-02T19:32:00Z) or a duration meaning that long ago "
    "(250ms, 90s, 15m, 1h30m, 7d)"
)


def _set_value(text: str) -> tuple[list[str], Any]:
    """``KEY=VALUE``: a dotted key (``action.argv``) and a JSON value, or the text as a
    string when it is not JSON (``--set schedule='*/5 * * * *'``); ``null`` removes the key."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.split("."), value


class _SetAction(argparse.Action):
    """Each ``--set`` merges one key into the patch (after ``--file``'s keys, if any)."""

    def __call__(
        self, parser: Any, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        path, value = values
        patch = getattr(ns, "patch", None)
        patch = dict(patch) if isinstance(patch, dict) else {}
        node = patch
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = value
        ns.patch = patch


def add_commands(top: Any, jobs: Any, leaf: Leaf, toml_job: Any, since: Any, count: Any) -> None:
    """The subcommands, added to ``automationctl`` and its ``jobs`` group."""
    p = leaf(
        jobs, "edit", "jobs.update", "job_updated",
        ["name", "patch", "if_revision", "override", "drop_override"],
        help="change a job: only the keys given change (JSON merge patch)",
    )  # fmt: skip
    p.add_argument("name", metavar="NAME", help=NAME_HELP)
    p.add_argument(
        "--set", dest="patch", action=_SetAction, type=_set_value, metavar="KEY=VALUE",
        help="a key to change, again for more (dotted for nested keys: action.argv; the value "
             "is JSON, or text when it is not; null removes the key)",
    )  # fmt: skip
    p.add_argument(
        "--file", dest="patch", type=toml_job, metavar="JOB.toml",
        help="a TOML file of the keys to change (a lone [[jobs]] table too); --set adds to it",
    )  # fmt: skip
    p.add_argument(
        "--if-revision", type=count, metavar="N",
        help="change it only if it is still at revision N (else conflict: read it again)",
    )  # fmt: skip
    p.add_argument(
        "--override", action="store_true",
        help="change a config job anyway; kept across reloads until --drop-override",
    )  # fmt: skip
    p.add_argument(
        "--drop-override", action="store_true",
        help="put a config job back as the config file says (and undo a removal)",
    )  # fmt: skip
    leaf(
        jobs, "explain", "jobs.explain", "explain", ["name"],
        help="why a job is or is not running right now, in sentences (--json for tools)",
    ).add_argument("name", metavar="NAME", help=NAME_HELP)  # fmt: skip
    p = leaf(
        jobs, "backfill", "jobs.backfill", "backfill", ["name", "since", "until", "dry_run"],
        help="one run per past fire in a window (each fire at most once)",
    )  # fmt: skip
    p.add_argument("name", metavar="NAME", help=NAME_HELP)
    p.add_argument(
        "--since", type=since, required=True, metavar="T",
        help=f"fires at or after T: {TIME_HELP}",
    )  # fmt: skip
    p.add_argument(
        "--until", type=since, required=True, metavar="T",
        help="and before T (same formats as --since); fires after now are never backfilled",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the fires, start nothing")
    p = leaf(
        top, "audit", "audit.list", "audit", ["job", "since", "limit"],
        help="who changed what: the audit trail, newest first",
    )  # fmt: skip
    p.add_argument("--job", metavar="JOB", help="only entries about this job")
    p.add_argument("--since", type=since, metavar="T", help=f"only entries since T: {TIME_HELP}")
    p.add_argument("--limit", type=count, metavar="N", help="at most N entries (default 50)")
    leaf(
        top, "backup", "store.backup", "backup", ["path"],
        help="copy the store to a new FILE while the daemon runs",
    ).add_argument(
        "path", metavar="FILE", type=os.path.abspath,
        help="the new file (must not exist; relative to the current folder)",
    )  # fmt: skip


# --- views ---------------------------------------------------------------------------------


def _updated(job: Mapping[str, Any]) -> str:
    text = f"updated job {job.get('name')}: revision {job.get('revision')}"
    if job.get("override"):
        text += " (overrides the config file)"
    nxt = job.get("next_run")
    return text + (f"; next run {when(nxt)}\n" if nxt else "\n")


def _explain(r: Mapping[str, Any]) -> str:
    head = f"Job {r.get('name')} is {r.get('state')}"
    nxt = r.get("next_fire")
    head += f"; next fire {when(nxt)}." if nxt else "."
    lines = [head]
    reasons = r.get("reasons")
    for reason in reasons if isinstance(reasons, list) else []:
        if isinstance(reason, Mapping):
            msg = str(reason.get("message") or reason.get("code"))
            lines.append(textwrap.fill(msg, 100, initial_indent="- ", subsequent_indent="  "))
    return "\n".join(lines) + "\n"


def _backfill(r: Mapping[str, Any]) -> str:
    existing = r.get("existing") or 0
    had = f" ({existing} fire(s) already had a run)" if existing else ""
    if r.get("dry_run"):
        fires: Sequence[Any] = r.get("fires") or []
        shown = ", ".join(when(f) for f in fires[:10]) + (" …" if len(fires) > 10 else "")
        return f"would create {r.get('count', 0)} run(s){had}: {shown or 'none'}\n"
    return f"created {r.get('count', 0)} backfill run(s){had}\n"


VIEWS: dict[str, Callable[[Any], str]] = {
    "job_updated": _updated,
    "explain": _explain,
    "backfill": _backfill,
    "audit": lambda rows: rows_of(
        rows,
        [
            ("AT", "at"),
            ("UID", "uid"),
            ("USER", "user"),
            ("CMD", "cmd"),
            ("TARGET", "target"),
            ("OUTCOME", "outcome"),
        ],
    ),
    "backup": lambda r: f"backup written to {r.get('path')} ({r.get('bytes')} bytes)\n",
}
