"""Call history: filters, keyset-paginated table, one call's path as a timeline with its
recording, and a CSV download of the filtered set from the API's export."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import streamlit as st

from dashboard import charts, ui

PAGE_SIZE = 25
STATUSES = ["", "completed", "failed", "abandoned", "in_progress"]

ui.header("Call history", "Past and current calls, newest first")
api = ui.client()

flows = ui.load(lambda: ui.lookup_items("/api/flows"), what="flows") or []
flow_names = {int(f["id"]): f["name"] for f in flows}

with st.form("history_filters"):
    c1, c2, c3, c4 = st.columns([2, 2, 1, 2])
    period = c1.date_input(
        f"Date range ({ui.TZ_LABEL})",
        value=(ui.today() - timedelta(days=6), ui.today()),
        key="hist_range",
    )
    flow_choice = c2.selectbox(
        "Flow", [0, *flow_names], format_func=lambda i: flow_names.get(i, "All flows"),
        key="hist_flow",
    )
    status = c3.selectbox("Status", STATUSES, format_func=lambda s: s or "Any",
                          key="hist_status")
    caller = c4.text_input("Caller number contains", key="hist_caller",
                           placeholder="e.g. 98765")
    st.form_submit_button("Apply filters")

if isinstance(period, tuple) and len(period) == 2:
    start, end = period
elif isinstance(period, tuple) and period:
    start = end = period[0]
else:
    start = end = period if not isinstance(period, tuple) else ui.today()
if start > end:
    st.error("The start date is after the end date: pick a range that runs forwards.")
    st.stop()
lo, hi = ui.day_range(start, end)
filters: dict[str, Any] = {"from": lo, "to": hi, "flowId": flow_choice or None,
                           "status": status or None, "caller": caller.strip() or None,
                           "tz": ui.TZ_NAME}

# Cursors of the pages seen so far, per filter set, so "previous" works with keyset paging.
key = repr(sorted((k, str(v)) for k, v in filters.items()))
if st.session_state.get("hist_key") != key:
    st.session_state["hist_key"] = key
    st.session_state["hist_cursors"] = [None]
cursors: list[str | None] = st.session_state["hist_cursors"]

page = ui.load(
    lambda: api.get("/api/analytics/calls/history", limit=PAGE_SIZE, cursor=cursors[-1],
                    **filters),
    what="call history",
)
if page is None:
    st.stop()
items: list[dict[str, Any]] = page.get("items") or []

if not items:
    st.info("No calls match these filters. Widen the date range or clear the flow, status "
            "and caller filters.")
else:
    table = [
        {
            "call": i["callSid"],
            "started (IST)": ui.fmt_time(i.get("startedAt")),
            "flow": i.get("flowName") or "—",
            "caller": i.get("caller") or "—",
            "status": i.get("status"),
            "duration (s)": None if i.get("duration") is None else round(i["duration"]),
            "path": i.get("pathSummary") or " → ".join(i.get("path") or []),
            "agent": i.get("agentName") or "",
            "queue wait (s)": None if i.get("queueWait") is None else round(i["queueWait"]),
            "recording": i.get("recordingUrl") or None,
        }
        for i in items
    ]
    st.dataframe(
        table, hide_index=True,
        column_config={"recording": st.column_config.LinkColumn("recording",
                                                                display_text="listen")},
    )
    st.caption(f"Page {len(cursors)} · {len(items)} call(s) on this page")

nav1, nav2, _ = st.columns([1, 1, 6])
if nav1.button("← Newer", disabled=len(cursors) == 1, key="hist_prev"):
    cursors.pop()
    st.rerun()
if nav2.button("Older →", disabled=not page.get("nextCursor"), key="hist_next"):
    cursors.append(page["nextCursor"])
    st.rerun()

# --- CSV export ---------------------------------------------------------------------------
st.subheader("Export")
if not ui.me().can("analytics:export"):
    st.caption("Your role cannot export call history (needs analytics:export).")
else:
    if st.button("Prepare CSV of the filtered calls", key="hist_csv"):
        data = ui.load(
            lambda: api.download("/api/analytics/calls/export/csv", **filters),
            what="the CSV export",
        )
        if data is not None:
            st.session_state["hist_csv_data"] = (key, data)
    prepared = st.session_state.get("hist_csv_data")
    if prepared and prepared[0] == key:
        st.download_button(
            f"Download CSV ({len(prepared[1]) / 1024:.1f} KiB)", prepared[1],
            file_name=f"calls-{start}-{end}.csv", mime="text/csv", key="hist_csv_download",
        )

# --- one call -----------------------------------------------------------------------------
st.subheader("Call detail")
if not items:
    st.caption("Pick a call once the table has some.")
    st.stop()
chosen = st.selectbox(
    "Call", [i["callSid"] for i in items],
    format_func=lambda sid: next(
        f"{ui.fmt_time(i.get('startedAt'))} · {i.get('flowName') or '—'} · {i.get('status')}"
        f" · {sid}"
        for i in items if i["callSid"] == sid
    ),
    key="hist_call",
)
call = next(i for i in items if i["callSid"] == chosen)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Status", str(call.get("status")))
m2.metric("Duration", ui.fmt_duration(call.get("duration")))
m3.metric("Queue wait (s)", "—" if call.get("queueWait") is None else f"{call['queueWait']:.0f}")
m4.metric("Agent", call.get("agentName") or "—")
st.markdown(f"**Path:** {' → '.join(call.get('path') or []) or '—'}")
if call.get("endReason"):
    st.caption(f"Ended because: {call['endReason']} · ended {ui.fmt_time(call.get('endedAt'))}")

visits: list[dict[str, Any]] = []
try:
    detail = api.get(f"/api/calls/{quote(chosen)}")
    visits = detail.get("history") or []
except ui.ApiError:
    detail = None  # the call's workflow is gone from Temporal: the stored path still shows
if visits:
    st.plotly_chart(
        charts.call_timeline(visits, ended_at=ui.parse_ts(call.get("endedAt")), tz=ui.TZ,
                             tz_label=ui.TZ_LABEL),
        key="hist_timeline",
    )
else:
    st.caption("Step timings are kept while the call's workflow is retained in Temporal; "
               "this call shows its stored path only.")

url = call.get("recordingUrl")
if url:
    st.audio(url)
    st.markdown(f"[Open the recording]({url})")
else:
    st.caption("No recording for this call.")
