"""Flows: the list; one flow's graph (validation problems marked), versions with publish and
rollback, import/export as JSON, and its caller funnel as a Sankey."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import streamlit as st

from dashboard import charts, ui
from dashboard.flow_model import FlowDoc, to_dot

FUNNEL_CALLS = 1000  # history rows read for the funnel (newest first)

ui.header("Flows", "Call flows, their versions and how callers move through them")
api = ui.client()
user = ui.me()

flows = ui.load(lambda: api.items("/api/flows"), what="flows")
if flows is None:
    st.stop()

with st.expander("Import a flow from JSON", expanded=not flows):
    if not user.can("flows:edit"):
        st.caption("Your role cannot create flows.")
    else:
        upload = st.file_uploader("Exported flow document (.json)", type=["json"],
                                  key="flow_import_file")
        new_name = st.text_input("Import under this name (optional)", key="flow_import_name")
        if st.button("Import as a new draft", key="flow_import", disabled=upload is None):
            try:
                document = json.loads(upload.getvalue()) if upload else None
            except (ValueError, UnicodeDecodeError) as exc:
                st.error(f"That file is not JSON: {exc}")
                document = None
            if isinstance(document, dict):
                created = ui.act(
                    lambda: api.post("/api/flows/import", document, name=new_name.strip() or None),
                    what="import the flow",
                )
                if created:
                    ui.flash(f"Imported as draft flow #{created['id']} “{created['name']}”; "
                             "pick it below.")
                    st.rerun()
            elif document is not None:
                st.error("The document must be a JSON object exported from a flow.")

if not flows:
    st.info("No flows yet. Import one above, or run `ivr seed` to load the sample flows.")
    st.stop()

st.dataframe(
    [
        {
            "id": f["id"],
            "name": f["name"],
            "live version": str(f.get("liveVersion") or "draft only"),
            "draft revision": f.get("draftRevision"),
            "nodes": f.get("nodeCount"),
            "default": "✓" if f.get("isDefault") else "",
            "numbers": ", ".join(f.get("numbers") or []),
            "updated (IST)": ui.fmt_time(f.get("updatedAt")),
        }
        for f in flows
    ],
    hide_index=True,
)

names = {int(f["id"]): f["name"] for f in flows}
flow_id = st.selectbox("Flow", list(names), format_func=lambda i: f"#{i} {names[i]}",
                       key="flow_pick")
flow = ui.load(lambda: api.get(f"/api/flows/{flow_id}"), what="the flow")
if flow is None:
    st.stop()
doc = FlowDoc.from_api(flow)

# Validation is a POST (audited), so it is asked once per draft revision, not every rerun.
vkey = (flow_id, flow.get("draftRevision"))
if st.session_state.get("flow_validation", (None, None))[0] != vkey:
    result = ui.load(lambda: api.post(f"/api/flows/{flow_id}/validate"), what="validation")
    st.session_state["flow_validation"] = (vkey, result)
validation: dict[str, Any] | None = st.session_state["flow_validation"][1]
problems = (validation or {}).get("problems") or []

graph_tab, versions_tab, funnel_tab, export_tab = st.tabs(
    ["Graph", "Versions", "Funnel", "Export"]
)

with graph_tab:
    if validation is not None:
        if problems:
            st.warning(f"The draft has {len(problems)} problem(s) that block publishing; "
                       "they are marked in red on their nodes.")
            st.dataframe(ui.problems_table(problems), hide_index=True)
        else:
            st.success("The draft is valid and can be published.")
    if doc.nodes:
        st.graphviz_chart(to_dot(doc, problems), use_container_width=True)
    else:
        st.info("This flow has no nodes yet. Add some in the Flow editor.")
    st.caption("Shapes show node types; edge labels are ports; the entry node has a double "
               "border. Edit the flow on the Flow editor page.")

with versions_tab:
    versions = ui.load(lambda: api.get(f"/api/flows/{flow_id}/versions"), what="versions") or []
    if versions:
        st.dataframe(
            [
                {
                    "version": v["version"],
                    "live": "✓" if v.get("isLive") else "",
                    "published (IST)": ui.fmt_time(v.get("publishedAt")),
                    "note": v.get("note") or "",
                    "checksum": str(v.get("checksum", ""))[:12],
                }
                for v in versions
            ],
            hide_index=True,
        )
    else:
        st.info("Never published: calls do not reach this flow until a version is published.")
    if user.can("flows:publish"):
        with st.form("publish_form"):
            note = st.text_input("Publish note (optional)", key="publish_note")
            publish = st.form_submit_button(
                f"Publish draft revision {flow.get('draftRevision')}", type="primary",
                disabled=bool(problems),
            )
        if problems:
            st.caption("Fix the problems shown on the Graph tab before publishing.")
        if publish:
            done = ui.act(lambda: api.post(f"/api/flows/{flow_id}/publish",
                                           {"note": note} if note else None),
                          what="publish")
            if done:
                ui.flash(f"Version {done['version']} is live.")
                st.rerun()
        older = [v["version"] for v in versions if not v.get("isLive")]
        if older:
            c1, c2 = st.columns([1, 3])
            target = c1.selectbox("Make live again", older, key="rollback_version")
            if c2.button(f"Roll back to version {target}", key="rollback"):
                done = ui.act(
                    lambda: api.post(f"/api/flows/{flow_id}/versions/{target}/publish"),
                    what="roll back",
                )
                if done:
                    ui.flash(f"Version {done['version']} is live again; calls in progress "
                             "keep the version they started on.")
                    st.rerun()
    else:
        st.caption("Publishing and rollback need an admin.")

with funnel_tab:
    days = st.slider("Days of calls", 1, 30, 7, key="funnel_days")
    lo, hi = ui.day_range(ui.today() - timedelta(days=days - 1), ui.today())
    stats = ui.load(
        lambda: api.get(f"/api/analytics/flows/{flow_id}/analytics",
                        tz=ui.TZ_NAME, **{"from": lo, "to": hi}),
        what="flow analytics",
    )
    if stats is not None:
        c = st.columns(5)
        c[0].metric("Calls", stats.get("totalExecutions", 0))
        c[1].metric("Completed", stats.get("completed", 0))
        c[2].metric("Abandoned", stats.get("abandoned", 0))
        c[3].metric("Success rate (%)", ui.fmt_pct(stats.get("successRate")))
        c[4].metric("Avg duration", ui.fmt_duration(stats.get("averageDuration")))
    calls: list[dict[str, Any]] = []
    cursor = None
    while len(calls) < FUNNEL_CALLS:
        page = ui.load(
            lambda c=cursor: api.get("/api/analytics/calls/history", flowId=flow_id,
                                     limit=200, cursor=c, tz=ui.TZ_NAME,
                                     **{"from": lo, "to": hi}),
            what="calls for the funnel",
        )
        if not page:
            break
        calls.extend(page.get("items") or [])
        cursor = page.get("nextCursor")
        if not cursor:
            break
    if calls:
        node_names = {n.id: n.name for n in doc.nodes}
        st.plotly_chart(charts.flow_sankey(calls, node_names), key="flow_sankey")
        if stats and stats.get("topNodes"):
            st.dataframe(
                [
                    {"node": t.get("nodeName") or t["nodeId"], "type": t.get("nodeType"),
                     "visits": t.get("visitCount"), "callers": t.get("callsReached"),
                     "hung up here": t.get("dropOffs"),
                     "drop-off (%)": t.get("dropOffRate")}
                    for t in stats["topNodes"]
                ],
                hide_index=True,
            )
    else:
        st.info("No calls reached this flow in the chosen days. Widen the range, or place a "
                "test call with `ivr call`.")

with export_tab:
    export = ui.load(lambda: api.get(f"/api/flows/{flow_id}/export"), what="the export")
    if export is not None:
        st.download_button(
            "Download the draft as JSON", json.dumps(export, indent=2, ensure_ascii=False),
            file_name=f"flow-{flow_id}.json", mime="application/json", key="flow_export",
        )
        st.caption("Import it here or on another installation (it becomes a new draft).")
