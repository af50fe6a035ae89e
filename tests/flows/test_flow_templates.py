"""Prompt templates: variables render, missing ones are empty, the sandbox holds."""

from __future__ import annotations

import pytest

from core.flows import templates
from core.flows.templates import MAX_RENDERED_CHARS, check, render

VARS = {"name": "Asha", "account": "123456789", "customer": {"tier": "gold", "orders": [3, 5]},
        "vip": True, "balance": 1250.5}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {{ name }}", "Hello Asha"),
        ("plain text, no template", "plain text, no template"),
        ("{{ customer.tier }} / {{ customer['tier'] }} / {{ customer.orders[1] }}",
         "gold / gold / 5"),
        ("{% if vip %}priority{% else %}normal{% endif %} line", "priority line"),
        ("{{ name | upper }} {{ account | digits }} {{ account | mask }}",
         "ASHA 1 2 3 4 5 6 7 8 9 *****6789"),
        ("Rs {{ balance | round | int }}", "Rs 1250"),
        ("{{ missing }}|{{ missing.deeper.still }}|{{ missing | default('n/a') }}", "||n/a"),
        ("{{ none_value }}", ""),
    ],
)
def test_render(template: str, expected: str) -> None:
    assert render(template, {**VARS, "none_value": None}) == expected


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__.__init__.__globals__ }}",
        "{{ customer.__class__ }}",
        "{{ customer.items }}",
        "{{ self }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ config }}{{ request }}{{ range }}",
        "{{ name.upper() }}",
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
        "{% set x = 1 %}",
        "{% include 'x' %}",
        "{% import 'x' as y %}",
        "{% extends 'x' %}",
        "{% macro m() %}{% endmacro %}",
        "{{ name | attr('__class__') }}",
        "{{ 'a' | center(999999999) }}",
        "{{ '%999999999s' % 1 }}",
        "{{ 'a' * 999999999 }}",
        "{{ 99 ** 99999999 }}",
        "{{ (9 ** 999) * (9 ** 999) * (9 ** 999) }}",
        "{{ [1, 2] | random }}",
    ],
)
def test_sandbox_escapes_do_not_leak(attack: str) -> None:
    out = render(attack, VARS)
    for leak in ("class", "object", "module", "function", "builtins", "os", "Template", "uid="):
        assert leak not in out, (attack, out)
    assert len(out) <= 100


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ name ", "expected"),
        ("{% if x %}", "end of template"),
        ("{% for i in x %}{% endfor %}", "for is not allowed"),
        ("{% set a = 1 %}", "assign is not allowed"),
        ("{{ f() }}", "call is not allowed"),
        ("{{ x | nosuch }}", "unknown filter 'nosuch'"),
        ("{{ x | random }}", "unknown filter 'random'"),
        ("{{ x is nosuchtest }}", "unknown test"),
        ("{{ self }}", "'self' is not available"),
        ("{" * 3000 + "}" * 3000, "longer than"),
    ],
)
def test_check_explains_what_is_wrong(template: str, fragment: str) -> None:
    error = check(template)
    assert error is not None and fragment in error


def test_check_accepts_good_templates() -> None:
    for good in ("Hi", "Hi {{ name }}", "{% if a %}x{% elif b %}y{% else %}z{% endif %}",
                 "{{ a ~ b }} {{ a if b else c }} {{ x | default('y') | upper }}"):
        assert check(good) is None


def test_output_is_capped_and_render_never_raises() -> None:
    long = render("{{ text }}", {"text": "x" * (MAX_RENDERED_CHARS * 3)})
    assert len(long) == MAX_RENDERED_CHARS
    # Errors at render time fall back to the literal text of the template.
    assert render("Total {{ missing + 1 }} due", {}) == "Total  due"
    assert render("Hi {{ broken", {}) == ""
    assert render("{{ 1 / 0 }}!", {}) == "!"


def test_render_is_deterministic_and_pure() -> None:
    outs = {render("{{ a }}-{{ b | default('x') }}", {"a": 1}) for _ in range(50)}
    assert outs == {"1-x"}
    assert "random" not in templates._ENV.filters
    assert not templates._ENV.globals
