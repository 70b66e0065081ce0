"""`make run`'s install step on a fresh venv installs what the daemon needs and nothing else.

The real Makefile target (`make install`, which `make run` depends on) runs with VENV
pointed at a temp dir: a real `python -m venv` and a real `pip install -e .` from the
package index (pip's cache makes a repeat quick, ~10 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"mypy", "huey", "apscheduler", "sqlalchemy", "pytest", "ruff", "hypothesis"}


def make(*argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-C", str(ROOT), *argv], capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


def test_make_run_installs_runtime_deps_only(tmp_path: Path) -> None:
    """1. `make install VENV=tmp` (the step `make run` runs first) on a fresh venv.
    2. List what it installed; run the installed scripts.
    3. Ask make what `run` and `test` would still do.
    Result: the daemon's deps are there and no dev or bench tool (mypy, huey, …); both
    scripts work; `run` has nothing left to install, while `test` would add the dev extra."""
    venv = tmp_path / "venv"
    args = [f"VENV={venv}", f"PY={getattr(sys, '_base_executable', sys.executable)}"]
    done = make("install", *args)
    assert done.returncode == 0, done.stdout + done.stderr

    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json",
         "--disable-pip-version-check"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"automationd", "aiohttp", "aiosqlite", "structlog", "shtab"} <= names
    assert not names & TOOLS, names & TOOLS

    demo = str(ROOT / "etc" / "automationd.toml")
    for argv in (["automationctl", "--version"], ["automationd", "check-config", demo]):
        proc = subprocess.run(
            [str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

    run_plan = make("-n", "run", *args).stdout
    assert "pip install" not in run_plan and "automationd run --config" in run_plan
    test_plan = make("-n", "test", *args).stdout
    assert "pip install" in test_plan and ".[dev]" in test_plan
