"""Publish-time checks of the logic nodes (decision, gather, API), run by `validate_flow`.

Each check yields (node id, field, code, message). What the schema already refuses at parse
time (unknown operators, a `gt` with text, a regex that does not compile) is not repeated;
these are the rules that need the whole node or the server's configuration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from core.flows.api_call import template_host
from core.flows.schema import ApiNode, ConditionExpr, DecisionNode, GatherNode
from core.http_guard import Allowlist, static_host_problem

try:  # the parser behind `re`; its name changed in 3.11
    import re._parser as _sre_parse  # type: ignore[import-not-found]
    from re._constants import (  # type: ignore[import-not-found]
        MAX_REPEAT,
        MIN_REPEAT,
    )
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse as _sre_parse  # type: ignore[no-redef]
    from sre_constants import MAX_REPEAT, MIN_REPEAT  # type: ignore[no-redef]

BAD_REGEX = "bad_regex"
TYPE_MISMATCH = "type_mismatch"
MISSING_BUSINESS_HOURS = "missing_business_hours"
FORBIDDEN_HOST = "forbidden_host"
TEMPLATED_HOST = "templated_host"
UNKNOWN_SECRET = "unknown_secret"  # noqa: S105 (a problem code)

Issue = tuple[str, str, str, str]  # node id, field, code, message
# Gather input types whose values are text, never numbers.
_TEXT_INPUTS = frozenset({"date", "phone", "regex"})


def regex_risk(pattern: str) -> str | None:
    """Why a pattern could backtrack catastrophically (a repeat inside a repeat), or None.

    Python's `re` has no time limit, and a decision or gather runs inside the workflow, so
    `(\\d+)+$` on 30 digits would hang a worker: refuse nested unbounded repeats at publish.
    """
    try:
        tree = _sre_parse.parse(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"

    def repeats(items: Any, inside: bool) -> str | None:
        for op, av in items:
            if op in (MAX_REPEAT, MIN_REPEAT):
                _lo, hi, sub = av
                many = hi > 1
                if many and inside:
                    return "a repeat inside a repeat (like (a+)+) can take forever to fail"
                found = repeats(sub, inside or many)
                if found:
                    return found
            else:
                for child in _children(av):
                    found = repeats(child, inside)
                    if found:
                        return found
        return None

    return repeats(tree, False)


def _children(av: Any) -> Iterator[Any]:
    if isinstance(av, _sre_parse.SubPattern):
        yield av
    elif isinstance(av, list | tuple):
        for item in av:
            if isinstance(item, _sre_parse.SubPattern):
                yield item
            elif isinstance(item, list | tuple):
                yield from _children(item)


def logic_issues(
    nodes: dict[str, Any],
    *,
    api_allowlist: Allowlist,
    secret_known: Callable[[str], bool] | None,
) -> Iterator[Issue]:
    text_vars = {
        n.config.save_to_variable: n.id for n in nodes.values()
        if isinstance(n, GatherNode) and n.config.input_type in _TEXT_INPUTS
    }
    for node in nodes.values():
        if isinstance(node, DecisionNode):
            for i, cond in enumerate(node.config.conditions):
                yield from _condition_issues(node.id, cond, f"config.conditions[{i}]", text_vars)
        elif isinstance(node, GatherNode):
            yield from _gather_issues(node)
        elif isinstance(node, ApiNode):
            yield from _api_issues(node, api_allowlist, secret_known)


def _condition_issues(
    node_id: str, cond: ConditionExpr, field: str, text_vars: dict[str, str]
) -> Iterator[Issue]:
    for i, sub in enumerate(cond.conditions or ()):
        yield from _condition_issues(node_id, sub, f"{field}.conditions[{i}]", text_vars)
    if cond.operator == "regex" and isinstance(cond.value, str):
        risk = regex_risk(cond.value)
        if risk:
            yield node_id, f"{field}.value", BAD_REGEX, risk
    if cond.kind == "time" and cond.operator in ("open", "closed") and (
        cond.business_hours_id is None
    ):
        yield (node_id, f"{field}.businessHoursId", MISSING_BUSINESS_HOURS,
               f"a time condition '{cond.operator}' needs businessHoursId (which schedule)")
    if cond.kind == "variable" and cond.operator in ("gt", "gte", "lt", "lte"):
        source = text_vars.get(cond.variable or "")
        if source is not None:
            yield (node_id, f"{field}.operator", TYPE_MISMATCH,
                   f"{cond.operator} compares numbers, but {cond.variable} holds text "
                   f"(set by gather node {source!r})")
    if cond.kind == "caller" and cond.operator in ("equals", "in"):
        from core.phone import to_e164

        values = cond.value if isinstance(cond.value, list) else [cond.value]
        for j, value in enumerate(values):
            if to_e164(str(value)) is None:
                where = f"{field}.value" + (f"[{j}]" if isinstance(cond.value, list) else "")
                yield node_id, where, TYPE_MISMATCH, f"{value!r} is not a phone number"
    if cond.kind == "caller" and cond.operator == "prefix":
        if not re.fullmatch(r"\+?[0-9][0-9 -]{0,15}", str(cond.value)):
            yield (node_id, f"{field}.value", TYPE_MISMATCH,
                   f"prefix {cond.value!r} must be digits, optionally after +")


def _gather_issues(node: GatherNode) -> Iterator[Issue]:
    cfg = node.config
    rules = cfg.validation_rules
    kind = cfg.input_type
    if rules is not None:
        if (rules.min_value is not None or rules.max_value is not None) and kind not in (
            "number", "amount"
        ):
            yield (node.id, "config.validationRules", TYPE_MISMATCH,
                   f"minValue/maxValue apply to number and amount inputs, not {kind}")
        if rules.luhn and kind in ("date", "phone", "amount"):
            yield (node.id, "config.validationRules.luhn", TYPE_MISMATCH,
                   f"a Luhn check does not apply to {kind} inputs")
        if rules.pattern:
            risk = regex_risk(rules.pattern)
            if risk:
                yield node.id, "config.validationRules.pattern", BAD_REGEX, risk
    if kind == "date" and not cfg.min_length <= 8 <= cfg.max_length:
        yield (node.id, "config.maxLength", TYPE_MISMATCH,
               "a date is 8 digits (DDMMYYYY): minLength must be at most 8 and maxLength "
               "at least 8")
    if kind == "phone" and cfg.max_length < 8:
        yield (node.id, "config.maxLength", TYPE_MISMATCH,
               "a phone number needs maxLength of at least 8 (10 for Indian mobiles)")
    if kind == "luhn" and cfg.max_length < 2:
        yield node.id, "config.maxLength", TYPE_MISMATCH, "a Luhn number needs 2 digits or more"
    if kind == "number" and cfg.max_length > 15:
        yield (node.id, "config.maxLength", TYPE_MISMATCH,
               "numbers longer than 15 digits lose precision: use inputType digits")
    if kind == "amount" and cfg.finish_on_key == "*":
        yield (node.id, "config.finishOnKey", TYPE_MISMATCH,
               "amount inputs use * as the decimal point: finish with # instead")


def _api_issues(
    node: ApiNode, allowlist: Allowlist, secret_known: Callable[[str], bool] | None
) -> Iterator[Issue]:
    cfg = node.config
    host = template_host(cfg.url)
    if host is None:
        yield (node.id, "config.url", TEMPLATED_HOST,
               "the URL's host must be written out (templates may fill the path and query "
               "only), so it can be checked before calls use it")
    else:
        problem = static_host_problem(host, allowlist)
        if problem is not None:
            yield (node.id, "config.url", FORBIDDEN_HOST,
                   f"{problem}; API nodes may not call it unless IVR_API_NODE_ALLOWLIST "
                   "lists it")
    if secret_known is not None:
        for header, name in (cfg.secret_headers or {}).items():
            if not secret_known(name):
                yield (node.id, f"config.secretHeaders.{header}", UNKNOWN_SECRET,
                       f"secret {name} is not configured on this server (set "
                       f"IVR_API_SECRET_{name} or IVR_API_SECRETS)")
