"""Queues: live size, longest wait, service level, who is waiting, and configuration."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, ui

ui.header("Queues", "Callers waiting now and how each queue is doing today")
api = ui.client()


@st.fragment(run_every=5)
def queues_view() -> None:
    queues = ui.load(lambda: api.items("/api/queues"), what="queues")
    if queues is None:
        return
    if not queues:
        st.info("No queues yet. An admin creates them through the API (POST /api/queues) or "
                "`ivr seed` loads the sample queues.")
        return
    if any(int(q.get("waiting") or 0) for q in queues):
        st.plotly_chart(charts.queue_sizes(queues), key="q_sizes")
    else:
        st.success(f"Nobody is waiting in any of the {len(queues)} queues.")
    names = {q["id"]: q["name"] for q in queues}
    queue_id = st.selectbox("Queue", list(names), format_func=names.get, key="q_pick")
    queue = next(q for q in queues if q["id"] == queue_id)
    stats = ui.load(lambda: api.get(f"/api/queues/{queue_id}/stats"), what="queue statistics")
    if stats:
        c = st.columns(6)
        c[0].metric("Waiting (callers)", stats.get("size", 0))
        c[1].metric("Longest wait (s)", f"{float(stats.get('longestWaitS') or 0):.0f}")
        c[2].metric(f"Service level ≤{queue.get('serviceLevelS', 20)} s (%)",
                    ui.fmt_pct(stats.get("serviceLevel")))
        c[3].metric("Abandoned (%)", ui.fmt_pct(stats.get("abandonmentRate")))
        c[4].metric("Agents available / staffed",
                    f"{stats.get('agentsAvailable', 0)} / {stats.get('agentsStaffed', 0)}")
        ewt = stats.get("expectedWaitNewCallerS")
        c[5].metric("Expected wait (s)", "—" if ewt is None else f"{ewt:.0f}",
                    help="Erlang C estimate for a caller joining now; — when overloaded")
        st.caption(
            f"Since {ui.fmt_time(stats.get('since'))} {ui.TZ_LABEL}: offered "
            f"{stats.get('offered', 0)}, answered {stats.get('answered', 0)}, abandoned "
            f"{stats.get('abandoned', 0)}, timed out {stats.get('timedOut', 0)}, overflowed "
            f"{stats.get('overflowed', 0)}"
        )
    entries = ui.load(lambda: api.get(f"/api/queues/{queue_id}/entries"), what="queue entries")
    if entries is not None:
        live = entries.get("live") or []
        st.markdown("**Waiting now**")
        if live:
            st.dataframe(
                [
                    {"position": e["position"], "call": e["callSid"], "caller": e["caller"],
                     "kind": e["kind"], "priority": e["priority"],
                     "waited (s)": round(float(e.get("waitedS") or 0))}
                    for e in live
                ],
                hide_index=True,
            )
        else:
            st.caption("Nobody is waiting in this queue.")
    with st.expander("Configuration"):
        st.dataframe(
            [
                {"setting": k, "value": str(queue.get(k))}
                for k in ("strategy", "requiredSkills", "optionalSkills", "priority", "maxSize",
                          "maxWaitS", "serviceLevelS", "announceIntervalS", "announcePosition",
                          "announceWaitTime", "holdMessage", "holdMusicUrl", "overflow",
                          "callbackEnabled", "description")
            ],
            hide_index=True,
        )


queues_view()
