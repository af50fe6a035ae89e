"""docs/metrics.md, the OpenAPI descriptions, /metrics and the Grafana dashboard agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from api.routes.analytics import AgentPerformance, DashboardOut, FlowAnalyticsOut
from core import metrics
from core.analytics import csv_safe, mask_variables, parse_range, zone

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_dashboard_figure_is_defined_in_docs_and_openapi() -> None:
    text = (DOCS / "metrics.md").read_text()
    for model in (DashboardOut, AgentPerformance, FlowAnalyticsOut):
        for name, field in model.model_fields.items():
            alias = field.alias or name
            if alias in ("timezone", "since", "asOf", "from", "to", "start", "end",
                         "agentId", "agentName", "team", "flowId", "flowName", "menuChoices"):
                continue
            assert f"`{alias}" in text, f"{model.__name__}.{alias} is not defined in the docs"
    for name in ("activeCalls", "callsInQueue", "serviceLevel", "abandonRate",
                 "avgSpeedOfAnswer", "longestWait", "occupancy", "successRate"):
        described = {**DashboardOut.model_fields, **AgentPerformance.model_fields}
        field = next(f for n, f in described.items() if (f.alias or n) == name)
        assert field.description, name


def test_grafana_dashboard_queries_only_exposed_metrics() -> None:
    exposed = generate_latest(metrics.REGISTRY).decode()
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", exposed, re.M))
    known = set()
    for name, kind in names:
        known.add(name)
        if kind == "counter":
            known.add(name + "_total")
        if kind == "histogram":
            known |= {name + "_bucket", name + "_sum", name + "_count"}
    dash = json.loads((DOCS / "grafana-dashboard.json").read_text())
    used = {m for p in dash["panels"] for t in p["targets"]
            for m in re.findall(r"\b(ivr_[a-z_]+)", t["expr"])}
    assert used and used <= known, used - known
    docs = (DOCS / "metrics.md").read_text()
    for metric in used:
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        assert f"`{base}`" in docs, base


def test_pure_helpers() -> None:
    tz = zone("Asia/Kolkata")
    rng = parse_range("2026-03-09", "2026-03-09", tz)
    assert rng.start.isoformat() == "2026-03-09T00:00:00+05:30"
    assert rng.end.isoformat() == "2026-03-10T00:00:00+05:30"
    assert csv_safe("=1+1") == "'=1+1" and csv_safe("ok") == "ok" and csv_safe(-3) == -3
    masked = mask_variables(
        {"pin": "1234", "account_number": "998877", "caller_id": "+919876543210",
         "order": "A-17", "nested": {"otp": "5555", "menu": "2"}, "card": ""},
        reveal_numbers=False,
    )
    assert masked == {"pin": "****", "account_number": "****",
                      "caller_id": "+91******3210", "order": "A-17",
                      "nested": {"otp": "****", "menu": "2"}, "card": ""}
    assert mask_variables({"to": "+919876543210"}, reveal_numbers=True)["to"] == "+919876543210"


def test_sensitive_names_are_words_not_substrings() -> None:
    out = mask_variables({"shipping": "x", "company": "y", "cardNumber": "4111", "userPIN": "1",
                          "panNumber": "ABCDE1234F", "passenger": "z"}, reveal_numbers=True)
    assert out == {"shipping": "x", "company": "y", "cardNumber": "****", "userPIN": "****",
                   "panNumber": "****", "passenger": "z"}
