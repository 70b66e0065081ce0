"""What a packager and a new user find: one version, the licence, a changelog, project URLs,
and a unit whose Documentation= points at things that are installed."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import automationd

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_version_is_written_once_and_read_from_metadata(bin_dir: Path) -> None:
    """pyproject.toml holds the version; the package, both --version flags and nothing else
    in the source repeat it."""
    assert automationd.__version__ == PROJECT["version"]
    for exe in ("automationd", "automationctl"):
        out = subprocess.run(
            [str(bin_dir / exe), "--version"], capture_output=True, text=True, timeout=30,
            check=True,
        ).stdout  # fmt: skip
        assert out == f"{exe} {PROJECT['version']}\n"
    literal = re.compile(r"""__version__\s*=\s*["']""")
    for path in (ROOT / "automationd").rglob("*.py"):
        assert not literal.search(path.read_text()), f"{path}: a second copy of the version"


def test_license_and_changelog() -> None:
    """LICENSE is the MIT text pyproject names; CHANGELOG.md keeps the Keep a Changelog shape
    with an Unreleased section and the released version."""
    assert PROJECT["license"] == "MIT"
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "WITHOUT WARRANTY" in license_text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog
    assert "## [Unreleased]" in changelog
    assert f"## [{PROJECT['version']}] - " in changelog
    for heading in re.findall(r"^### (.+)$", changelog, re.M):
        assert heading in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_project_urls_and_unit_documentation() -> None:
    """pyproject names the project's URLs; the unit's Documentation= names the installed man
    page and that homepage; the man pages it names are the ones pyproject installs."""
    urls = PROJECT["urls"]
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls)
    unit = (ROOT / "systemd" / "automationd.service").read_text()
    docs = " ".join(re.findall(r"^Documentation=(.+)$", unit, re.M)).split()
    assert "man:automationd(8)" in docs and urls["Homepage"] in docs
    assert not any(d.startswith("file:") for d in docs)
    data = PYPROJECT["tool"]["setuptools"]["data-files"]
    installed = {Path(f).name for files in data.values() for f in files}
    for doc in docs:
        if m := re.fullmatch(r"man:([\w-]+)\((\d)\)", doc):
            assert f"{m[1]}.{m[2]}" in installed
            assert (ROOT / "man" / f"man{m[2]}" / f"{m[1]}.{m[2]}").is_file()


def test_runtime_dependencies_exclude_tools() -> None:
    """The daemon's own dependencies hold no test, lint or bench tool (those are extras)."""
    names = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in PROJECT["dependencies"]}
    tools = {"pytest", "mypy", "ruff", "hypothesis", "huey", "apscheduler", "sqlalchemy"}
    assert not names & tools
    extras = PROJECT["optional-dependencies"]
    assert {"mypy", "pytest"} <= {re.split(r"[<>=]", d)[0] for d in extras["dev"]}
    assert "huey" in {re.split(r"[<>=]", d)[0] for d in extras["bench"]}
