"""Agents: live status board, status changes (managers any agent, agents their own), and
performance over a date range."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import streamlit as st

from dashboard import charts, ui

SETTABLE = ["available", "break", "offline"]

ui.header("Agents", "Who is available, busy or away, and how they performed")
api = ui.client()
user = ui.me()


@st.fragment(run_every=5)
def board() -> list[dict[str, Any]] | None:
    agents = ui.load(lambda: api.items("/api/agents"), what="agents")
    if agents is None:
        return None
    if not agents:
        st.info("No agents yet. An admin adds agents through the API (POST /api/agents) or "
                "`ivr seed` loads the sample team.")
        return agents
    counts = {s: sum(1 for a in agents if a.get("status") == s)
              for s in ("available", "on_call", "wrap_up", "break", "offline")}
    cols = st.columns(5)
    for col, (status, n) in zip(cols, counts.items(), strict=True):
        col.metric(status.replace("_", " ").capitalize() + " (agents)", n)
    st.dataframe(
        [
            {
                "agent": a["name"],
                "status": a.get("status"),
                "since (IST)": ui.fmt_time(a.get("statusChangedAt")),
                "active calls": a.get("activeCalls", 0),
                "handled today": a.get("callsHandledToday", 0),
                "team": a.get("team") or "",
                "skills": ", ".join(f"{k} {v}" for k, v in (a.get("skills") or {}).items()),
                "phone": a.get("phoneNumber"),
            }
            for a in agents
        ],
        hide_index=True,
    )
    return agents


agents = board()
if not agents:
    st.stop()

st.subheader("Change status")
mine = [a for a in agents if a.get("userId") == user.id]
can_any = user.can("agents:status:any")
choices = agents if can_any else mine
if not choices:
    st.caption("Your account is not linked to an agent, so there is no status to change.")
else:
    with st.form("status_form"):
        c1, c2 = st.columns(2)
        agent_id = c1.selectbox("Agent", [a["id"] for a in choices],
                                format_func=lambda i: next(a["name"] for a in choices
                                                           if a["id"] == i),
                                key="status_agent")
        status = c2.selectbox("New status", SETTABLE, key="status_new")
        go = st.form_submit_button("Change status")
    if go:
        done = ui.act(lambda: api.put(f"/api/agents/{agent_id}/status", {"status": status}),
                      what="change the status")
        if done:
            st.success(f"{done['name']} is now {done['status']}.")

if user.can("analytics:view"):
    st.subheader("Performance")
    period = st.date_input(f"Date range ({ui.TZ_LABEL})",
                           value=(ui.today() - timedelta(days=6), ui.today()), key="perf_range")
    if isinstance(period, tuple) and len(period) == 2:
        lo, hi = ui.day_range(*period)
        perf = ui.load(
            lambda: api.get("/api/analytics/agents/performance", tz=ui.TZ_NAME,
                            **{"from": lo, "to": hi}),
            what="agent performance",
        )
        rows = (perf or {}).get("agents") or []
        if perf is not None and not rows:
            st.info("No agent activity in this range.")
        if rows:
            st.plotly_chart(charts.agent_performance(rows), key="perf_chart")
            st.dataframe(
                [
                    {
                        "agent": r["agentName"],
                        "handled (calls)": r.get("callsHandled"),
                        "missed (calls)": r.get("missed"),
                        "avg handle (s)": r.get("averageHandleTime"),
                        "avg wrap-up (s)": r.get("averageWrapUp"),
                        "occupancy (%)": r.get("occupancy"),
                        "signed in (h)": round(float(r.get("availableS") or 0) / 3600, 2),
                        "status now": r.get("currentStatus"),
                    }
                    for r in rows
                ],
                hide_index=True,
            )
    else:
        st.caption("Pick both a start and an end date.")
    st.plotly_chart(charts.agent_statuses(agents), key="status_chart")
