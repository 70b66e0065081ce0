"""Planning a writer batch: many callers' writes become ordered steps (pure; the rules are the
writer's, store/writer.py). A backend runs the steps in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from automationd.store.write import Stmt, Write

TxnFn = Callable[[Any], Any]  # a function run inside the transaction, on the backend's connection

# A step is (stmt, rows) for one multi-row statement, or a function run inside the transaction.
Step = tuple[Stmt, list[tuple[Any, ...]]] | TxnFn


class Planned(Protocol):
    """What a batch is planned from: a caller's writes, or one function."""

    @property
    def writes(self) -> Sequence[Write]: ...

    @property
    def fn(self) -> TxnFn | None: ...


def plan_batch(entries: Sequence[Planned]) -> tuple[list[Step], int, int]:
    """Turn entries into ordered steps; return (steps, statements, collapsed writes).

    Each group keeps its rows and their keys side by side; duplicates are looked for once per
    group, with a set (C speed), and collapsed only if there are any: in the hot path (new
    rows, ends) there are none.
    """
    steps: list[Step] = []
    groups: dict[Stmt, tuple[list[tuple[Any, ...]], list[Hashable | None]]] = {}
    counts = [0, 0]  # statements, collapsed

    def flush() -> None:
        for stmt, (rows, keys) in groups.items():
            nones = keys.count(None)
            if len(set(keys)) - (1 if nones else 0) != len(keys) - nones:
                last = {k: i for i, k in enumerate(keys) if k is not None}
                kept = [
                    r
                    for i, (r, k) in enumerate(zip(rows, keys, strict=True))
                    if k is None or last[k] == i
                ]
                counts[1] += len(rows) - len(kept)
                rows = kept
            counts[0] += len(rows)
            steps.append((stmt, rows))
        groups.clear()

    get = groups.get
    for entry in entries:
        if entry.fn is not None:
            flush()
            steps.append(entry.fn)
            continue
        for w in entry.writes:
            if w.barrier:
                flush()
                steps.append((w.stmt, [w.params]))
                counts[0] += 1
                continue
            group = get(w.stmt)
            if group is None:
                group = groups[w.stmt] = ([], [])
            group[0].append(w.params)
            group[1].append(w.key)
    flush()
    return steps, counts[0], counts[1]


def keys_of(entries: Sequence[Planned]) -> set[tuple[Stmt, Hashable]]:
    """The (statement, key) of every keyed write: what a batch stored, for the retry rule."""
    return {(w.stmt, w.key) for e in entries for w in e.writes if w.key is not None}


@dataclass(slots=True)
class Settlement:
    """What a committer that takes whole entries (``start_entries``) reports of a batch: the
    functions' results in entry order, and the entries it refused (by index) with why. A
    refused entry stored nothing (PostgreSQL: a stale fencing token, a duplicate key)."""

    results: list[Any]
    statements: int = 0
    collapsed: int = 0
    refused: dict[int, Exception] = field(default_factory=dict)
