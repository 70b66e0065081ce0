"""Man pages automationd(8) and automationctl(1), written from the argparse parsers.

``python -m automationd.manpage DIR`` (``make man``) writes ``DIR/man8/automationd.8`` and
``DIR/man1/automationctl.1`` (a MANPATH layout: ``MANPATH=man man automationctl`` works in a
checkout); the pages in ``man/`` are installed to ``share/man`` and a test keeps them equal to
what this writes, so a new subcommand or flag reaches the page by ``make man``.

Why our own generator (see also pyproject.toml): each subcommand appears once, under COMMANDS,
with only its own arguments (the shared ``--socket``/``--json``/… are listed once, under
OPTIONS); the page carries no build date, so regenerating it is a no-op unless the parsers
changed; and the sections an operator looks for (EXIT STATUS, ENVIRONMENT, FILES, SIGNALS)
are written here beside the parser-derived ones.

argparse has no public API to walk a parser, so this reads ``_actions``,
``_mutually_exclusive_groups`` and ``_choices_actions``, as every such tool does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from automationd import cli, ctl


def homepage() -> str:
    """The Homepage URL from the installed metadata (written once, in pyproject.toml)."""
    from importlib.metadata import metadata

    entries: list[str] = metadata("automationd").get_all("Project-URL") or []
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "homepage":
            return url.strip()
    raise LookupError("pyproject.toml names no Homepage URL")


@dataclass(frozen=True, slots=True)
class Page:
    """One man page: the parser it documents and the sections written by hand."""

    name: str
    section: int
    summary: str
    parser: argparse.ArgumentParser
    extra: Sequence[tuple[str, str]]  # (SECTION TITLE, roff body)


def esc(text: str) -> str:
    """Plain text → roff: backslashes, hyphens (so they are not hyphenation points), and a
    leading period or quote that roff would take for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def _subparsers(
    p: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def leaves(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every runnable subcommand as (path, help, parser), in the order ``--help`` lists them."""
    sub = _subparsers(p)
    if sub is None:
        return
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    for name, child in sub.choices.items():
        if _subparsers(child) is None:
            yield (*path, name), helps.get(name, ""), child
        else:
            yield from leaves(child, (*path, name))


def _shared(root: argparse.ArgumentParser) -> set[str]:
    """Option strings of the top-level parser: documented once, skipped under each command."""
    return {s for a in root._actions for s in a.option_strings}


def _metavar(a: argparse.Action) -> str:
    if a.metavar is not None:
        return str(a.metavar)
    if a.choices is not None and not a.option_strings:
        return "{" + ",".join(map(str, a.choices)) + "}"
    return a.dest.upper() if a.option_strings else a.dest


def _term(a: argparse.Action) -> str:
    """``--since T`` / ``NAME`` as written in a usage line."""
    if not a.option_strings:
        return _metavar(a)
    flag = max(a.option_strings, key=len)
    return flag if a.nargs == 0 else f"{flag} {_metavar(a)}"


def usage(p: argparse.ArgumentParser, skip: set[str]) -> str:
    """The arguments of ``p`` as one usage line, without the shared options."""
    grouped = {id(a): g for g in p._mutually_exclusive_groups for a in g._group_actions}
    parts: list[str] = []
    done: set[int] = set()
    for a in _own(p, skip):
        g = grouped.get(id(a))
        if g is not None:
            if id(g) in done:
                continue
            done.add(id(g))
            alts = " | ".join(_term(x) for x in g._group_actions)
            parts.append(f"({alts})" if g.required else f"[{alts}]")
        elif (a.option_strings and not a.required) or a.nargs == "?":
            parts.append(f"[{_term(a)}]")
        else:
            parts.append(_term(a))
    return " ".join(parts)


def _own(p: argparse.ArgumentParser, skip: set[str]) -> list[argparse.Action]:
    return [
        a
        for a in p._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and a.help is not argparse.SUPPRESS
        and not (set(a.option_strings) & skip)
    ]


def _choices(a: argparse.Action) -> str:
    if a.choices is None or isinstance(a.choices, dict):
        return ""
    return f" (one of: {', '.join(map(str, a.choices))})"


def _arguments(actions: Sequence[argparse.Action]) -> list[str]:
    out: list[str] = []
    for a in actions:
        out += [".TP", f"\\fB{esc(_term(a))}\\fR", esc(f"{a.help or ''}{_choices(a)}".strip())]
    return out


def render(page: Page) -> str:
    """The page as roff (man(7) macros)."""
    root = page.parser
    shared = _shared(root)
    title = page.name.upper()
    lines = [
        f'.TH {title} {page.section} "" "automationd" "automationd manual"',
        ".SH NAME",
        f"{page.name} \\- {esc(page.summary)}",
        ".SH SYNOPSIS",
        f".B {page.name}",
        esc(f"{usage(root, {'-h', '--help'})} COMMAND [ARGUMENTS]"),
        ".SH DESCRIPTION",
        esc(root.description or ""),
        ".SH OPTIONS",
        *_arguments(_own(root, set())),
        ".SH COMMANDS",
    ]
    for path, help_text, sub in leaves(root):
        lines.append(f'.SS "{esc(" ".join(path))}"')
        line = usage(sub, shared)
        lines += [f".B {page.name} {esc(' '.join(path))}", esc(line)] if line else []
        lines += [".br", esc(sub.description or help_text)] if line else [esc(help_text)]
        lines += _arguments(_own(sub, shared))
    for heading, body in page.extra:
        lines += [f".SH {heading}", body.strip("\n")]
    return "\n".join(lines) + "\n"


def _ctl_extra() -> tuple[tuple[str, str], ...]:
    return (
        (
            "TIME FORMAT",
            r"""Times are printed as \fB2026\-12\-02 19:32:00Z\fR (UTC), or, when standard output is
a terminal and \fB\-\-utc\fR is not given, in local time with its offset
(\fB2026\-12\-02 20:32:00+01:00\fR). Relative times are added where they help
(\fBin 4m\fR, \fB3h ago\fR).
Time arguments (\fB\-\-since\fR, \fB\-\-until\fR) are RFC 3339 (\fB2026\-12\-02T19:32:00Z\fR)
or a duration meaning that long ago: \fB250ms\fR, \fB90s\fR, \fB15m\fR, \fB1h30m\fR, \fB7d\fR.
\fB\-\-json\fR prints the daemon's answer unchanged (RFC 3339 UTC times).""",
        ),
        (
            "EXIT STATUS",
            r""".TP
.B 0
The daemon answered ok.
.TP
.B 1
The daemon answered an error (printed as \fBerror: CODE: MESSAGE\fR on standard error).
.TP
.B 2
Usage error (bad command line).
.TP
.B 3
The socket could not be reached, or the daemon did not answer.""",
        ),
        (
            "ENVIRONMENT",
            r""".TP
.B AUTOMATIOND_SOCKET
The admin socket, when \fB\-\-socket\fR is not given.""",
        ),
        (
            "FILES",
            r""".TP
.I /run/automationd/admin.sock
The admin socket when neither \fB\-\-socket\fR nor \fBAUTOMATIOND_SOCKET\fR names one.""",
        ),
        (
            "EXAMPLES",
            r""".nf
automationctl status
automationctl jobs list \-\-state paused
automationctl jobs trigger sync\-inventory \-\-payload '{"full": true}'
automationctl runs list \-\-job sync\-inventory \-\-state failed
automationctl events replay \-\-since 1h \-\-name 'inventory.*'
\&. <(automationctl completion bash)
.fi""",
        ),
        (
            "SEE ALSO",
            rf"""\fBautomationd\fR(8),
the interface reference \fIdocs/reference.md\fR, {esc(homepage())}""",
        ),
    )


def _daemon_extra() -> tuple[tuple[str, str], ...]:
    return (
        (
            "SIGNALS",
            r""".TP
.B SIGTERM, SIGINT
Stop accepting new runs, let running attempts finish for up to \fBdaemon.shutdown_timeout\fR,
cancel the rest (they resume under the same run id at the next start) and exit 0.
A second SIGINT skips the wait.
.TP
.B SIGHUP
Reload the config file, as \fBautomationctl reload\fR. A file that does not validate is
logged and refused; the old config stays in force.""",
        ),
        (
            "EXIT STATUS",
            r""".TP
.B 0
Clean stop, or a valid config (\fBcheck\-config\fR).
.TP
.B 1
A fatal error, such as a state directory locked by another automationd.
.TP
.B 2
A bad config or usage: one line on standard error naming the file, the key and the problem.""",
        ),
        (
            "ENVIRONMENT",
            r""".TP
.B NOTIFY_SOCKET
systemd's notification socket: READY=1, RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1.
.TP
.B WATCHDOG_USEC
The watchdog interval; the daemon pings at half of it while its loop and store are healthy.
.TP
.B JOURNAL_STREAM
Set by systemd when standard error is the journal: every log line then starts with its
syslog priority (\fB<3>\fR error ... \fB<7>\fR debug), so \fBjournalctl \-p warning\fR
filters.""",
        ),
        (
            "FILES",
            r""".TP
.I /etc/automationd/automationd.toml
The config file \fBrun\fR and \fBcheck\-config\fR read by default.
.TP
.I /var/lib/automationd/automationd.db
The SQLite run log (\fBdaemon.state_dir\fR).
.TP
.I /run/automationd/admin.sock
The admin socket (\fBdaemon.admin_socket\fR).""",
        ),
        (
            "SEE ALSO",
            rf"""\fBautomationctl\fR(1), \fBsystemd.service\fR(5), \fBjournalctl\fR(1),
the interface reference \fIdocs/reference.md\fR, {esc(homepage())}""",
        ),
    )


def pages() -> list[Page]:
    return [
        Page("automationd", 8, "automation daemon", cli.build_parser(), _daemon_extra()),
        Page(
            "automationctl",
            1,
            "control a running automationd over its admin socket",
            ctl.build_parser(),
            _ctl_extra(),
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Write every page into the folder given (default ``man``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    folder = Path(args[0] if args else "man")
    for page in pages():
        path = folder / f"man{page.section}" / f"{page.name}.{page.section}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(page))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
