"""Live calls: each active call's flow, node, time in node and queue position, with a link to
its workflow in the Temporal UI; calls without progress past a threshold flagged at the top."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import streamlit as st

from dashboard import ui

TEMPORAL_UI = os.environ.get("IVR_TEMPORAL_UI_URL", "http://localhost:8233").rstrip("/")
NAMESPACE = os.environ.get("TEMPORAL_NAMESPACE", "default")
DETAIL_LIMIT = 50  # per-call state queries per refresh; beyond this, time in node is unknown


def temporal_link(call_sid: str) -> str:
    return f"{TEMPORAL_UI}/namespaces/{NAMESPACE}/workflows/{quote('call-' + call_sid)}"


def time_in_node(detail: dict[str, Any] | None, now: datetime) -> float | None:
    """Seconds since the call entered its current node (from its visit history)."""
    if not detail:
        return None
    current = detail.get("currentNode")
    for visit in reversed(detail.get("history") or []):
        if visit.get("nodeId") == current and not visit.get("exitedAt"):
            entered = ui.parse_ts(visit.get("enteredAt"))
            return (now - entered).total_seconds() if entered else None
    since = ui.parse_ts(detail.get("waitingSince"))
    return (now - since).total_seconds() if since else None


def rows(calls: list[dict[str, Any]], details: dict[str, dict[str, Any]],
         flow_names: dict[int, str], queue_names: dict[int, str],
         stuck_s: float) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out = []
    for c in calls:
        d = details.get(c["callSid"])
        in_node = time_in_node(d, now)
        out.append({
            "stuck": in_node is not None and in_node > stuck_s,
            "call": c["callSid"],
            "flow": (d or {}).get("flowName") or flow_names.get(c.get("flowId") or 0, "—"),
            "node": (d or {}).get("currentNodeName") or c.get("currentNode") or "—",
            "time in node (s)": None if in_node is None else round(in_node),
            "call duration (s)": None if c.get("duration") is None else round(c["duration"]),
            "queue": c.get("queueName") or queue_names.get(c.get("queueId") or 0, ""),
            "queue position": c.get("queuePosition"),
            "started (IST)": ui.fmt_time(c.get("startedAt")),
            "Temporal": temporal_link(c["callSid"]),
        })
    out.sort(key=lambda r: (not r["stuck"], -(r["time in node (s)"] or 0)))
    return out


ui.header("Live calls", "Calls in progress now")
stuck_s = st.number_input("Flag as stuck after no progress for (s)", min_value=1,
                          max_value=3600, value=120, step=10, key="stuck_s")


@st.fragment(run_every=5)
def live_table() -> None:
    api = ui.client()
    active = ui.load(lambda: api.get("/api/calls/active"), what="active calls")
    if active is None:
        return
    calls = active.get("items") or []
    if not calls:
        st.info("No calls in progress. Calls appear here within a second of being answered; "
                "try `ivr call` to place a test call.")
        return
    flows = ui.load(lambda: ui.lookup_items("/api/flows"), what="flows") or []
    names = {int(f["id"]): f["name"] for f in flows}
    queues = ui.load(lambda: ui.lookup_items("/api/queues"), what="queues") or []
    queue_names = {int(q["id"]): q["name"] for q in queues}
    details: dict[str, dict[str, Any]] = {}
    for c in calls[:DETAIL_LIMIT]:
        try:
            details[c["callSid"]] = api.get(f"/api/calls/{quote(c['callSid'])}")
        except ui.ApiError:
            continue  # ended between the list and the query: shown without node timing
    table = rows(calls, details, names, queue_names, float(stuck_s))
    stuck = [r for r in table if r["stuck"]]
    if stuck:
        st.error(f"⚠ {len(stuck)} call(s) stuck: no progress for over {stuck_s:.0f} s — "
                 + ", ".join(f"{r['call']} at {r['node']}" for r in stuck))
    st.metric("Calls in progress", active.get("count", len(calls)))
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "stuck": st.column_config.CheckboxColumn("stuck"),
            "Temporal": st.column_config.LinkColumn("Temporal UI", display_text="open workflow"),
        },
    )
    if active.get("truncated"):
        st.caption("Showing the first calls only; narrow by flow in the Temporal UI.")


live_table()
