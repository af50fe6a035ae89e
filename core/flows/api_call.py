"""The API node's request and result (the activity's input and output) and the pure helpers
both sides use: rendering the request from templates, and reading a JSON path.

The workflow renders the URL, headers and body over the call's variables and hands the
request to the `call_api` activity; the activity adds secret headers, checks the host, sends
it, and maps the JSON response onto variables. Pure and deterministic, importable from
workflow code.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field

from core.flows import templates
from core.flows.schema import ApiConfig
from core.telephony import Wire

# Mapped values larger than this (as JSON text) are left out rather than stored.
MAX_VARIABLE_CHARS = 4000
_SINGLE_VAR = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]")


class ApiCallRequest(Wire):
    call_sid: str
    node_id: str
    method: str
    url: str
    host: str  # the host the flow's URL template names; the rendered URL must keep it
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, str] = Field(default_factory=dict)  # header → secret name
    body: Any = None
    has_body: bool = False
    timeout_s: float = 2.0
    retries: int = 0
    mappings: dict[str, str] = Field(default_factory=dict)  # JSON path → variable
    save_body: bool = False


class ApiCallResult(Wire):
    outcome: str  # success | error | timeout
    status: int | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    body: Any = None
    error: str | None = None
    elapsed_ms: float = 0.0
    attempts: int = 0


def template_host(url_template: str) -> str | None:
    """The literal host of a URL template, or None when the host itself is templated."""
    scheme_end = url_template.find("://")
    if scheme_end < 0:
        return None
    rest = url_template[scheme_end + 3 :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "{" in authority or "%" in authority:
        return None
    try:
        host = urlsplit(url_template[: scheme_end + 3] + authority).hostname
    except ValueError:
        return None
    return host or None


def _render_value(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        single = _SINGLE_VAR.match(value)
        if single is not None:
            # "{{ amount }}" alone keeps the variable's JSON type (a number stays a number).
            raw = variables.get(single.group(1))
            if isinstance(raw, bool | int | float) or raw is None:
                return raw
        return templates.render(value, variables)
    if isinstance(value, dict):
        return {k: _render_value(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, variables) for v in value]
    return value


def build_request(
    cfg: ApiConfig, variables: dict[str, Any], *, call_sid: str, node_id: str, timeout_s: float
) -> ApiCallRequest:
    """The request a node's templates describe, rendered over `variables`."""
    return ApiCallRequest(
        call_sid=call_sid,
        node_id=node_id,
        method=cfg.method,
        url=templates.render(cfg.url, variables).strip(),
        host=template_host(cfg.url) or "",
        headers={k: templates.render(v, variables) for k, v in (cfg.headers or {}).items()},
        secret_headers=dict(cfg.secret_headers or {}),
        body=_render_value(cfg.body, variables) if cfg.body is not None else None,
        has_body=cfg.body is not None,
        timeout_s=timeout_s,
        retries=cfg.retries(),
        mappings=dict(cfg.response_mappings or {}),
        save_body=cfg.save_to_variable is not None,
    )


class _Missing:
    pass


MISSING = _Missing()


def json_path(document: Any, path: str) -> Any:
    """`customer.tier`, `$.orders[0].status`, `items[-1]` of a JSON document; MISSING if absent."""
    text = path[1:] if path.startswith("$") else path
    value = document
    pos = 0
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            return MISSING
        pos = match.end()
        key, index = match.group(1), match.group(2)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                return MISSING
            value = value[key]
        else:
            i = int(index)
            if not isinstance(value, list) or not -len(value) <= i < len(value):
                return MISSING
            value = value[i]
    return value
