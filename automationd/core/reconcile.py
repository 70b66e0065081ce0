"""Reload diff: which config jobs were added, changed or removed. Pure; API jobs never appear."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from automationd.config.model import JobSpec


@dataclass(frozen=True, slots=True)
class JobDiff:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]


def diff_jobs(old: Mapping[str, JobSpec], new: Mapping[str, JobSpec]) -> JobDiff:
    return JobDiff(
        added=tuple(n for n in new if n not in old),
        updated=tuple(n for n in new if n in old and old[n] != new[n]),
        removed=tuple(n for n in old if n not in new),
    )
