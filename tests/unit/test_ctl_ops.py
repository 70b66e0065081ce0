"""``automationctl`` for changing jobs safely (ctl_ops.py): command lines become the right
requests, and results read as sentences and tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from automationd.ctl import build_parser, main, request_of
from automationd.ctl_render import render

T1, T2 = "2026-01-05T10:00:00Z", "2026-01-05T11:00:00Z"

REQUESTS: list[tuple[list[str], str, dict[str, Any]]] = [
    (
        [
            "jobs",
            "edit",
            "a",
            "--set",
            "retries=3",
            "--set",
            'action.argv=["/bin/x", "-v"]',
            "--set",
            "description=null",
            "--set",
            "schedule=*/5 * * * *",
            "--if-revision",
            "2",
        ],
        "jobs.update",
        {
            "name": "a",
            "patch": {
                "retries": 3,
                "action": {"argv": ["/bin/x", "-v"]},
                "description": None,
                "schedule": "*/5 * * * *",
            },
            "if_revision": 2,
        },
    ),
    (
        [
            "jobs",
            "edit",
            "cfg",
            "--set",
            "action.env.MODE=full",
            "--set",
            "action.env.X=1",
            "--override",
        ],
        "jobs.update",
        {"name": "cfg", "patch": {"action": {"env": {"MODE": "full", "X": 1}}}, "override": True},
    ),
    (
        ["jobs", "edit", "cfg", "--drop-override"],
        "jobs.update",
        {"name": "cfg", "drop_override": True},
    ),
    (["jobs", "explain", "a"], "jobs.explain", {"name": "a"}),
    (
        ["jobs", "backfill", "a", "--since", T1, "--until", T2, "--dry-run"],
        "jobs.backfill",
        {"name": "a", "since": T1, "until": T2, "dry_run": True},
    ),
    (["audit", "--job", "a", "--limit", "5"], "audit.list", {"job": "a", "limit": 5}),
    (["jobs", "remove", "cfg", "--override"], "jobs.remove", {"name": "cfg", "override": True}),
]


@pytest.mark.parametrize(("argv", "cmd", "args"), REQUESTS)
def test_command_lines_become_requests(argv: list[str], cmd: str, args: dict[str, Any]) -> None:
    """Each command line sends its socket command with exactly these arguments."""
    assert request_of(build_parser().parse_args(argv)) == (cmd, args)


def test_edit_from_a_file_then_set(tmp_path: Path) -> None:
    """`--file` gives the patch's keys (a lone [[jobs]] table too); `--set` after it adds to
    them; `backup FILE` sends an absolute path."""
    f = tmp_path / "patch.toml"
    f.write_text('[[jobs]]\nschedule = "@hourly"\naction = { argv = ["a"] }\n')
    ns = build_parser().parse_args(["jobs", "edit", "a", "--file", str(f), "--set", "retries=1"])
    assert request_of(ns)[1]["patch"] == {
        "schedule": "@hourly",
        "action": {"argv": ["a"]},
        "retries": 1,
    }
    ns = build_parser().parse_args(["backup", "b.db"])
    assert request_of(ns) == ("store.backup", {"path": os.path.abspath("b.db")})


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "edit", "a", "--set", "retries"],
        ["jobs", "edit", "a", "--set", "=3"],
        ["jobs", "edit", "a", "--set", "action..argv=1"],
        ["jobs", "backfill", "a", "--since", T1],
        ["backup"],
    ],
)
def test_bad_command_lines_are_usage_errors(argv: list[str]) -> None:
    """A malformed KEY=VALUE or a missing required option exits 2 without a request."""
    assert main(["--socket", "/nonexistent", *argv]) == 2


def out_of(view: str, result: Any) -> str:
    chunks: list[str] = []
    render(view, result, chunks.append)
    return "".join(chunks)


def test_views_read_as_sentences_and_tables() -> None:
    """explain prints one sentence per reason under a heading; backfill and backup one line;
    edit the revision; audit a table."""
    text = out_of(
        "explain",
        {
            "name": "a",
            "state": "enabled",
            "next_fire": "2026-01-05T10:00:00.000Z",
            "reasons": [{"code": "scheduled", "message": "Next fire at 10:00."}],
        },
    )
    assert text == "Job a is enabled; next fire 2026-01-05 10:00:00Z.\n- Next fire at 10:00.\n"
    assert out_of("backfill", {"count": 12, "runs": [], "existing": 0}) == (
        "created 12 backfill run(s)\n"
    )
    dry = out_of("backfill", {"count": 1, "dry_run": True, "fires": [T1], "existing": 2})
    assert dry == "would create 1 run(s) (2 fire(s) already had a run): 2026-01-05 10:00:00Z\n"
    edited = out_of("job_updated", {"name": "a", "revision": 3, "override": True})
    assert edited == "updated job a: revision 3 (overrides the config file)\n"
    assert (
        out_of("backup", {"path": "/b.db", "bytes": 10}) == "backup written to /b.db (10 bytes)\n"
    )
    table = out_of(
        "audit",
        [
            {
                "at": T1,
                "uid": 0,
                "user": "root",
                "cmd": "jobs.update",
                "target": "a",
                "outcome": "ok",
            }
        ],
    )
    assert table.splitlines()[0].split() == ["AT", "UID", "USER", "CMD", "TARGET", "OUTCOME"]
    assert "jobs.update" in table and "root" in table
