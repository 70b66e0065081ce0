"""The documents stand alone: the README opens with what a new user needs, every file and
anchor they link to exists, and the interface reference covers every command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from automationd import cli, ctl
from automationd.manpage import leaves

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "reference.md"
DOCS = [README, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *sorted(ROOT.glob("docs/*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith((".venv", "var"))}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_opens_with_title_sentence_and_the_two_commands() -> None:
    """Title, one sentence, then `make run` and `make test` before anything else."""
    head = README.read_text().split("\n## ", 1)[0]
    lines = [line for line in head.splitlines() if line.strip()]
    assert lines[0] == "# automationd"
    sentence = " ".join(lines[1 : lines.index(next(x for x in lines if x.startswith("    ")))])
    assert sentence.endswith(".") and sentence.count(". ") == 0, sentence
    commands = [x.split("#")[0].strip() for x in lines if x.startswith("    ")]
    assert commands[:2] == ["make run", "make test"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_linked_file_and_anchor_exists(doc: Path) -> None:
    """Each relative link resolves to a file in the repository, and `#anchor`s to a heading
    of that file; backticked repository paths (`etc/…`, `tests/…`, …) exist too."""
    text = doc.read_text()
    checked = 0
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        assert path.exists(), f"{doc.name} links to missing {target}"
        assert ROOT in path.parents or path == ROOT, f"{doc.name}: {target} leaves the repo"
        if anchor:
            assert anchor in anchors(path), f"{doc.name}: no heading for {target}"
        checked += 1
    for token in re.findall(r"`([^`\s]+)`", text):
        first = token.split("/", 1)[0]
        if "/" in token and first in TOP and not token.startswith("/"):
            assert (ROOT / token.split(":")[0]).exists(), f"{doc.name} names missing {token}"
    if doc in (README, ROOT / "CONTRIBUTING.md"):
        assert checked >= 5


def test_readme_cites_no_file_outside_the_repository() -> None:
    """The README names the reference in the repo, not a contract file that is not shipped;
    the internal working notes are gone."""
    text = README.read_text()
    assert "SPEC.md" not in text and "docs/reference.md" in text
    assert not (ROOT / "docs" / "TEAM.md").exists()


def test_contents_lists_every_section() -> None:
    """Every `##` section of the README has a line in its contents list."""
    text = README.read_text()
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = {a for target in LINK.findall(contents) for a in [target.partition("#")[2]] if a}
    for heading in re.findall(r"^## (.+)$", text, re.M):
        if heading != "Contents":
            assert slug(heading) in listed, f"section {heading!r} is missing from Contents"


def test_reference_covers_every_command() -> None:
    """docs/reference.md names every socket command of the command table and every
    automationctl and automationd subcommand."""
    text = REFERENCE.read_text()
    sources = (ROOT / "automationd" / "admin").glob("*.py")
    cmds = {c for p in sources for c in re.findall(r'Command\(\s*"([a-z._]+)"', p.read_text())}
    assert len(cmds) >= 20
    for cmd in cmds:
        assert f"`{cmd}`" in text, f"socket command {cmd} is not in docs/reference.md"
    for build, prog in ((ctl.build_parser, "automationctl"), (cli.build_parser, "automationd")):
        for path, _, _ in leaves(build()):
            words = " ".join(path)
            assert re.search(rf"`({prog} )?{re.escape(words)}\b", text), f"{prog} {words}"


def test_readme_config_examples_load(tmp_path: Path) -> None:
    """Each TOML example in the README is a config the daemon accepts as it stands (those
    naming a python callable need the reader's module, so they are left out)."""
    from automationd.config.load import load_config

    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    blocks = [b for b in blocks if '"python"' not in b]
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        config = load_config(path)
        assert config.jobs, block
