"""System-test fixtures: a factory of real daemon subprocesses, all killed at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, config_text


@pytest.fixture
def daemon_factory(short_tmp: Path) -> Iterator[Callable[..., DaemonProcess]]:
    made: list[DaemonProcess] = []

    def make(
        *, jobs: str = "", services: str = "", daemon: str = "", extra: str = "", sub: str = "d"
    ) -> DaemonProcess:
        base = short_tmp / sub
        base.mkdir(exist_ok=True)
        d = DaemonProcess(
            base, config_text(base, jobs=jobs, services=services, daemon=daemon, extra=extra)
        )
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()
