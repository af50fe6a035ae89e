"""Overview / wallboard: live KPIs every 5 s, calls per hour, top flows, queue sizes."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts, ui

REFRESH_S = 5


def kpis(d: dict[str, Any]) -> list[tuple[str, str, str, float | None]]:
    """(key, label with unit, shown value, raw value for the colour) for each card."""
    return [
        ("activeCalls", "Active calls", str(d.get("activeCalls", 0)), d.get("activeCalls")),
        ("callsInQueue", "In queue (callers)", str(d.get("callsInQueue", 0)),
         d.get("callsInQueue")),
        ("availableAgents", "Agents available / total",
         f"{d.get('availableAgents', 0)} / {d.get('totalAgents', 0)}", d.get("availableAgents")),
        ("callsToday", "Calls today", str(d.get("callsToday", 0)), d.get("callsToday")),
        ("avgCallDuration", "Avg call duration", ui.fmt_duration(d.get("avgCallDuration")),
         d.get("avgCallDuration")),
        ("successRate", "Success rate (%)", ui.fmt_pct(d.get("successRate")),
         d.get("successRate")),
        ("serviceLevel", "Service level in queue (%)", ui.fmt_pct(d.get("serviceLevel")),
         d.get("serviceLevel")),
        ("abandonRate", "Abandoned in queue (%)", ui.fmt_pct(d.get("abandonRate")),
         d.get("abandonRate")),
        ("avgSpeedOfAnswer", "Avg speed of answer (s)",
         "—" if d.get("avgSpeedOfAnswer") is None else f"{d['avgSpeedOfAnswer']:.0f} s",
         d.get("avgSpeedOfAnswer")),
        ("longestWait", "Longest wait now (s)", f"{float(d.get('longestWait') or 0):.0f} s",
         d.get("longestWait")),
    ]


def cards(d: dict[str, Any]) -> None:
    rows = kpis(d)
    for start in (0, 5):
        cols = st.columns(5)
        for col, (_, label, shown, _raw) in zip(cols, rows[start:start + 5], strict=True):
            col.metric(label, shown)


def wallboard(d: dict[str, Any]) -> None:
    tiles = []
    for key, label, shown, raw in kpis(d):
        colour = charts.metric_colour(key, raw)
        tiles.append(
            f'<div class="wb-tile" style="border-top:8px solid {colour}">'
            f'<div class="wb-label">{label}</div>'
            f'<div class="wb-value" style="color:{colour}">{shown}</div></div>'
        )
    st.markdown(
        "<style>.wb-grid{display:grid;grid-template-columns:repeat(5,1fr);gap:14px}"
        ".wb-tile{background:#111827;border-radius:10px;padding:14px 18px}"
        ".wb-label{color:#d1d5db;font-size:1.1rem}"
        ".wb-value{font-size:3.6rem;font-weight:700;line-height:1.15}"
        "[data-testid='stSidebar']{display:none}</style>"
        f'<div class="wb-grid">{"".join(tiles)}</div>',
        unsafe_allow_html=True,
    )


@st.fragment(run_every=REFRESH_S)
def live_section(wall: bool) -> None:
    api = ui.client()
    data = ui.load(lambda: api.get("/api/analytics/dashboard"), what="live metrics")
    if data is None:
        return
    if wall:
        wallboard(data)
    else:
        cards(data)
    st.caption(
        f"As of {ui.fmt_time(data.get('asOf'), with_date=False)} {ui.TZ_LABEL} · "
        f"refreshes every {REFRESH_S} s · 'today' since "
        f"{ui.fmt_time(data.get('since'))} ({data.get('timezone', ui.TZ_NAME)})"
    )
    left, right = st.columns(2)
    with left:
        flows = data.get("topFlows") or []
        if flows:
            st.plotly_chart(charts.top_flows(flows), key="top_flows")
        else:
            st.info("No calls today yet. Place a test call with `ivr call` to see flows here.")
    with right:
        queues = ui.load(lambda: api.items("/api/queues"), what="queues")
        if queues and any(int(q.get("waiting") or 0) for q in queues):
            st.plotly_chart(charts.queue_sizes(queues), key="queue_sizes")
        elif queues:
            st.success(f"Nobody is waiting in any of the {len(queues)} queues.")
        elif queues is not None:
            st.info("No queues yet. Create one on the Queues page.")


def calls_per_hour() -> None:
    api = ui.client()
    start, end = ui.day_range(ui.today(), ui.today())
    metrics = ui.load(
        lambda: api.get("/api/analytics/calls/metrics", interval="hour", tz=ui.TZ_NAME,
                        **{"from": start, "to": end}),
        what="calls per hour",
    )
    if metrics is None:
        return
    series = metrics.get("series") or []
    if not any(int(p.get("calls") or 0) for p in series):
        st.info("No calls today yet: the hourly chart fills in as calls arrive.")
        return
    st.plotly_chart(
        charts.calls_over_time(series, interval="hour", tz=ui.TZ, tz_label=ui.TZ_LABEL),
        key="per_hour",
    )


wall = st.toggle("Wallboard mode (large numbers, colour thresholds, no sidebar)",
                 key="wallboard")
if not wall:
    ui.header("Overview", "Live contact-centre figures")
live_section(wall)
if not wall:
    calls_per_hour()
