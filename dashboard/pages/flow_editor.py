"""Visual flow editor: the draft on a React Flow canvas (streamlit-flow-component) to move,
connect and delete; forms to add nodes, configure the selected node and name new edges' ports;
saved as a draft through the flows API, with validation shown before anyone publishes."""

from __future__ import annotations

import json
import re

import streamlit as st
from streamlit_flow import streamlit_flow

from dashboard import ui
from dashboard.flow_model import (
    CONFIG_TEMPLATES,
    NODE_TYPES,
    FlowDoc,
    FlowNode,
    from_canvas,
    to_canvas,
)

NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

ui.header("Flow editor", "Edit a flow's draft; publishing happens on the Flows page")
api = ui.client()
flows = ui.load(lambda: api.items("/api/flows"), what="flows")
if flows is None:
    st.stop()
if not flows:
    st.info("No flows to edit yet. Import one on the Flows page or run `ivr seed`.")
    st.stop()
names = {int(f["id"]): f["name"] for f in flows}
flow_id = st.selectbox("Flow", list(names), format_func=lambda i: f"#{i} {names[i]}",
                       key="ed_pick")


def load_draft() -> None:
    flow = ui.load(lambda: api.get(f"/api/flows/{flow_id}"), what="the draft")
    if flow is None:
        st.stop()
    doc = FlowDoc.from_api(flow)
    for key in [k for k in st.session_state if str(k).startswith(("ed_cfg_", "ed_name_",
                                                                  "ed_entry_", "port_"))]:
        del st.session_state[key]  # forms show the loaded draft, not what was typed before
    st.session_state.update(
        ed_flow=flow_id, ed_rev=flow["draftRevision"], ed_doc=doc, ed_canvas=to_canvas(doc),
        ed_problems=None, ed_dirty=False,
    )


if st.session_state.get("ed_flow") != flow_id:
    load_draft()

doc: FlowDoc = st.session_state["ed_doc"]
problems = st.session_state.get("ed_problems") or []


def set_doc(new: FlowDoc, *, redraw: bool) -> None:
    st.session_state["ed_doc"] = new
    st.session_state["ed_dirty"] = True
    if redraw:
        st.session_state["ed_canvas"] = to_canvas(new, problems)


top = st.columns([1, 1, 1, 3])
save = top[0].button("Save draft", type="primary", key="ed_save")
check = top[1].button("Validate", key="ed_validate")
if top[2].button("Discard changes", key="ed_reload"):
    load_draft()
    st.rerun()
status_slot = top[3].empty()  # filled once the canvas has reported this run's edits

canvas = streamlit_flow(
    "ed_canvas_widget",
    st.session_state["ed_canvas"],
    height=560,
    fit_view=True,
    allow_new_edges=True,
    get_node_on_click=True,
    get_edge_on_click=True,
    enable_node_menu=True,
    enable_edge_menu=True,
    show_minimap=True,
    hide_watermark=True,
)
if canvas.timestamp < st.session_state["ed_canvas"].timestamp:
    # The component repeats its last report until it sends a new one; a newer state from
    # Python (reload, added node, applied form) wins over that stale echo.
    canvas = st.session_state["ed_canvas"]
st.session_state["ed_canvas"] = canvas
updated, unlabelled = from_canvas(doc, canvas)
if updated != doc:
    set_doc(updated, redraw=False)
    doc = updated
st.caption("Drag to move, draw from a node's bottom handle to connect, right-click a node or "
           "edge to delete it. Click a node to configure it below.")


def show_status() -> None:
    status_slot.caption(
        f"Draft revision {st.session_state['ed_rev']}"
        + (" · unsaved changes" if st.session_state.get("ed_dirty") else " · saved")
    )


show_status()

if unlabelled:
    with st.form("ed_ports_form"):
        st.warning("New connections need a port: which way out of the node do they mean?")
        chosen: dict[str, str] = {}
        for e in unlabelled:
            free = doc.free_ports(e.from_node)
            chosen[e.edge_id] = st.selectbox(
                f"{e.from_node} → {e.to_node}", free or ["(no free port)"], key=f"port_{e.edge_id}"
            )
        if st.form_submit_button("Set ports"):
            fixed, _ = from_canvas(
                doc, canvas, {k: v for k, v in chosen.items() if v != "(no free port)"}
            )
            set_doc(fixed, redraw=True)
            st.rerun()

left, right = st.columns(2)
with left:
    st.subheader("Selected node")
    ids = [n.id for n in doc.nodes]
    selected = canvas.selected_id if canvas.selected_id in ids else None
    if ids:
        node_id = st.selectbox("Node", ids, index=ids.index(selected) if selected else 0,
                               format_func=lambda i: f"{doc.node(i).name} ({i})",
                               key=f"ed_node_{selected or ''}")
        node = doc.node(node_id)
        assert node is not None
        with st.form("ed_node_form"):
            name = st.text_input("Name", value=node.name, key=f"ed_name_{node.id}")
            entry = st.checkbox("Calls start here (entry node)",
                                value=doc.entry_node == node.id, key=f"ed_entry_{node.id}")
            config_text = st.text_area(
                f"Configuration of this {node.type} node (JSON)",
                value=json.dumps(node.config, indent=2, ensure_ascii=False),
                height=260, key=f"ed_cfg_{node.id}",
            )
            ports = ", ".join(f"{p.name}{'' if p.required else ' (optional)'}"
                              for p in node.ports()) or "none (the call ends here)"
            st.caption(f"Ports: {ports}")
            c1, c2 = st.columns(2)
            apply = c1.form_submit_button("Apply to draft")
            remove = c2.form_submit_button("Delete node")
        if apply:
            try:
                config = json.loads(config_text)
            except ValueError as exc:
                st.error(f"The configuration is not valid JSON ({exc}); nothing was changed.")
            else:
                if not isinstance(config, dict):
                    st.error("The configuration must be a JSON object; nothing was changed.")
                elif not name.strip():
                    st.error("A node needs a name; nothing was changed.")
                else:
                    new = doc.with_node(FlowNode(node.id, node.type, name.strip(), node.x,
                                                 node.y, config))
                    if entry:
                        new.entry_node = node.id
                    elif new.entry_node == node.id:
                        new.entry_node = None
                    set_doc(new, redraw=True)
                    st.rerun()
        if remove:
            new = FlowDoc(doc.name, doc.description,
                          None if doc.entry_node == node.id else doc.entry_node,
                          [n for n in doc.nodes if n.id != node.id],
                          [c for c in doc.connections
                           if node.id not in (c.from_node, c.to_node)])
            set_doc(new, redraw=True)
            st.rerun()
    else:
        st.info("The draft is empty: add its first node (a welcome node) on the right.")

with right:
    st.subheader("Add a node")
    with st.form("ed_add_form"):
        new_type = st.selectbox("Type", NODE_TYPES, key="ed_add_type")
        new_id = st.text_input("Id (letters, digits, _ and -)", key="ed_add_id")
        new_name = st.text_input("Name", key="ed_add_name")
        add = st.form_submit_button("Add node")
    if add:
        if not NODE_ID.match(new_id or ""):
            st.error("The id must be 1-64 letters, digits, _ or -; nothing was added.")
        elif doc.node(new_id):
            st.error(f"There is already a node {new_id!r}; pick another id.")
        else:
            lowest = max((n.y for n in doc.nodes), default=-150.0)
            node = FlowNode(new_id, new_type, new_name.strip() or new_id, 0.0, lowest + 150,
                            json.loads(json.dumps(CONFIG_TEMPLATES[new_type])))
            set_doc(doc.with_node(node), redraw=True)
            st.rerun()
    st.subheader("Flow")
    st.caption(f"{len(doc.nodes)} nodes · {len(doc.connections)} connections · "
               f"entry: {doc.entry_node or 'the welcome node'}")


def show_problems(found: list[dict]) -> None:
    st.session_state["ed_problems"] = found
    if found:
        st.warning(f"{len(found)} problem(s) to fix before this draft can be published:")
        st.dataframe(ui.problems_table(found), hide_index=True)
    else:
        st.success("The saved draft is valid: publish it from the Flows page.")


if save:
    if unlabelled:
        st.error("Give every new connection a port before saving; nothing was saved.")
    else:
        body = {**doc.to_api(), "draftRevision": st.session_state["ed_rev"]}
        saved = ui.act(lambda: api.put(f"/api/flows/{flow_id}", body), what="save the draft")
        if saved is not None:
            st.session_state["ed_rev"] = saved["draftRevision"]
            st.session_state["ed_dirty"] = False
            show_status()
            st.success(f"Saved as draft revision {saved['draftRevision']}.")
            check = True
        else:
            st.caption("Your edits are kept here; fix the problem and save again. If someone "
                       "else saved meanwhile, use Discard changes to load their version.")
if check:
    if st.session_state.get("ed_dirty"):
        st.info("Validation checks the saved draft: save your changes first.")
    result = ui.load(lambda: api.post(f"/api/flows/{flow_id}/validate"), what="validation")
    if result is not None:
        show_problems(result.get("problems") or [])
        st.session_state["ed_canvas"] = to_canvas(st.session_state["ed_doc"],
                                                  result.get("problems") or [])
