"""Config loading: a good file round-trips into frozen records with defaults inherited and
relative paths resolved; python callables, the admin socket's parse_job and load speed.
Broken configs live in test_config_errors.py."""

from __future__ import annotations

import gc
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from automationd.config.load import load_config, parse_job
from automationd.config.model import (
    Backoff,
    BreakerConfig,
    Defaults,
    ExecAction,
    HttpAction,
    Misfire,
    Overlap,
    PythonAction,
    ServiceConfig,
)
from automationd.errors import ConfigError
from automationd.units import Rate

JOB = (
    '[[jobs]]\nname = "a"\nschedule = "@every 1m"\n'
    'action = { type = "exec", argv = ["/bin/true"] }\n'
)
SERVICE = '[services.ads_api]\nrate = "200/1h"\n'


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Python actions put the config folder on sys.path; undo that after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield


def write(tmp_path: Path, text: str, name: str = "a.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty file is a valid config with the SPEC defaults and no jobs."""
    config = load_config(write(tmp_path, ""))
    assert config.jobs == ()
    assert config.defaults == Defaults()
    assert config.workers.max_concurrency == 16
    assert config.daemon.shutdown_timeout == 30.0
    assert config.daemon.timezone == "UTC"
    assert config.retention.runs_max_age == 30 * 86400
    assert config.path == tmp_path / "a.toml"


GOOD = """\
[daemon]
state_dir = "../var"
admin_socket = "run/admin.sock"
admin_group = "automation"
metrics_listen = ""
timezone = "Europe/Berlin"
shutdown_timeout = "5s"
log_format = "console"
log_level = "debug"

[workers]
max_concurrency = 3

[retention]
runs_max_age = "2d"
events_max_age = "12h"

[defaults]
timeout = "1m"
retries = 4
backoff = { base = "1s", max = "30s" }
overlap = "queue"
misfire = "skip"
misfire_grace = "10s"

[services.ads_api]
rate = "200/1h"
burst = 20
concurrency = 4
breaker = { failures = 5, reset = "60s" }
rate_limited_backoff = { base = "8s" }
max_retry_after = "30m"
retry_budget = 0.25
retry_budget_floor = "5/s"

[services.bare]

[[jobs]]
name = "inherits"
schedule = "0 */6 * * *"
[jobs.action]
type = "exec"
argv = ["/bin/echo", "hi"]
cwd = "work"
env = { A = "1" }
retryable_exit_codes = [75, 69]

[[jobs]]
name = "overrides.all"
schedule = "*/10 * * * * *"
on = "inventory.*"
when = { region = "eu" }
timezone = "America/New_York"
service = "ads_api"
priority = -2
jitter = "500ms"
max_runs = 3
targets = ["sku-1", { id = 2 }]
timeout = "2h"
retries = 0
backoff = { multiplier = 3.0 }
overlap = "cancel_previous"
misfire = "run_all"
misfire_grace = "0s"
check = { type = "http", url = "https://api.example/changes" }
verify = { type = "exec", argv = ["/bin/true"] }

[jobs.action]
type = "http"
method = "post"
url = "https://api.example/${job}"
headers = { X = "y" }
json = { a = [1, 2] }
timeout = "3s"
expect = [304]
follow_redirects = true

[[jobs]]
name = "event-only"
on = "inventory.changed"
action = { type = "exec", argv = ["/bin/true"], cwd = "/abs/dir" }
"""


def test_good_config_round_trip(tmp_path: Path) -> None:
    """Every SPEC key lands in its record: relative paths resolve against the file's folder,
    jobs inherit [defaults] (partial backoff merges key by key) and the daemon zone."""
    folder = tmp_path / "etc"
    folder.mkdir()
    config = load_config(write(folder, GOOD))

    d = config.daemon
    assert d.state_dir == (tmp_path / "var").resolve()
    assert d.admin_socket == (folder / "run" / "admin.sock").resolve()
    assert (d.admin_group, d.metrics_listen, d.timezone) == ("automation", "", "Europe/Berlin")
    assert (d.shutdown_timeout, d.log_format, d.log_level) == (5.0, "console", "debug")
    assert config.workers.max_concurrency == 3
    assert (config.retention.runs_max_age, config.retention.events_max_age) == (172800, 43200)
    assert config.defaults == Defaults(
        timeout=60.0,
        retries=4,
        backoff=Backoff(base=1.0, max=30.0, multiplier=2.0, jitter=0.2),
        overlap=Overlap.QUEUE,
        misfire=Misfire.SKIP,
        misfire_grace=10.0,
    )

    assert config.services["ads_api"] == ServiceConfig(
        name="ads_api",
        rate=Rate(200, 3600.0, "200/1h"),
        burst=20,
        concurrency=4,
        breaker=BreakerConfig(failures=5, reset=60.0),
        rate_limited_backoff=Backoff(base=8.0, max=64.0, multiplier=2.0, jitter=0.2),
        max_retry_after=1800.0,
        retry_budget=0.25,
        retry_budget_floor=Rate(5, 1.0, "5/s"),
    )
    assert config.services["bare"] == ServiceConfig(name="bare")

    inherits, overrides, event_only = config.jobs
    assert inherits.name == "inherits" and inherits.source == "config"
    assert inherits.timezone == "Europe/Berlin"
    assert (inherits.timeout, inherits.retries) == (60.0, 4)
    assert inherits.backoff == config.defaults.backoff
    assert (inherits.overlap, inherits.misfire, inherits.misfire_grace) == (
        Overlap.QUEUE,
        Misfire.SKIP,
        10.0,
    )
    assert (inherits.on, inherits.service, inherits.targets, inherits.check) == (
        None,
        None,
        None,
        None,
    )
    assert inherits.action == ExecAction(
        argv=("/bin/echo", "hi"),
        env={"A": "1"},
        cwd=(folder / "work").resolve(),
        retryable_exit_codes=frozenset({69, 75}),
    )
    assert inherits.raw["action"]["argv"] == ["/bin/echo", "hi"]

    assert overrides.schedule == "*/10 * * * * *"
    assert (overrides.on, dict(overrides.when)) == ("inventory.*", {"region": "eu"})
    assert (overrides.timezone, overrides.service, overrides.priority) == (
        "America/New_York",
        "ads_api",
        -2,
    )
    assert (overrides.jitter, overrides.max_runs, overrides.targets) == (
        0.5,
        3,
        ("sku-1", {"id": 2}),
    )
    assert (overrides.timeout, overrides.retries) == (7200.0, 0)
    assert overrides.backoff == Backoff(base=1.0, max=30.0, multiplier=3.0, jitter=0.2)
    assert (overrides.overlap, overrides.misfire, overrides.misfire_grace) == (
        Overlap.CANCEL_PREVIOUS,
        Misfire.RUN_ALL,
        0.0,
    )
    assert overrides.action == HttpAction(
        method="POST",
        url="https://api.example/${job}",
        headers={"X": "y"},
        json={"a": [1, 2]},
        timeout=3.0,
        expect=(304,),
        follow_redirects=True,
    )
    assert overrides.check == HttpAction(url="https://api.example/changes")
    assert overrides.verify == ExecAction(argv=("/bin/true",))

    assert (event_only.schedule, event_only.on) == (None, "inventory.changed")
    assert isinstance(event_only.action, ExecAction)
    assert event_only.action.cwd == Path("/abs/dir")


def test_python_callable_resolved_from_config_folder(tmp_path: Path) -> None:
    """A python action's module next to the config file is importable and stored resolved."""
    module = f"cfg_actions_{abs(hash(tmp_path))}"
    (tmp_path / f"{module}.py").write_text("async def run(ctx):\n    return {'ok': True}\n")
    path = write(
        tmp_path,
        f'[[jobs]]\nname = "py"\non = "x"\n'
        f'action = {{ type = "python", callable = "{module}:run", timeout = "5s" }}\n',
    )
    job = load_config(path).jobs[0]
    assert isinstance(job.action, PythonAction)
    assert (job.action.callable, job.action.timeout) == (f"{module}:run", 5.0)
    assert job.action.fn is sys.modules[module].run
    assert sys.path[0] == str(tmp_path)


def test_python_callable_not_async_is_rejected(tmp_path: Path) -> None:
    """A plain (non-async) function is refused at load time under the callable's key."""
    module = f"cfg_sync_{abs(hash(tmp_path))}"
    (tmp_path / f"{module}.py").write_text("def run(ctx):\n    return {}\n")
    path = write(
        tmp_path,
        f'[[jobs]]\nname = "py"\non = "x"\n'
        f'action = {{ type = "python", callable = "{module}:run" }}\n',
    )
    assert load_error(path).startswith(f"{path}: jobs[0].action.callable: ")


def test_parse_job_for_admin_socket(tmp_path: Path) -> None:
    """parse_job validates one API job with errors under `job.` and no file prefix."""
    services = {"ads_api": ServiceConfig(name="ads_api")}
    kwargs = {
        "where": "job",
        "defaults": Defaults(retries=7),
        "services": services,
        "base_dir": tmp_path,
        "default_tz": "Asia/Tokyo",
    }
    raw = {"name": "api-job", "on": "x.*", "service": "ads_api", "action": {"type": "exec"}}
    with pytest.raises(ConfigError) as info:
        parse_job(raw, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == "job.action.argv: missing (a non-empty array of strings)"
    raw["action"] = {"type": "exec", "argv": ["/bin/true"]}
    job = parse_job(raw, source="api", **kwargs)  # type: ignore[arg-type]
    assert (job.name, job.source, job.retries, job.timezone) == ("api-job", "api", 7, "Asia/Tokyo")
    assert job.raw is raw
    with pytest.raises(ConfigError, match=r"^job\.nmae: unknown key"):
        parse_job({**raw, "nmae": 1}, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^job: expected a table"):
        parse_job([], **kwargs)  # type: ignore[arg-type]


def test_same_schedule_is_parsed_once(tmp_path: Path) -> None:
    """Thousands of jobs sharing a schedule and zone share one parsed Schedule."""
    from automationd.config.jobs import parsed_schedule

    assert parsed_schedule("*/5 * * * *", "Europe/Berlin") is parsed_schedule(
        "*/5 * * * *", "Europe/Berlin"
    )


def test_load_restores_gc_state(tmp_path: Path) -> None:
    """Loading pauses the cyclic GC for speed but always turns it back on, even on error."""
    assert gc.isenabled()
    load_config(write(tmp_path, JOB))
    assert gc.isenabled()
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "bogus = 1\n", "b.toml"))
    assert gc.isenabled()


def test_many_jobs_load_fast(tmp_path: Path) -> None:
    """10,000 jobs validate in well under a second beyond the TOML parse (a 100k-job file
    is the production target; this is the same code path at a tenth of the size)."""
    import time
    import tomllib

    from automationd.config.load import build_config

    chunks = ['[services.api]\nrate = "10/s"\n']
    schedules = ["*/5 * * * *", "@every 1m", "0 */6 * * *"]
    for i in range(10_000):
        chunks.append(
            f'[[jobs]]\nname = "job-{i}"\nschedule = "{schedules[i % 3]}"\nservice = "api"\n'
            f'timeout = "30s"\naction = {{ type = "exec", argv = ["/bin/echo", "{i}"] }}\n'
        )
    raw = tomllib.loads("".join(chunks))
    start = time.perf_counter()
    config = build_config(raw, path=tmp_path / "big.toml")
    elapsed = time.perf_counter() - start
    assert len(config.jobs) == 10_000
    assert elapsed < 1.0, f"validating 10k jobs took {elapsed:.2f}s"
