"""`automationctl` for previews, apply, rollback and the DLQ summary: requests and views."""

from __future__ import annotations

from typing import Any

import pytest

from automationd.ctl import build_parser, main, request_of
from automationd.ctl_render import VIEWS

PREVIEW: dict[str, Any] = {
    "id": "R1",
    "job": "prices",
    "state": "previewed",
    "trigger": "preview",
    "plan": {"hash": "ab" * 32, "targets": ["sku-1", "sku-2"], "payload": {"rule": "10%"}},
}


@pytest.mark.parametrize(
    ("argv", "cmd", "args"),
    [
        (["jobs", "trigger", "a", "--dry-run"], "jobs.trigger", {"name": "a", "dry_run": True}),
        (["jobs", "apply", "R1"], "jobs.trigger", {"apply": "R1"}),
        (["jobs", "apply", "R1", "--job", "a"], "jobs.trigger", {"apply": "R1", "name": "a"}),
        (["runs", "rollback", "R1"], "runs.rollback", {"id": "R1"}),
        (["dlq", "summary"], "dlq.summary", {}),
        (
            ["dlq", "summary", "--job", "a", "--kind", "fatal"],
            "dlq.summary",
            {"job": "a", "kind": "fatal"},
        ),
        (
            ["dlq", "retry", "--kind", "fatal", "--job", "a"],
            "dlq.retry",
            {"job": "a", "kind": "fatal"},
        ),
        (
            ["dlq", "purge", "--since", "2026-01-01T00:00:00Z"],
            "dlq.purge",
            {"since": "2026-01-01T00:00:00Z"},
        ),
    ],
)
def test_argv_maps_to_socket_request(argv: list[str], cmd: str, args: dict[str, Any]) -> None:
    """Each new subcommand sends its SPEC §7.2 cmd with exactly the given args."""
    assert request_of(build_parser().parse_args(argv)) == (cmd, args)


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "retry", "D1", "--kind", "fatal"],
        ["dlq", "purge", "--all", "--job", "a"],
        ["jobs", "apply"],
    ],
)
def test_mixed_dlq_choices_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An id with filters, --all with filters, or apply without a run id exit 2."""
    assert main(["--socket", "/nonexistent/x.sock", *argv]) == 2
    assert "usage:" in capsys.readouterr().err


def test_preview_view_shows_the_plan_and_how_to_apply() -> None:
    """A dry run prints its plan: target count, hash, payload, targets, the apply command."""
    out = VIEWS["triggered"](PREVIEW)
    assert "preview run R1 of job prices (state: previewed)" in out
    assert "2 target(s); hash abababab" in out and '{"rule":"10%"}' in out
    assert "  sku-1\n  sku-2\n" in out and "automationctl jobs apply R1" in out


def test_apply_rollback_and_summary_views() -> None:
    """A stale apply shows its reason; a rollback its count; the summary its columns."""
    stale = {"id": "R2", "origin": "R1", "state": "stale", "existing": True,
             "error": {"kind": "stale", "message": "plan is stale: payload changed"}}  # fmt: skip
    out = VIEWS["applied"](stale)
    assert "apply of preview R1: run R2 (state: stale) (this preview was applied before)" in out
    assert "error: stale: plan is stale: payload changed" in out
    rolled = {"id": "R3", "job": "j", "state": "rolled_back", "targets": {"rolled_back": 3}}
    assert VIEWS["run_rolled_back"](rolled) == "run R3 of job j: rolled_back (3 target(s) undone)\n"
    rows = [{"job": "j", "kind": "fatal", "count": 4, "oldest": "2026-01-01T00:00:00.000Z",
             "newest": "2026-01-02T00:00:00.000Z", "sample": "rejected"}]  # fmt: skip
    header, row = VIEWS["dlq_summary"](rows).splitlines()
    assert header.split() == ["JOB", "KIND", "COUNT", "OLDEST", "NEWEST", "SAMPLE"]
    assert row.split()[:3] == ["j", "fatal", "4"] and "rejected" in row
