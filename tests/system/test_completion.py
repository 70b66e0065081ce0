"""`automationctl completion bash|zsh|fish` prints scripts that the real shells accept and
that complete our commands (the installed console script, run as a user would)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from automationd import ctl
from automationd.manpage import leaves


def script(bin_dir: Path, shell: str) -> str:
    proc = subprocess.run(
        [str(bin_dir / "automationctl"), "completion", shell],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")
    return proc.stdout


def shell_out(argv: list[str], env_path: Path) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": f"{env_path}:/usr/bin:/bin", "HOME": "/nonexistent"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_script_names_every_subcommand(bin_dir: Path, shell: str) -> None:
    """Each shell's script mentions every command and subcommand of the parser."""
    text = script(bin_dir, shell)
    for path, _, _ in leaves(ctl.build_parser()):
        for word in path:
            assert word in text, (shell, path)
    assert "automationctl" in text


def test_bash_completes_commands_subcommands_and_states(bin_dir: Path, tmp_path: Path) -> None:
    """Sourced into bash, the script completes `jo` to `jobs`, `jobs ` to its actions and
    `runs list --state ` to the run states."""
    path = tmp_path / "automationctl.bash"
    path.write_text(script(bin_dir, "bash"))

    def complete(*words: str) -> list[str]:
        quoted = " ".join(f"'{w}'" for w in words)
        out = shell_out(
            ["bash", "-c", f'source {path}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1};'
             ' _shtab_automationctl; printf "%s\\n" "${COMPREPLY[@]}"'],
            bin_dir,
        )  # fmt: skip
        return out.split()

    assert complete("automationctl", "jo") == ["jobs"]
    assert {"list", "show", "trigger", "pause"} <= set(complete("automationctl", "jobs", ""))
    assert set(complete("automationctl", "runs", "list", "--state", "")) >= {
        "queued", "running", "failed", "succeeded"
    }  # fmt: skip


def test_fish_completes_subcommands(bin_dir: Path) -> None:
    """fish, given the script, offers the `jobs` actions with their descriptions."""
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (.ci/run installs it)")
    out = shell_out(
        ["fish", "--no-config", "-c",
         'automationctl completion fish | source; complete -C "automationctl jobs "'],
        bin_dir,
    )  # fmt: skip
    offered = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    assert {"list", "show", "trigger"} <= set(offered)
    assert offered["trigger"].startswith("start a run now")


def test_zsh_registers_the_completion(bin_dir: Path) -> None:
    """zsh parses the script, and evaluated after compinit it registers for automationctl."""
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (.ci/run installs it)")
    out = shell_out(
        ["zsh", "-fc", "autoload -Uz compinit; compinit -u -D; "
         'eval "$(automationctl completion zsh)"; print -r -- $_comps[automationctl]'],
        bin_dir,
    )  # fmt: skip
    assert out.strip() == "_shtab_automationctl"
