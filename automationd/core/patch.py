"""JSON merge patch (RFC 7396): how ``jobs.update`` changes a job table (pure).

Only the keys a patch names change: a value replaces, an object merges into the object it
names (recursively), ``null`` removes the key. Arrays are values, replaced whole. So an
update that does not mention a key can never lose it (the failure mode of tools whose
"update" rewrites the whole record from what the client happened to send).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied; neither argument is changed."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def changed_keys(patch: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys a patch touches (``action.argv``), for messages and the audit trail."""
    out: list[str] = []
    for key, value in patch.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(changed_keys(value, path + "."))
        else:
            out.append(path)
    return out
