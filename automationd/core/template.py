"""``${...}`` substitution for http actions: plain string replacement, no format-string power.

Grammar (anything else that merely looks like ``${...}`` is left as written, so JSON bodies
meant for another template engine pass through untouched)::

    ${job}  ${run_id}  ${target}  ${payload}  ${target.a.b}  ${payload.a}

A field path walks dict keys only: no attribute access, no indexing, no evaluation. A string
value is inserted as is; any other value as compact JSON. A missing field is an error
(``TemplateError``), never a silent empty string, because a URL built from an empty segment
can hit the wrong resource.

Templates are compiled once per job and rendered per attempt; a template without references
renders to its literal text without work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ROOTS = frozenset({"job", "run_id", "target", "payload"})
_FIELDLESS = frozenset({"job", "run_id"})
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_-]+)*)\}")

Scope = Mapping[str, Any]  # keys: job, run_id, target, payload


class TemplateError(ValueError):
    """A template names a field the scope does not have, or is malformed."""


@dataclass(frozen=True, slots=True)
class Ref:
    root: str
    path: tuple[str, ...] = ()

    def spell(self) -> str:
        return "${" + ".".join((self.root, *self.path)) + "}"


def stringify(value: Any) -> str:
    """Text inserted for a value: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def lookup(scope: Scope, ref: Ref) -> Any:
    """The value a reference points at, walking dict keys only."""
    value = scope.get(ref.root)
    for depth, key in enumerate(ref.path):
        if not isinstance(value, Mapping) or key not in value:
            where = ".".join((ref.root, *ref.path[:depth]))
            raise TemplateError(f"{ref.spell()}: {where} has no field {key!r}")
        value = value[key]
    return value


@dataclass(frozen=True, slots=True)
class Template:
    """A string split into literal text and references."""

    parts: tuple[str | Ref, ...]

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    def render(self, scope: Scope, quote: Callable[[str], str] | None = None) -> str:
        """Substitute every reference; ``quote`` escapes inserted values (not the literals)."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                text = stringify(lookup(scope, part))
                out.append(quote(text) if quote is not None else text)
        return "".join(out)


def compile_template(text: str) -> Template:
    """Split ``text`` once into literals and references; unknown ``${name}`` stays literal."""
    parts: list[str | Ref] = []
    pos = 0
    for m in _REF.finditer(text):
        root, dotted = m.group(1), m.group(2)
        if root not in ROOTS:
            continue
        path = tuple(dotted.split(".")[1:]) if dotted else ()
        if path and root in _FIELDLESS:
            raise TemplateError(f"{m.group(0)}: ${{{root}}} is a string and has no fields")
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(Ref(root, path))
        pos = m.end()
    if pos < len(text) or not parts:
        parts.append(text[pos:])
    return Template(tuple(parts))


@dataclass(frozen=True, slots=True)
class JsonTemplate:
    """A JSON value whose string leaves (not keys) may hold references."""

    tree: Any
    is_static: bool

    def render(self, scope: Scope) -> Any:
        if self.is_static:
            return self.tree
        return _render_tree(self.tree, scope)


def compile_json(value: Any) -> JsonTemplate:
    """Compile every string value inside ``value`` (recursively through dicts and lists)."""
    tree, dynamic = _compile_tree(value)
    return JsonTemplate(tree=tree if dynamic else value, is_static=not dynamic)


def _compile_tree(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        t = compile_template(value)
        return (value, False) if t.is_static else (t, True)
    if isinstance(value, Mapping):
        items = {k: _compile_tree(v) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(d for _, d in items.values())
    if isinstance(value, list | tuple):
        elems = [_compile_tree(v) for v in value]
        return [v for v, _ in elems], any(d for _, d in elems)
    return value, False


def _render_tree(tree: Any, scope: Scope) -> Any:
    if isinstance(tree, Template):
        return tree.render(scope)
    if isinstance(tree, dict):
        return {k: _render_tree(v, scope) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_render_tree(v, scope) for v in tree]
    return tree
