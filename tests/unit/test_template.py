"""``${...}`` substitution: plain replacement, dict keys only, errors for missing fields."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from automationd.core.template import TemplateError, compile_json, compile_template

SCOPE: dict[str, Any] = {
    "job": "sync",
    "run_id": "r-1",
    "target": {"sku": "A/1", "n": 3, "deep": {"x": "y"}},
    "payload": {"region": "eu", "flag": True, "none": None},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("${job}", "sync"),
        ("/runs/${run_id}/x", "/runs/r-1/x"),
        ("${target.sku}", "A/1"),
        ("${target.n}", "3"),
        ("${target.deep.x}", "y"),
        ("${target.deep}", '{"x":"y"}'),
        ("${payload.region}-${payload.flag}", "eu-true"),
        ("${payload.none}", "null"),
        ("${unknown} and ${target.sku}", "${unknown} and A/1"),
        ("${ job }", "${ job }"),
        ("{job} {0} %s {target.__class__}", "{job} {0} %s {target.__class__}"),
        ("$${job}", "$sync"),
    ],
)
def test_render(text: str, expected: str) -> None:
    """References are replaced by strings or compact JSON; anything else is left alone."""
    assert compile_template(text).render(SCOPE) == expected


def test_whole_target_string_and_json() -> None:
    """``${target}`` inserts a string target as is and any other target as JSON."""
    t = compile_template("${target}")
    assert t.render({**SCOPE, "target": "sku-1"}) == "sku-1"
    assert t.render({**SCOPE, "target": [1, "a"]}) == '[1,"a"]'


def test_quote_applies_to_values_only() -> None:
    """The quote function escapes inserted values, never the literal text around them."""
    t = compile_template("/items/${target.sku}?q=1")
    assert t.render(SCOPE, quote=lambda s: quote(s, safe="")) == "/items/A%2F1?q=1"


@pytest.mark.parametrize(
    "text",
    ["${target.missing}", "${target.deep.x.y}", "${payload.region.z}", "${target.n.z}"],
)
def test_missing_field_is_an_error(text: str) -> None:
    """A field the value does not have raises TemplateError naming the reference."""
    with pytest.raises(TemplateError, match=r"\$\{"):
        compile_template(text).render(SCOPE)


def test_no_attribute_walking() -> None:
    """Field paths walk dict keys only, never attributes of objects."""

    class Obj:
        secret = "x"

    with pytest.raises(TemplateError):
        compile_template("${target.secret}").render({**SCOPE, "target": Obj()})


@pytest.mark.parametrize("text", ["${job.x}", "${run_id.a.b}"])
def test_fields_of_plain_strings_refused_at_compile(text: str) -> None:
    """``${job}`` and ``${run_id}`` have no fields; asking for one fails when compiling."""
    with pytest.raises(TemplateError):
        compile_template(text)


def test_static_template() -> None:
    """A template without references is static and renders its text."""
    t = compile_template("https://api.example/x")
    assert t.is_static
    assert not compile_template("${job}").is_static


def test_json_renders_string_leaves_recursively() -> None:
    """String values inside dicts and lists are substituted; keys and non-strings are kept."""
    tree = {"sku": "${target.sku}", "${job}": 1, "list": ["${payload.region}", 2, None], "n": 5}
    out = compile_json(tree).render(SCOPE)
    assert out == {"sku": "A/1", "${job}": 1, "list": ["eu", 2, None], "n": 5}
    assert tree["sku"] == "${target.sku}"  # the compiled source is not mutated


def test_static_json_is_returned_as_is() -> None:
    """A json body without references is not rebuilt per attempt."""
    tree = {"a": [1, "b"]}
    compiled = compile_json(tree)
    assert compiled.is_static
    assert compiled.render(SCOPE) is tree
