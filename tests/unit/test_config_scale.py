"""Config loading at scale (issue 4: 100,000 jobs, READY ≤ 3 s, RSS ≤ 150 MB): a big file is
parsed in pieces with the same result as in one go, jobs share equal values, config jobs keep
no copy of their table, and ``JobSpec.raw`` rebuilds one that loads back to the same job."""

from __future__ import annotations

import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from automationd.config import load as load_mod
from automationd.config.actions import parse_action
from automationd.config.jobs import parse_job
from automationd.config.load import load_config
from automationd.config.model import Config, Defaults, JobSpec, ServiceConfig
from automationd.config.shared import Shared
from automationd.errors import ConfigError

HEAD = '[services.api]\nrate = "10/s"\n\n[defaults]\nretries = 5\n'


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Python actions put the config folder on sys.path; undo that after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


def jobs_toml(n: int, start: int = 0) -> str:
    return "".join(
        f'[[jobs]]\nname = "j{i}"\nschedule = "{i % 60} {i % 24} * * *"\n'
        'action = { type = "exec", argv = ["/bin/true"] }\n'
        for i in range(start, start + n)
    )


def load_config_whole(path: Path) -> Config:
    """``load_config`` with piecewise parsing turned off."""
    real = load_mod._load_in_pieces

    def refuse(text: str, path: Path) -> Config:
        raise load_mod._Whole

    load_mod._load_in_pieces = refuse
    try:
        return load_config(path)
    finally:
        load_mod._load_in_pieces = real


def whole(path: Path) -> Config:
    """What the one-go parse (the pre-pieces behaviour) gives for ``path``."""
    return load_config_whole(path)


def test_big_file_in_pieces_equals_one_go(tmp_path: Path) -> None:
    """A file many pieces long loads in pieces, and the result equals the one-go parse."""
    path = tmp_path / "big.toml"
    path.write_text(HEAD + jobs_toml(6000))
    assert path.stat().st_size > 2 * load_mod._PIECE
    pieces = 0
    real = load_mod._parse_piece

    def counting(text: str) -> dict[str, object]:
        nonlocal pieces
        pieces += 1
        return real(text)

    load_mod._parse_piece = counting  # count the pieces parsed
    try:
        config = load_config(path)
    finally:
        load_mod._parse_piece = real
    assert pieces >= 3
    assert config == whole(path)
    assert [j.name for j in config.jobs] == [f"j{i}" for i in range(6000)]
    assert config.jobs[5999].retries == 5


@pytest.mark.parametrize(
    "tail",
    [
        '[daemon]\ntimezone = "Europe/Berlin"\n',  # a table after the jobs
        '[services.late]\nrate = "1/s"\n',
        "  [[jobs]]\n"  # an indented header
        'name = "indented"\nschedule = "@every 1m"\naction = { type = "exec", argv = ["x"] }\n',
        '[[jobs]]\nname = "multi"\nschedule = "@every 1m"\n'  # a multi-line string
        'action = { type = "http", url = "http://h/", body = """\n[[jobs]]\n""" }\n',
    ],
)
def test_files_that_are_not_plain_job_lists_load_as_before(tmp_path: Path, tail: str) -> None:
    """Anything but a head followed by plain [[jobs]] tables is parsed in one go, so the
    meaning never depends on where the pieces are cut."""
    path = tmp_path / "c.toml"
    path.write_text(HEAD + jobs_toml(3000) + tail + jobs_toml(10, start=3000))
    assert load_config(path) == whole(path)


def test_syntax_error_in_a_late_piece_names_its_true_line(tmp_path: Path) -> None:
    """A TOML error far into a big file is reported by the one-go parse, with its line."""
    text = HEAD + jobs_toml(4000)
    line = text.count("\n") + 2
    path = tmp_path / "bad.toml"
    path.write_text(text + '[[jobs]]\nname = "x\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert f"line {line}" in message


def test_duplicate_name_across_pieces_is_named(tmp_path: Path) -> None:
    """A name used again pieces later is still a duplicate, reported at its second use."""
    path = tmp_path / "dup.toml"
    path.write_text(HEAD + jobs_toml(5000) + jobs_toml(1, start=7))
    with pytest.raises(ConfigError, match=r"jobs\[5000\]\.name: duplicate job name 'j7'"):
        load_config(path)


def test_jobs_share_equal_values_and_keep_no_table(tmp_path: Path) -> None:
    """Jobs that say the same thing hold the same schedule string, action and rules; a
    config job keeps no copy of its TOML table."""
    path = tmp_path / "s.toml"
    path.write_text(HEAD + jobs_toml(200))
    jobs = load_config(path).jobs
    a, b = jobs[0], jobs[120]  # same schedule: 120 % 60 == 0 and 120 % 24 == 0
    assert a.schedule == b.schedule and a.schedule is b.schedule
    assert a.action is b.action and a.rules is b.rules
    assert all(j.written is None for j in jobs)


def test_shared_action_lookup_never_skips_validation() -> None:
    """Only validated argvs are remembered: a bad argv is rejected even after a good one."""
    shared = Shared()
    good = parse_action({"type": "exec", "argv": ["ls"]}, "j", "action", Path("/"), shared)
    again = parse_action({"type": "exec", "argv": ["ls"]}, "j", "action", Path("/"), shared)
    assert good is again
    with pytest.raises(ConfigError, match=r"^j\.action\.argv\[0\]: must not be empty"):
        parse_action({"type": "exec", "argv": [""]}, "j", "action", Path("/"), shared)
    with pytest.raises(ConfigError, match=r"^j\.action\.argv\[0\]: expected a string"):
        parse_action({"type": "exec", "argv": [["ls"]]}, "j", "action", Path("/"), shared)


FULL_JOB = """
    [services.api]
    rate = "10/s"

    [[jobs]]
    name = "full"
    schedule = "*/5 * * * *"
    on = "inventory.*"
    when = { region = "eu" }
    timezone = "Europe/Berlin"
    service = "api"
    priority = 3
    jitter = "1500ms"
    max_runs = 7
    targets = [{ id = 1 }, { id = 2 }]
    timeout = "90s"
    retries = 2
    backoff = { base = "1s", max = "30s", multiplier = 3.0, jitter = 0.1 }
    overlap = "queue"
    misfire = "run_all"
    misfire_grace = "2m"
    action = { type = "http", method = "post", url = "http://h/x", headers = { A = "b" }, json = { k = [1] }, timeout = "5s", expect = [404], follow_redirects = true }
    check = { type = "exec", argv = ["/bin/test", "-f", "x"], env = { E = "1" }, cwd = "/tmp", timeout = "2s", retryable_exit_codes = [75] }
    verify = { type = "exec", argv = ["/bin/true"] }
"""  # noqa: E501 - one TOML line per table, as an operator writes it


def test_raw_of_a_config_job_loads_back_to_the_same_job(tmp_path: Path) -> None:
    """``raw`` of a config job (shown by ``jobs.get``) is a table ``parse_job`` turns back
    into an equal job, every setting included."""
    path = tmp_path / "full.toml"
    path.write_text(textwrap.dedent(FULL_JOB))
    config = load_config(path)
    job = config.jobs[0]
    table = job.raw
    assert table["action"]["json"] == {"k": [1]} and table["backoff"]["base"] == "1s"
    again = parse_job(
        dict(table),
        where="job",
        defaults=config.defaults,
        services=config.services,
        base_dir=tmp_path,
        default_tz="UTC",
    )
    assert again == job


def test_api_job_keeps_its_table_as_written_or_as_stored_text() -> None:
    """An API job persists its table as given; loaded from the store it keeps the JSON text
    and ``raw`` decodes it."""
    kwargs = {
        "where": "job",
        "defaults": Defaults(),
        "base_dir": Path("/"),
        "default_tz": "UTC",
        "services": {"api": ServiceConfig(name="api")},
    }
    raw = {"name": "a", "on": "x.*", "action": {"type": "exec", "argv": ["ls"]}}
    job = parse_job(raw, source="api", **kwargs)  # type: ignore[arg-type]
    assert job.raw is raw
    text = '{"name":"a","on":"x.*","action":{"type":"exec","argv":["ls"]}}'
    stored = parse_job(raw, source="api", written=text, **kwargs)  # type: ignore[arg-type]
    assert stored.written is text and stored.raw == raw and stored == job


def test_jobspec_keywords_still_build_a_job() -> None:
    """``JobSpec(...)`` with every setting as a keyword reads them back as attributes."""
    a = parse_action({"type": "exec", "argv": ["ls"]}, "j", "action", Path("/"))
    spec = JobSpec(name="k", action=a, schedule="@every 1m", retries=9, timezone="Asia/Tokyo")
    assert (spec.retries, spec.timezone, spec.timeout, spec.on) == (9, "Asia/Tokyo", 300.0, None)
    assert spec == JobSpec(
        name="k", action=a, schedule="@every 1m", retries=9, timezone="Asia/Tokyo"
    )
    assert spec != JobSpec(name="k", action=a, schedule="@every 1m")


def test_loaded_jobs_are_small(tmp_path: Path) -> None:
    """10,000 config jobs hold under 300 bytes each once loaded (a job record, its name and
    its place in the tuple; the parser's output is gone), so 100,000 fit the RSS budget."""
    path = tmp_path / "m.toml"
    path.write_text(HEAD + jobs_toml(10_000))
    load_config(path)  # warm the caches (zones, schedules, durations) outside the count
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        config = load_config(path)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(config.jobs) == 10_000
    per_job = (after - before) / 10_000
    assert per_job < 300, f"{per_job:.0f} bytes per loaded job"
