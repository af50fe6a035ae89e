"""Prompt templates: `{{ variables }}` in a locked-down Jinja2 sandbox.

Templates are written by flow editors and rendered inside the call workflow, so besides being
safe (no attribute or method access, no calls) rendering must be cheap, bounded and
deterministic: only output, `if`, expressions and a whitelist of filters are allowed (no loops,
assignments, macros, includes, `random`), multiplication and powers are size-capped, and the
output is cut at `MAX_RENDERED_CHARS`. Missing variables render as empty text.

Pure and deterministic; building the environment at import does no I/O, so workflow code may
import this module (pass it through the workflow sandbox).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, nodes
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

MAX_TEMPLATE_CHARS = 4000
MAX_RENDERED_CHARS = 4000
# Largest string/list a `*` may build, and largest integer (in bits) `*`/`**` may produce.
MAX_SEQUENCE_LEN = 10_000
MAX_INT_BITS = 8192

_ALLOWED_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "first", "float", "int", "join", "last",
    "length", "list", "lower", "max", "min", "reverse", "round", "sort", "string", "sum",
    "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
)
# Template syntax a prompt may use; anything else (for, set, with, macro, call, include,
# import, extends, block, filter blocks, function calls) is refused by `check`.
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If,
    nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem, nodes.Slice,
    nodes.Filter, nodes.Test, nodes.CondExpr, nodes.Compare, nodes.Operand,
    nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos, nodes.Concat,
    nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow,
    nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Keyword,
)

# Jinja's own names that mean something outside loops and macros (both of which are refused);
# `caller` is deliberately not here: it is a call variable (the caller's number).
_RESERVED_NAMES = frozenset({"self"})


def _digits(value: Any) -> str:
    """'1234' → '1 2 3 4', so text-to-speech reads digits one by one."""
    return " ".join(ch for ch in str(value) if not ch.isspace())


def _mask(value: Any, keep: int = 4) -> str:
    """All but the last `keep` characters replaced by '*'."""
    text = str(value)
    keep = max(0, min(int(keep), len(text)))
    return "*" * (len(text) - keep) + text[len(text) - keep :]


class _PromptSandbox(SandboxedEnvironment):
    """A sandbox where templates read data (mapping keys, sequence items) and nothing else."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `a.b` only reads mapping keys: no attributes or methods of Python objects at all.
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=str(argument))
        if isinstance(obj, list | tuple | str) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except (IndexError, TypeError, ValueError):
                pass
        return self.undefined(obj=obj, name=str(argument))

    def call(self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("calling functions is not allowed in prompts")

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        if op == "%":
            if isinstance(left, str | bytes):
                raise SecurityError("string formatting with % is not allowed in prompts")
            return left % right
        if op == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    if len(seq) * max(n, 0) > MAX_SEQUENCE_LEN:
                        raise SecurityError("repetition too large")
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError("number too large")
            return left * right
        # "**"
        if isinstance(left, int) and isinstance(right, int):
            if right > 0 and left.bit_length() * right > MAX_INT_BITS:
                raise SecurityError("number too large")
        elif isinstance(right, int | float) and abs(right) > 1024:
            raise SecurityError("exponent too large")
        return operator.pow(left, right)


def _build_env() -> _PromptSandbox:
    env = _PromptSandbox(
        autoescape=False,
        undefined=ChainableUndefined,
        finalize=lambda v: "" if v is None else v,
        trim_blocks=True,
        lstrip_blocks=True,
        cache_size=0,
    )
    env.globals.clear()  # no range, lipsum, dict, cycler, joiner, namespace
    env.filters = {name: DEFAULT_FILTERS[name] for name in _ALLOWED_FILTERS}
    env.filters["digits"] = _digits
    env.filters["mask"] = _mask
    return env


_ENV = _build_env()


def _refusal(tree: nodes.Template) -> str | None:
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            return f"{type(node).__name__.lower()} is not allowed in prompts"
        if isinstance(node, nodes.Filter) and node.name not in _ENV.filters:
            return f"unknown filter {node.name!r}"
        if isinstance(node, nodes.Test) and node.name not in _ENV.tests:
            return f"unknown test {node.name!r}"
        if isinstance(node, nodes.Name):
            if node.ctx != "load":
                return "assignments are not allowed in prompts"
            if node.name in _RESERVED_NAMES:
                return f"{node.name!r} is not available in prompts"
    return None


class _Compiled:
    __slots__ = ("error", "static", "template")

    def __init__(self, template: Any, static: str, error: str | None) -> None:
        self.template = template
        self.static = static
        self.error = error


@functools.lru_cache(maxsize=512)
def _compile(source: str) -> _Compiled:
    if len(source) > MAX_TEMPLATE_CHARS:
        return _Compiled(None, "", f"template longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        tree = _ENV.parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        return _Compiled(None, "", f"{exc.message or exc}{where}")
    except RecursionError:
        return _Compiled(None, "", "template nested too deeply")
    static = "".join(n.data for n in tree.find_all(nodes.TemplateData))
    refusal = _refusal(tree)
    if refusal is not None:
        return _Compiled(None, static, refusal)
    try:
        template = _ENV.from_string(tree)
    except (TemplateError, RecursionError) as exc:
        return _Compiled(None, static, str(exc) or type(exc).__name__)
    return _Compiled(template, static, None)


def check(template: str) -> str | None:
    """None if `template` is a usable prompt template, else what is wrong with it."""
    return _compile(template).error


def render(template: str, variables: Mapping[str, Any] | None = None) -> str:
    """Render a prompt; never raises. A template that fails renders as its literal text."""
    if "{" not in template:  # the common case: plain text, no template syntax at all
        return template[:MAX_RENDERED_CHARS]
    compiled = _compile(template)
    if compiled.template is None:
        return compiled.static[:MAX_RENDERED_CHARS]
    try:
        out = compiled.template.render(dict(variables or {}))
    except Exception:  # a prompt must never break a call
        out = compiled.static
    return out[:MAX_RENDERED_CHARS]
