"""Man pages and help texts come from the parsers: every subcommand and flag is documented."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from automationd import cli, ctl
from automationd.manpage import esc, leaves, pages, render

ROOT = Path(__file__).resolve().parents[2]
PARSERS = {"automationd": cli.build_parser, "automationctl": ctl.build_parser}
SPEC_COMMANDS = {  # SPEC §1, and the completion command
    "automationd": {"run", "check-config"},
    "automationctl": {
        "status", "limits", "breakers", "reload", "completion",
        *(f"jobs {a}" for a in ("list", "show", "add", "remove", "pause", "resume", "trigger")),
        *(f"runs {a}" for a in ("list", "show", "logs", "cancel", "retry")),
        *(f"dlq {a}" for a in ("list", "retry", "purge")),
        *(f"events {a}" for a in ("list", "publish", "replay")),
    },
}  # fmt: skip


def all_parsers(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``p`` and every parser below it (groups such as ``jobs`` included)."""
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from all_parsers(child)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_committed_pages_are_current(page: object) -> None:
    """man/NAME.SECTION is exactly what the generator writes from today's parsers."""
    from automationd.manpage import Page

    assert isinstance(page, Page)
    path = ROOT / "man" / f"man{page.section}" / f"{page.name}.{page.section}"
    assert path.read_text() == render(page), f"{path} is stale: run `make man`"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_subcommand_has_its_own_section(page: object) -> None:
    """Each runnable subcommand (``jobs list``, ``completion``, …) is a subsection of
    COMMANDS, with its help text."""
    from automationd.manpage import Page

    assert isinstance(page, Page)
    text = render(page)
    paths = list(leaves(page.parser))
    assert {" ".join(p) for p, _, _ in paths} >= SPEC_COMMANDS[page.name]
    for path, help_text, sub in paths:
        assert f'.SS "{esc(" ".join(path))}"\n' in text, path
        assert help_text and esc((sub.description or help_text).split("\n")[0]) in text, path
    for heading in ("NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "EXIT STATUS", "SEE ALSO"):
        assert f".SH {heading}\n" in text


@pytest.mark.parametrize("prog", sorted(PARSERS))
def test_every_flag_and_argument_has_help(prog: str) -> None:
    """No argument of any (sub)command is undocumented; state filters list their states and
    time options say their format."""
    for parser in all_parsers(PARSERS[prog]()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help is not argparse.SUPPRESS, where
            if action.dest == "state":
                assert action.choices, f"{where}: list the allowed states"
            if action.dest in ("since", "until") and "--since" in action.option_strings:
                assert "RFC 3339" in action.help and "1h30m" in action.help, where


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_groff_renders_without_warnings(page: object, tmp_path: Path) -> None:
    """groff -man with all warnings on is silent for the generated page."""
    from automationd.manpage import Page

    assert isinstance(page, Page)
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (.ci/run installs groff-base)")
    source = tmp_path / f"{page.name}.{page.section}"
    source.write_text(render(page))
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(source)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert f"{page.name} - " in proc.stdout.replace("\u2010", "-")


def test_roff_escapes_hyphens_backslashes_and_leading_dots() -> None:
    """Text that roff would read as requests or hyphenation points is escaped."""
    assert esc("--json") == "\\-\\-json"
    assert esc("a\\b") == "a\\eb"
    assert esc(".x\n'y\nz") == "\\&.x\n\\&'y\nz"
