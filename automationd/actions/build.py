"""One action spec → the callable that runs it (exec, http or python), decided once per job."""

from __future__ import annotations

from collections.abc import Mapping

from automationd.actions.base import Action, HttpClients
from automationd.actions.exec import ExecRunner
from automationd.actions.http import HttpRunner
from automationd.actions.python import PythonRunner
from automationd.clock import Clock, SystemClock
from automationd.config.model import ActionSpec, ExecAction, HttpAction, PythonAction


def build_action(
    spec: ActionSpec,
    *,
    http: HttpClients,
    job_env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> Action:
    """Build the callable for one action spec; everything static is decided here, once.

    ``job_env`` replaces the daemon's environment as the base for exec actions (tests and
    embedding); ``clock`` reads wall time for HTTP-date Retry-After headers.
    """
    if isinstance(spec, ExecAction):
        return ExecRunner(spec, environ=job_env)
    if isinstance(spec, HttpAction):
        return HttpRunner(spec, clients=http, clock=clock or SystemClock())
    if isinstance(spec, PythonAction):
        return PythonRunner(spec)
    raise TypeError(f"unknown action spec {type(spec).__name__}")
