"""Generated constructors for the hot frozen records (runs, attempt contexts and results).

Why: a frozen dataclass's ``__init__`` stores every field through ``object.__setattr__``. The
engine builds several of these records per run, thousands of runs a second; storing through
the slots' own descriptors is the same store for about 40 % less. The classes stay frozen
(assignment still raises), keyword-only (a misspelt field raises ``TypeError``), and
equality, repr, hashing and ``dataclasses.replace`` remain the dataclass's own.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")


def fast_record(cls: type[T]) -> type[T]:
    """Give a frozen, slotted, keyword-only dataclass a faster ``__init__`` (same signature)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {}
    params = []
    for f in fields(cls):  # type: ignore[arg-type]
        if not f.kw_only or f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only keyword fields with plain defaults")
        scope[f"_s_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            scope[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
    init = [f"def __init__(self, *, {', '.join(params)}):"]
    init += [f"    _s_{n}(self, {n})" for n in names]
    exec("\n".join(init), scope)
    scope["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = scope["__init__"]  # type: ignore[method-assign]
    return cls
