"""Job keys of previews and rollback: ``undo``, ``on_failure``, ``preview_ttl`` (SPEC §7.2)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from automationd.config.load import load_config
from automationd.config.model import PREVIEW_TTL, ExecAction, OnFailure
from automationd.config.table import job_table
from tests.unit.test_config_load import JOB, load_error, write

UNDO = 'undo = { type = "exec", argv = ["/bin/false"] }\n'


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


def test_defaults_without_the_keys(tmp_path: Path) -> None:
    """A job that sets none of them has no undo, on_failure none and a one-hour preview TTL."""
    (job,) = load_config(write(tmp_path, JOB)).jobs
    assert (job.undo, job.on_failure, job.preview_ttl) == (None, OnFailure.NONE, PREVIEW_TTL)
    assert PREVIEW_TTL == 3600.0


def test_keys_are_read_and_written_back(tmp_path: Path) -> None:
    """undo is an action like action; the table rebuilt from the job says the same again."""
    text = JOB + UNDO + 'on_failure = "rollback"\npreview_ttl = "90s"\n'
    (job,) = load_config(write(tmp_path, text)).jobs
    assert job.undo == ExecAction(argv=("/bin/false",), env={})
    assert (job.on_failure, job.preview_ttl) == (OnFailure.ROLLBACK, 90.0)
    table = job_table(job)
    assert table["undo"] == {"type": "exec", "argv": ["/bin/false"]}
    assert (table["on_failure"], table["preview_ttl"]) == ("rollback", "1m30s")


def test_jobs_differing_only_in_these_keys_do_not_share_rules(tmp_path: Path) -> None:
    """Jobs that share their other rules keep their own undo, on_failure and preview_ttl."""
    b = JOB.replace('name = "a"', 'name = "b"') + "max_runs = 2\n" + UNDO
    c = JOB.replace('name = "a"', 'name = "c"') + 'max_runs = 2\npreview_ttl = "5m"\n'
    a = JOB + "max_runs = 2\n"
    jobs = load_config(write(tmp_path, a + b + c)).jobs
    assert [j.undo is not None for j in jobs] == [False, True, False]
    assert [j.preview_ttl for j in jobs] == [PREVIEW_TTL, PREVIEW_TTL, 300.0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('on_failure = "rollback"\n', "jobs[0].on_failure: 'rollback' needs an 'undo' action"),
        ('on_failure = "retry"\n', "jobs[0].on_failure: expected one of none | rollback"),
        ('preview_ttl = "0s"\n', "jobs[0].preview_ttl"),
        ('preview_ttl = "soon"\n', "jobs[0].preview_ttl: bad duration 'soon'"),
        ('undo = { type = "exec" }\n', "jobs[0].undo.argv: missing"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, extra: str, expected: str) -> None:
    """A bad value is one ConfigError line naming the job's key."""
    assert expected in load_error(write(tmp_path, JOB + extra))
