"""Broken configs: every one raises a single ConfigError line naming file and dotted key.

``BROKEN`` (with ``SYSTEM_CASES``) is shared with tests/system/test_cli_config.py, which
feeds the same files to the real ``automationd`` command.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_config_load import JOB, SERVICE, load_error, write


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The python-callable case puts the config folder on sys.path; undo that."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


# (case id, TOML text, dotted key path, exact problem or None when only the path is fixed)
BROKEN: list[tuple[str, str, str, str | None]] = [
    ("unknown-top-level", "bogus = 1\n" + JOB, "bogus", "unknown key"),
    (
        "unknown-nested",
        '[daemon]\nstate_dri = "x"\n',
        "daemon.state_dri",
        "unknown key (did you mean 'state_dir'?)",
    ),
    (
        "unknown-in-job",
        JOB + 'shedule = "@hourly"\n',
        "jobs[0].shedule",
        "unknown key (did you mean 'schedule'?)",
    ),
    (
        "unknown-in-action",
        '[[jobs]]\nname = "a"\non = "x"\naction = { type = "exec", arg = ["/bin/true"] }\n',
        "jobs[0].action.arg",
        "unknown key (did you mean 'argv'?)",
    ),
    (
        "unknown-in-service",
        SERVICE + "bursts = 3\n",
        "services.ads_api.bursts",
        "unknown key (did you mean 'burst'?)",
    ),
    (
        "bad-duration",
        JOB.replace('name = "a"', 'name = "b"') + JOB + 'backoff = { base = "2x" }\n',
        "jobs[1].backoff.base",
        "bad duration '2x'",
    ),
    ("bad-rate", '[services.ads_api]\nrate = "200/1x"\n', "services.ads_api.rate", None),
    ("bad-cron", JOB.replace("@every 1m", "61 * * * *"), "jobs[0].schedule", None),
    ("bad-cron-fields", JOB.replace("@every 1m", "* * *"), "jobs[0].schedule", None),
    (
        "bad-time-zone",
        JOB + 'timezone = "Mars/Base"\n',
        "jobs[0].timezone",
        "bad time zone 'Mars/Base'",
    ),
    (
        "bad-daemon-time-zone",
        '[daemon]\ntimezone = "Mars/Base"\n',
        "daemon.timezone",
        "bad time zone 'Mars/Base'",
    ),
    (
        "wrong-type",
        "[daemon]\nshutdown_timeout = 5\n",
        "daemon.shutdown_timeout",
        "expected a duration string, got 5",
    ),
    (
        "bool-is-not-int",
        "[workers]\nmax_concurrency = true\n",
        "workers.max_concurrency",
        "expected an integer, got true",
    ),
    ("duplicate-job-name", JOB + JOB, "jobs[1].name", "duplicate job name 'a'"),
    (
        "unknown-service",
        SERVICE + JOB + 'service = "nope"\n',
        "jobs[0].service",
        "unknown service 'nope' (known: ads_api)",
    ),
    (
        "missing-action",
        '[[jobs]]\nname = "a"\nschedule = "@hourly"\n',
        "jobs[0].action",
        "missing (every job needs an action table)",
    ),
    (
        "bad-job-name",
        JOB.replace('name = "a"', 'name = "Bad Name"'),
        "jobs[0].name",
        "bad job name 'Bad Name' (expected [a-z0-9][a-z0-9._-]{0,127})",
    ),
    (
        "python-callable-missing",
        '[[jobs]]\nname = "a"\non = "x"\n'
        'action = { type = "python", callable = "no_such_module_xyz:run" }\n',
        "jobs[0].action.callable",
        None,
    ),
    (
        "unknown-action-type",
        '[[jobs]]\nname = "a"\non = "x"\naction = { type = "ftp" }\n',
        "jobs[0].action.type",
        "unknown action type 'ftp' (expected exec, http or python)",
    ),
    (
        "bad-enum",
        '[defaults]\noverlap = "sometimes"\n',
        "defaults.overlap",
        "expected one of skip | queue | allow | cancel_previous, got 'sometimes'",
    ),
    (
        "argv-element-type",
        '[[jobs]]\nname = "a"\non = "x"\naction = { type = "exec", argv = ["/bin/echo", 5] }\n',
        "jobs[0].action.argv[1]",
        "expected a string, got 5",
    ),
    (
        "check-unknown-key",
        JOB + 'check = { type = "http", url = "https://x.example/", retries = 2 }\n',
        "jobs[0].check.retries",
        "unknown key",
    ),
    (
        "retry-budget-range",
        SERVICE + "retry_budget = 1.5\n",
        "services.ads_api.retry_budget",
        "must be at most 1, got 1.5",
    ),
    (
        "breaker-failures",
        SERVICE + 'breaker = { failures = 0, reset = "1m" }\n',
        "services.ads_api.breaker.failures",
        "must be at least 1, got 0",
    ),
    (
        "jobs-not-array",
        '[jobs]\nname = "a"\n',
        "jobs",
        "expected an array of tables ([[jobs]]), got a table",
    ),
]

BROKEN_TOML = '[daemon\nstate_dir = "x"\n'

# The cases the system test also runs through the real command (each costs two processes).
SYSTEM_CASES = frozenset(
    {
        "unknown-top-level",
        "unknown-nested",
        "unknown-in-job",
        "unknown-in-action",
        "bad-duration",
        "bad-rate",
        "bad-cron",
        "bad-time-zone",
        "wrong-type",
        "duplicate-job-name",
        "unknown-service",
        "missing-action",
        "bad-job-name",
        "python-callable-missing",
    }
)


@pytest.mark.parametrize(("case", "text", "key", "problem"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_config_names_file_and_key(
    tmp_path: Path, case: str, text: str, key: str, problem: str | None
) -> None:
    """Each broken config raises one ConfigError line "FILE: dotted.key: problem"."""
    path = write(tmp_path, text)
    message = load_error(path)
    assert "\n" not in message
    if problem is None:
        assert message.startswith(f"{path}: {key}: "), message
        assert len(message) > len(f"{path}: {key}: ")
    else:
        assert message == f"{path}: {key}: {problem}"


def test_broken_toml(tmp_path: Path) -> None:
    """A TOML syntax error reads "FILE: invalid TOML: <parser message with line>"."""
    path = write(tmp_path, BROKEN_TOML)
    message = load_error(path)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 1" in message and "\n" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the file, not an OSError."""
    path = tmp_path / "missing.toml"
    assert load_error(path) == f"{path}: cannot read: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported as invalid TOML."""
    path = tmp_path / "a.toml"
    path.write_bytes(b'[daemon]\nadmin_group = "\xff"\n')
    assert load_error(path).startswith(f"{path}: invalid TOML: not UTF-8")


MORE_BROKEN = [
    ('[daemon]\nlog_format = "xml"\n', "daemon.log_format: expected one of json | console"),
    ('[daemon]\nlog_level = "trace"\n', "daemon.log_level: expected one of debug | info"),
    ('[daemon]\nmetrics_listen = "9464"\n', "daemon.metrics_listen: expected HOST:PORT"),
    ("[defaults]\nretries = -1\n", "defaults.retries: must be at least 0, got -1"),
    ('[defaults]\ntimeout = "0s"\n', "defaults.timeout: must be positive, got '0s'"),
    (
        "[defaults]\nbackoff = { multiplier = 0.5 }\n",
        "defaults.backoff.multiplier: must be at least 1, got 0.5",
    ),
    ("[defaults]\nbackoff = { jitter = 2 }\n", "defaults.backoff.jitter: must be at most 1, got 2"),
    (
        '[defaults]\nbackoff = { base = "2m" }\n',
        "defaults.backoff.max: must be at least base (120s), got 64s",
    ),
    (SERVICE + "burst = 0\n", "services.ads_api.burst: must be at least 1, got 0"),
    (SERVICE + "concurrency = 1.5\n", "services.ads_api.concurrency: expected an integer, got 1.5"),
    ('[services.ads_api]\nrate = "10/s"\nbreaker = 5\n', "services.ads_api.breaker: expected a"),
    ('[services]\nads_api = "x"\n', "services.ads_api: expected a table, got 'x'"),
    ('[[jobs]]\nname = "a"\naction = { type = "exec", argv = ["x"] }\n', "jobs[0]: a job needs"),
    (JOB + "max_runs = -1\n", "jobs[0].max_runs: must be at least 0, got -1"),
    (JOB + "priority = true\n", "jobs[0].priority: expected an integer, got true"),
    (JOB + 'jitter = "soon"\n', "jobs[0].jitter: bad duration 'soon'"),
    (JOB + "targets = []\n", "jobs[0].targets: must not be empty"),
    (JOB + "when = { region = 'eu' }\n", "jobs[0].when: needs 'on'"),
    (JOB + 'overlap = "never"\n', "jobs[0].overlap: expected one of skip | queue"),
    (JOB + 'misfire = "later"\n', "jobs[0].misfire: expected one of skip | run_once | run_all"),
    (JOB + 'verify = "yes"\n', "jobs[0].verify: expected a table, got 'yes'"),
    (JOB + "check = { url = 'https://x/' }\n", "jobs[0].check.type: missing"),
    (
        '[[jobs]]\nname = "a"\non = "x"\naction = { type = "exec", argv = [] }\n',
        "jobs[0].action.argv: expected a non-empty array of strings, got an array",
    ),
    (
        '[[jobs]]\nname = "a"\non = "x"\n'
        'action = { type = "exec", argv = ["x"], env = { A = 1 } }\n',
        "jobs[0].action.env.A: expected a string, got 1",
    ),
    (
        '[[jobs]]\nname = "a"\non = "x"\n'
        'action = { type = "exec", argv = ["x"], retryable_exit_codes = [75, 300] }\n',
        "jobs[0].action.retryable_exit_codes[1]: expected an integer in 0..255, got 300",
    ),
    (
        '[[jobs]]\nname = "a"\non = "x"\n'
        'action = { type = "exec", argv = ["x"], timeout = "0s" }\n',
        "jobs[0].action.timeout: must be positive",
    ),
    ('[[jobs]]\nname = "a"\non = "x"\naction = { type = "http" }\n', "jobs[0].action.url: missing"),
    (
        '[[jobs]]\nname = "a"\non = "x"\naction = { type = "http", url = "ftp://x" }\n',
        "jobs[0].action.url: expected an http:// or https:// URL",
    ),
    (
        '[[jobs]]\nname = "a"\non = "x"\n'
        'action = { type = "http", url = "https://x/", json = {}, body = "" }\n',
        "jobs[0].action.body: give either 'json' or 'body'",
    ),
    (
        '[[jobs]]\nname = "a"\non = "x"\n'
        'action = { type = "http", url = "https://x/", follow_redirects = "yes" }\n',
        "jobs[0].action.follow_redirects: expected true or false, got 'yes'",
    ),
    (
        '[[jobs]]\nname = "a"\non = "x"\naction = { type = "python", callable = "nocolon" }\n',
        "jobs[0].action.callable: expected 'package.module:function', got 'nocolon'",
    ),
    ('[[jobs]]\nname = 5\non = "x"\n', "jobs[0].name: bad job name 5"),
    ('[[jobs]]\non = "x"\n', "jobs[0].name: missing"),
    (JOB + 'schedule = ""\n', "invalid TOML"),  # a key given twice is a TOML error
    (JOB.replace("@every 1m", ""), "jobs[0].schedule: must not be empty"),
]


@pytest.mark.parametrize(("text", "start"), MORE_BROKEN)
def test_more_broken_configs(tmp_path: Path, text: str, start: str) -> None:
    """Range, enum, type and shape errors each name the offending key path."""
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: {start}"), message
    assert "\n" not in message
