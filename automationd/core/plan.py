"""Plans: what a run would perform, and whether a preview still holds when it is applied.

A *plan* is the check's decision (the targets perform would get and the payload it would
see, and whether to perform at all), a digest of the check's whole output, and the job's
*definition* identity at the time. Its hash is SHA-256 over canonical JSON (sorted keys, no
spaces, UTF-8; values JSON cannot say are written as text), so the same check output under
the same definition hashes the same in every process and after every restart. The whole
output counts (SPEC §7.2: "a hash of the check's output"): a check should return what decides
the plan, not a clock reading.

Applying a preview (SPEC §7.2) compares the preview's plan with the plan made now. The
preview is stale, and the apply performs nothing, when any of these hold; each yields one
reason, in this order, and the apply's error message lists them all:

1. the job's definition differs from the one the preview was made under;
2. the preview is older than the job's ``preview_ttl``;
3. the check now decides other targets (the ones added and removed are named; the same
   targets in another order count as a change too), another payload, or not to perform;
4. or, all of that equal, the rest of the check's output differs (its keys are named).

Pure: no IO, no clock; ``now`` and ages are parameters.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from automationd.units import format_duration

_SHOWN = 5  # targets named per "added"/"removed" reason before "… and N more"


def canonical(value: Any) -> str:
    """JSON text that is the same for equal values: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    """SHA-256 (hex) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical(value).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What perform would do. ``targets`` None means one untargeted perform."""

    targets: tuple[Any, ...] | None
    payload: Any
    definition: str
    perform: bool = True
    output: str = ""  # digest of the check's whole output ("" for a job without a check)
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "targets": None if self.targets is None else list(self.targets),
            "payload": self.payload,
            "perform": self.perform,
            "definition": self.definition,
            "output": self.output,
        }


NO_CHECK = object()  # ``make_plan(output=…)`` for a job without a check


def make_plan(
    *,
    targets: Sequence[Any] | None,
    payload: Any,
    definition: str,
    perform: bool = True,
    output: Any = NO_CHECK,
) -> Plan:
    """A plan and its hash (over all its parts; ``output`` is the check's result value)."""
    t = None if targets is None else tuple(targets)
    out = "" if output is NO_CHECK else digest(output)
    body = {
        "targets": None if t is None else list(t),
        "payload": payload,
        "perform": perform,
        "definition": definition,
        "output": out,
    }
    return Plan(
        targets=t,
        payload=payload,
        definition=definition,
        perform=perform,
        output=out,
        hash=digest(body),
    )


def plan_from_json(value: Any) -> Plan | None:
    """A stored plan read back (None if it is not one); its stored hash is kept as is."""
    if not isinstance(value, Mapping) or not isinstance(value.get("hash"), str):
        return None
    targets = value.get("targets")
    return Plan(
        targets=tuple(targets) if isinstance(targets, list) else None,
        payload=value.get("payload"),
        definition=str(value.get("definition", "")),
        perform=bool(value.get("perform", True)),
        output=str(value.get("output", "")),
        hash=value["hash"],
    )


def definition_reason(preview: Plan, definition: str) -> str | None:
    if preview.definition == definition:
        return None
    return "job definition changed since the preview"


def age_reason(made_at: float, now: float, ttl: float) -> str | None:
    """Why a preview made at ``made_at`` is too old at ``now``, if it is (``age > ttl``)."""
    age = now - made_at
    if age <= ttl:
        return None
    return (
        f"preview is {format_duration(max(0.0, round(age, 1)))} old, "
        f"older than preview_ttl {format_duration(ttl)}"
    )


def early_reasons(
    preview: Plan, definition: str, made_at: float, now: float, ttl: float
) -> list[str]:
    """The reasons known before the check runs again (rules 1 and 2)."""
    found = [definition_reason(preview, definition), age_reason(made_at, now, ttl)]
    return [r for r in found if r is not None]


def plan_diff(preview: Plan, now: Plan, before: Any = None, after: Any = None) -> list[str]:
    """What differs between the preview's plan and the plan made now (rules 1, 3 and 4);
    empty when they match (then their hashes are equal too). ``before`` and ``after`` are
    the two check outputs, to name the keys of rule 4."""
    reasons: list[str] = []
    r = definition_reason(preview, now.definition)
    if r is not None:
        reasons.append(r)
    if preview.perform != now.perform:
        reasons.append("the check now says " + ("perform" if now.perform else "nothing to perform"))
    reasons.extend(_target_reasons(preview.targets, now.targets))
    if canonical(preview.payload) != canonical(now.payload):
        reasons.append("payload changed")
    if not reasons and preview.output != now.output:
        reasons.append("check output changed" + _keys(before, after))
    if not reasons and preview.hash != now.hash:  # a stored plan whose parts were edited
        reasons.append("plan hash differs")
    return reasons


def stale_message(reasons: Sequence[str]) -> str:
    return "plan is stale: " + "; ".join(reasons)


def _target_reasons(before: tuple[Any, ...] | None, after: tuple[Any, ...] | None) -> list[str]:
    if before is None and after is None:
        return []
    if before is None or after is None:
        shown = "no targets" if after is None else f"{len(after)} target(s)"
        return [f"targets changed: now {shown}"]
    old = Counter(canonical(t) for t in before)
    new = Counter(canonical(t) for t in after)
    out = []
    added = list((new - old).elements())
    removed = list((old - new).elements())
    if added:
        out.append(f"targets added: {_names(added)}")
    if removed:
        out.append(f"targets removed: {_names(removed)}")
    if not out and [canonical(t) for t in before] != [canonical(t) for t in after]:
        out.append("targets reordered")
    return out


def _keys(before: Any, after: Any) -> str:
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return ""
    keys = sorted(
        str(k)
        for k in set(before) | set(after)
        if k not in before or k not in after or canonical(before[k]) != canonical(after[k])
    )
    return f" (keys: {_names(keys)})" if keys else ""


def _names(texts: list[str]) -> str:
    shown = ", ".join(texts[:_SHOWN])
    more = len(texts) - _SHOWN
    return f"{shown} … and {more} more" if more > 0 else shown
