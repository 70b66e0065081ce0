"""Shared bench helpers: a results table printed beside the peers, as ratios."""

from __future__ import annotations

import os
from dataclasses import dataclass

SCALE = float(os.environ.get("AUTOMATIOND_BENCH_SCALE", "1"))


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


@dataclass
class Row:
    what: str
    ours: float
    peer: float | None
    unit: str
    peer_name: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> str:
        if self.peer is None or self.peer == 0 or self.ours == 0:
            return "-"
        r = self.ours / self.peer if self.higher_is_better else self.peer / self.ours
        return f"{r:.1f}x"


def print_table(title: str, rows: list[Row]) -> str:
    lines = [
        f"\n== {title} ==",
        f"{'measure':<44} {'automationd':>14} {'peer':>14} {'peer name':<26} {'ours/peer':>9}",
    ]
    for r in rows:
        peer = f"{r.peer:,.1f}" if r.peer is not None else "-"
        lines.append(
            f"{r.what:<44} {r.ours:>14,.1f} {peer:>14} {r.peer_name:<26} {r.ratio:>9}  ({r.unit})"
        )
    text = "\n".join(lines)
    print(text)
    out = os.environ.get("AUTOMATIOND_BENCH_OUT")
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")
    return text
