"""Every dashboard page under AppTest, against the real API with seeded data and simulated calls:
the figures on the page are the ones the calls produced, and bad input gets a clear message."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import date, timedelta

import pytest
from dash_support import (
    Backend,
    metrics,
    no_tracebacks,
    plotly_specs,
    signed_in,
    texts,
)
from streamlit.testing.v1 import AppTest

from dashboard.api_client import ApiClient

MAIN_FLOW = "Main Customer Support Flow"


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def need(backend: Backend, path: str) -> None:
    if not backend.has(path):
        pytest.skip(f"the API has no {path} yet (another issue builds it); the page says so")


# --- sign-in -------------------------------------------------------------------------------


def test_wrong_password_says_so_and_keeps_the_username(backend):
    at = AppTest.from_file(str(backend_app()), default_timeout=60).run()
    at.text_input(key="login_username").input("admin")
    at.text_input(key="login_password").input("not-the-password")
    at.button[0].click().run()
    no_tracebacks(at)
    assert "Wrong username or password" in at.error[0].value
    assert at.text_input(key="login_username").value == "admin"
    assert not at.metric  # still on the sign-in form


def test_api_down_is_a_message_not_a_traceback(backend, monkeypatch):
    monkeypatch.setenv("IVR_API_URL", "http://127.0.0.1:9")  # nothing listens on discard
    at = AppTest.from_file(str(backend_app()), default_timeout=60).run()
    at.text_input(key="login_username").input("admin")
    at.text_input(key="login_password").input("admin123")
    at.button[0].click().run()
    no_tracebacks(at)
    assert "is not reachable" in at.error[0].value


def test_expired_access_token_is_refreshed_and_a_dead_session_asks_to_sign_in(backend):
    at = signed_in("admin", "queues.py")
    api: ApiClient = at.session_state["api"]
    api.access_token = "expired"  # the next request gets a 401 and refreshes
    at.run()
    no_tracebacks(at)
    assert api.refreshes == 1 and not at.error
    api.access_token = "expired"
    api.refresh_token = "revoked"
    at.run()
    no_tracebacks(at)
    assert "Your session has ended" in texts(at)


def test_pages_follow_the_role(backend):
    at = signed_in("agent")
    no_tracebacks(at)
    with pytest.raises(ValueError):
        at.switch_page("pages/users.py")  # not registered for an agent
    at.switch_page("pages/agents.py").run()
    no_tracebacks(at)
    assert at.title[0].value == "Agents"
    assert "not linked to an agent" in texts(at)  # the seeded agent user has no agent row
    assert "Performance" not in [s.value for s in at.subheader]  # analytics:view is managers'


# --- overview --------------------------------------------------------------------------------


def test_overview_shows_the_calls_made(backend):
    need(backend, "/api/analytics/dashboard")
    at = signed_in("admin", "overview.py")
    no_tracebacks(at)
    api = backend.get("/api/analytics/dashboard").json()
    shown = metrics(at)
    assert at.title[0].value == "Overview"
    assert shown["Calls today"] == str(api["callsToday"]) == str(len(backend.calls))
    assert shown["Agents available / total"] == f"{api['availableAgents']} / 4"
    # Two billing calls and the no-choice call completed; the silent caller hung up.
    assert shown["Success rate (%)"] == f"{api['successRate']:.1f} %"
    specs = plotly_specs(at)
    top = next(s for s in specs if s["layout"]["title"]["text"].startswith("Top flows"))
    assert top["data"][0]["y"] == [MAIN_FLOW] and top["data"][0]["x"] == [len(backend.calls)]
    hourly = next(s for s in specs if s["layout"]["title"]["text"] == "Calls per hour (IST)")
    assert sum(sum(t["y"]) for t in hourly["data"]) == len(backend.calls)
    assert "Nobody is waiting in any of the 2 queues." in texts(at)
    assert "Times in IST (Asia/Kolkata)" in texts(at)


def test_wallboard_mode_large_coloured_tiles(backend):
    need(backend, "/api/analytics/dashboard")
    at = signed_in("admin", "overview.py")
    at.toggle(key="wallboard").set_value(True).run()
    no_tracebacks(at)
    board = next(m.value for m in at.markdown if "wb-grid" in m.value)
    assert board.count('class="wb-tile"') == 10
    assert f">{len(backend.calls)}</div>" in board  # calls today, as a large number
    assert "#d64545" in board  # no agent available: red


# --- live calls ------------------------------------------------------------------------------


def test_live_calls_show_the_queued_caller_and_flag_it_stuck(backend):
    need(backend, "/api/calls/active")
    sid = backend.run(backend.hold_in_tech_queue())
    try:
        at = signed_in("admin", "live_calls.py")
        for _ in range(30):  # Temporal visibility is eventually consistent (~1 s)
            no_tracebacks(at)
            if at.dataframe and sid in list(at.dataframe[0].value["call"]):
                break
            time.sleep(0.3)
            at.run()
        table = at.dataframe[0].value
        row = table[table["call"] == sid].iloc[0]
        assert row["node"] == "Tech Support Queue"
        assert row["queue position"] == 1
        assert "Tech" in row["queue"]
        assert row["flow"] == MAIN_FLOW
        assert row["Temporal"].endswith(f"/workflows/call-{sid}")
        time.sleep(2.2)
        at.number_input(key="stuck_s").set_value(2).run()
        no_tracebacks(at)
        assert "stuck" in at.error[0].value and sid in at.error[0].value
        assert bool(at.dataframe[0].value.iloc[0]["stuck"]) is True  # stuck calls first

        # The same caller on the Queues page: waiting, first in line.
        at.switch_page("pages/queues.py").run()
        no_tracebacks(at)
        tech = next(q for q in backend.get("/api/queues").json()["items"] if "Tech" in q["name"])
        at.selectbox(key="q_pick").set_value(tech["id"]).run()
        assert metrics(at)["Waiting (callers)"] == "1"
        waiting = at.dataframe[0].value
        assert list(waiting["call"]) == [sid] and list(waiting["position"]) == [1]
        bars = plotly_specs(at)[0]["data"][0]
        assert dict(zip(bars["x"], bars["y"], strict=True))[tech["name"]] == 1
    finally:
        backend.run(backend.hang_up(sid))


# --- call history ----------------------------------------------------------------------------


def test_call_history_table_filters_detail_and_csv(backend):
    need(backend, "/api/analytics/calls/history")
    at = signed_in("admin", "call_history.py")
    no_tracebacks(at)
    sids = {c.call_sid for c in backend.calls}
    table = at.dataframe[0].value
    assert sids <= set(table["call"])
    answered = table[table["agent"] != ""]
    assert set(answered["call"]) == {backend.calls[0].call_sid, backend.calls[1].call_sid}
    assert set(answered["status"]) == {"completed"}

    at.selectbox(key="hist_status").set_value("abandoned")
    button(at, "Apply filters").click().run()
    no_tracebacks(at)
    abandoned = at.dataframe[0].value
    assert set(abandoned["status"]) == {"abandoned"}
    assert backend.calls[3].call_sid in set(abandoned["call"])  # the caller who hung up
    assert not sids - {backend.calls[3].call_sid} & set(abandoned["call"])

    at.selectbox(key="hist_status").set_value("")
    button(at, "Apply filters").click().run()
    billing_sid = backend.calls[0].call_sid
    at.selectbox(key="hist_call").set_value(billing_sid).run()
    no_tracebacks(at)
    assert metrics(at)["Status"] == "completed"
    assert "billing_info → billing_transfer" in texts(at)
    assert "No recording for this call." in texts(at)
    timeline = next(s for s in plotly_specs(at)
                    if s["layout"]["title"]["text"].startswith("Path through the flow"))
    assert timeline["data"][0]["y"][0].startswith("1. ")

    voicemail = backend.calls[4].call_sid  # asked for an agent, none free: left a message
    at.selectbox(key="hist_call").set_value(voicemail).run()
    no_tracebacks(at)
    assert "voicemail" in texts(at)
    audio = at.get("audio")
    assert audio and voicemail in audio[0].proto.url  # the simulator's recording URL
    assert f"/{voicemail}/1.mp3" in texts(at)  # and the link to it

    button(at, "Prepare CSV of the filtered calls").click().run()
    no_tracebacks(at)
    assert at.download_button, "a download button for the CSV"
    rows = list(csv.reader(io.StringIO(at.session_state["hist_csv_data"][1].decode("utf-8"))))
    assert sids <= {cell for row in rows[1:] for cell in row}


def test_call_history_inverted_dates_explained(backend):
    at = signed_in("admin", "call_history.py")
    at.date_input(key="hist_range").set_value((date.today(), date.today() - timedelta(days=3)))
    button(at, "Apply filters").click().run()
    no_tracebacks(at)
    assert "start date is after the end date" in at.error[0].value


# --- flows -----------------------------------------------------------------------------------


def _flow_id(backend: Backend, name: str) -> int:
    flows = backend.get("/api/flows", limit=200).json()["items"]
    return next(f["id"] for f in flows if f["name"] == name)


def test_flow_graph_versions_funnel_and_export(backend):
    at = signed_in("admin", "flows.py")
    no_tracebacks(at)
    main_id = _flow_id(backend, MAIN_FLOW)
    at.selectbox(key="flow_pick").set_value(main_id).run()
    no_tracebacks(at)
    dot = at.get("graphviz_chart")[0].proto.spec
    assert dot.count("[label=") >= 17 + 23  # 17 nodes and 23 labelled connections
    assert '"main_menu" -> "goodbye" [label="maxRetries"]' in dot
    assert "shape=cds" in dot  # transfers drawn as their own shape
    assert "The draft is valid" in texts(at)
    versions = at.dataframe[1].value
    assert versions["live"].iloc[0] == "✓"
    if backend.has("/api/analytics/flows/{flow_id}/analytics"):
        stats = backend.get(f"/api/analytics/flows/{main_id}/analytics").json()
        assert metrics(at)["Calls"] == str(stats["totalExecutions"])
        assert stats["totalExecutions"] >= len(backend.calls)
        sankey = next(s for s in plotly_specs(at) if s["data"][0]["type"] == "sankey")
        labels = sankey["data"][0]["node"]["label"]
        links = sankey["data"][0]["link"]
        into_menu = sum(v for s, t, v in zip(links["source"], links["target"], links["value"],
                                             strict=True)
                        if labels[t] == "Main Menu")
        assert into_menu == stats["totalExecutions"]  # every caller reached the menu
        hung = sum(v for t, v in zip(links["target"], links["value"], strict=True)
                   if labels[t] == "Hung up")
        assert hung == stats["abandoned"] >= 1
    export = next(b for b in at.download_button if b.label.startswith("Download the draft"))
    assert export is not None


def test_flow_problems_marked_on_their_nodes_and_publish_rollback(backend):
    document = {
        "format": "ivr-flow", "formatVersion": 1, "name": "Dashboard test flow",
        "nodes": [
            {"id": "welcome", "type": "welcome", "name": "Hi", "config": {"message": "Hi"}},
            {"id": "menu", "type": "menu", "name": "Menu",
             "config": {"message": "Press 1 or 2", "options": [{"digit": "1"}, {"digit": "2"}]}},
            {"id": "bye", "type": "hangup", "name": "Bye", "config": {}},
        ],
        "connections": [{"fromNode": "welcome", "toNode": "menu", "port": "next"},
                        {"fromNode": "menu", "toNode": "bye", "port": "1"}],
    }
    at = signed_in("admin", "flows.py")
    # Import through the page: a file that is not JSON is refused with a reason...
    at.file_uploader(key="flow_import_file").upload("flow.json", b"{oops", "application/json")
    at.run()
    button(at, "Import as a new draft").click().run()
    no_tracebacks(at)
    assert "That file is not JSON" in at.error[0].value
    # ...an exported document becomes a new draft.
    at.file_uploader(key="flow_import_file").upload(
        "flow.json", json.dumps(document).encode(), "application/json")
    at.run()
    button(at, "Import as a new draft").click().run()
    no_tracebacks(at)
    assert "Imported as draft flow" in at.success[0].value
    created = _flow_id(backend, "Dashboard test flow")
    at.run()
    at.selectbox(key="flow_pick").set_value(created).run()
    no_tracebacks(at)
    dot = at.get("graphviz_chart")[0].proto.spec
    menu_line = next(line for line in dot.splitlines() if line.strip().startswith('"menu" ['))
    assert 'fillcolor="#ffd6d6"' in menu_line  # port 2 is not connected
    assert "problem(s) that block publishing" in texts(at)
    publish = button(at, "Publish draft revision 1")
    assert publish.disabled

    # Fix it through the API, then publish and roll back from the page.
    flow = backend.get(f"/api/flows/{created}").json()
    body = {**{k: flow[k] for k in ("name", "nodes", "connections")},
            "draftRevision": flow["draftRevision"]}
    body["connections"].append({"fromNode": "menu", "toNode": "bye", "port": "2"})
    assert backend.run(_put(backend, f"/api/flows/{created}", body)).status_code == 200
    at.run()
    button(at, "Publish draft revision 2").click().run()
    no_tracebacks(at)
    assert "Version 1 is live" in texts(at)
    body["draftRevision"] = 2
    body["name"] = "Dashboard test flow v2"
    assert backend.run(_put(backend, f"/api/flows/{created}", body)).status_code == 200
    at.run()
    button(at, "Publish draft revision 3").click().run()
    assert "Version 2 is live" in texts(at)
    at.selectbox(key="rollback_version").set_value(1)
    button(at, "Roll back to version 1").click().run()
    no_tracebacks(at)
    assert backend.get(f"/api/flows/{created}").json()["liveVersion"] == 1


async def _import(backend: Backend, document: dict) -> int:
    import httpx

    async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
        r = await http.post("/api/flows/import", json=document,
                            headers=await backend.admin(http))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


async def _put(backend: Backend, path: str, body: dict):
    import httpx

    async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
        return await http.put(path, json=body, headers=await backend.admin(http))


def test_flow_editor_adds_configures_and_saves_a_draft(backend):
    document = {"format": "ivr-flow", "formatVersion": 1, "name": "Editor test flow",
                "nodes": [{"id": "welcome", "type": "welcome", "name": "Hi",
                           "config": {"message": "Hi"}}],
                "connections": []}
    flow_id = backend.run(_import(backend, document))
    at = signed_in("manager", "flow_editor.py")
    at.selectbox(key="ed_pick").set_value(flow_id).run()
    no_tracebacks(at)
    assert at.get("streamlit_flow") or at.get("component_instance")  # the canvas is there

    at.selectbox(key="ed_add_type").set_value("hangup")
    at.text_input(key="ed_add_id").input("bad id!")
    button(at, "Add node").click().run()
    assert "The id must be" in at.error[0].value

    at.text_input(key="ed_add_id").input("bye")
    at.text_input(key="ed_add_name").input("Goodbye")
    button(at, "Add node").click().run()
    no_tracebacks(at)
    doc = at.session_state["ed_doc"]
    assert [n.id for n in doc.nodes] == ["welcome", "bye"]

    # Configure the selected node: bad JSON changes nothing, good JSON applies.
    at.selectbox(key="ed_node_").set_value("bye").run()
    at.text_area(key="ed_cfg_bye").input("{not json")
    button(at, "Apply to draft").click().run()
    assert "not valid JSON" in at.error[0].value
    assert at.session_state["ed_doc"].node("bye").config == {"message": "Goodbye."}
    at.text_area(key="ed_cfg_bye").input(json.dumps({"message": "Thanks for calling."}))
    button(at, "Apply to draft").click().run()
    assert at.session_state["ed_doc"].node("bye").config == {"message": "Thanks for calling."}

    button(at, "Save draft").click().run()
    no_tracebacks(at)
    assert "Saved as draft revision 2" in texts(at)
    assert "problem(s) to fix" in texts(at)  # welcome's next port is not connected yet
    saved = backend.get(f"/api/flows/{flow_id}").json()
    assert [n["id"] for n in saved["nodes"]] == ["welcome", "bye"]
    assert saved["nodes"][1]["config"]["message"] == "Thanks for calling."


def test_flow_editor_keeps_edits_when_the_save_is_refused(backend):
    document = {"format": "ivr-flow", "formatVersion": 1, "name": "Editor conflict flow",
                "nodes": [{"id": "welcome", "type": "welcome", "name": "Hi",
                           "config": {"message": "Hi"}}], "connections": []}
    flow_id = backend.run(_import(backend, document))
    at = signed_in("admin", "flow_editor.py")
    at.selectbox(key="ed_pick").set_value(flow_id).run()
    at.text_input(key="ed_add_id").input("menu")
    at.selectbox(key="ed_add_type").set_value("menu")
    button(at, "Add node").click().run()
    # Someone else saves first: our revision is stale.
    flow = backend.get(f"/api/flows/{flow_id}").json()
    body = {"name": "Renamed elsewhere", "nodes": flow["nodes"], "connections": [],
            "draftRevision": flow["draftRevision"]}
    assert backend.run(_put(backend, f"/api/flows/{flow_id}", body)).status_code == 200
    button(at, "Save draft").click().run()
    no_tracebacks(at)
    assert "Could not save the draft" in at.error[0].value and "409" in at.error[0].value
    assert [n.id for n in at.session_state["ed_doc"].nodes] == ["welcome", "menu"]


# --- agents and queues -----------------------------------------------------------------------


def test_agents_board_status_change_and_performance(backend):
    at = signed_in("manager", "agents.py")
    no_tracebacks(at)
    board = at.dataframe[0].value
    assert len(board) == 4 and set(board["status"]) == {"offline"}
    assert metrics(at)["Offline (agents)"] == "4"
    agents = backend.get("/api/agents").json()["items"]
    billing = next(a for a in agents if a["team"] == "billing")
    at.selectbox(key="status_agent").set_value(billing["id"])
    at.selectbox(key="status_new").set_value("break")
    button(at, "Change status").click().run()
    no_tracebacks(at)
    assert f"{billing['name']} is now break" in texts(at)
    assert backend.get(f"/api/agents/{billing['id']}").json()["status"] == "break"
    if backend.has("/api/analytics/agents/performance"):
        perf = next(d.value for d in at.dataframe if "handled (calls)" in d.value.columns)
        row = perf[perf["agent"] == billing["name"]].iloc[0]
        assert row["handled (calls)"] == 1  # the billing call
        assert perf["handled (calls)"].sum() == 2  # and the tech call
        spec = next(s for s in plotly_specs(at)
                    if s["layout"]["title"]["text"].startswith("Agent performance"))
        assert sum(spec["data"][0]["y"]) == 2
    # Back to offline for the other tests.
    at.selectbox(key="status_new").set_value("offline")
    button(at, "Change status").click().run()


def test_queues_live_size_stats_and_configuration(backend):
    at = signed_in("manager", "queues.py")
    no_tracebacks(at)
    queues = backend.get("/api/queues").json()["items"]
    assert f"Nobody is waiting in any of the {len(queues)} queues." in texts(at)
    tech = next(q for q in queues if "Tech" in q["name"])
    at.selectbox(key="q_pick").set_value(tech["id"]).run()
    stats = backend.get(f"/api/queues/{tech['id']}/stats").json()
    shown = metrics(at)
    assert shown["Waiting (callers)"] == str(stats["size"])
    assert shown["Agents available / staffed"] == (
        f"{stats['agentsAvailable']} / {stats['agentsStaffed']}")
    config = at.dataframe[-1].value
    assert dict(zip(config["setting"], config["value"], strict=True))["strategy"] == tech[
        "strategy"]


# --- business hours --------------------------------------------------------------------------


def test_business_hours_grid_holidays_check_and_overrides(backend):
    at = signed_in("admin", "business_hours.py")
    no_tracebacks(at)
    grid = next(s for s in plotly_specs(at)
                if s["layout"]["title"]["text"].startswith("Weekly opening hours"))
    assert grid["data"][0]["y"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    assert set(grid["data"][0]["base"]) == {9.0} and set(grid["data"][0]["x"]) == {9.0}
    assert "Asia/Kolkata" in texts(at)

    sunday = date.today() + timedelta(days=(6 - date.today().weekday()) or 7)
    at.date_input(key="bh_day").set_value(sunday)
    button(at, "Check").click().run()
    no_tracebacks(at)
    assert at.error[0].value.startswith("Closed at")
    monday = sunday + timedelta(days=1)
    at.date_input(key="bh_day").set_value(monday)
    button(at, "Check").click().run()
    if any("Closed" in e.value for e in at.error):  # Monday might be a public holiday
        assert "holiday" in at.error[0].value
    else:
        assert at.success[0].value.startswith("Open at")

    schedule_id = at.selectbox(key="bh_pick").value
    editor = at.get("arrow_data_frame")  # the overrides editor; rows are set through state
    assert editor is not None
    # A row with an unusable date: a clear message and nothing saved.
    at.session_state[f"bh_overrides_{schedule_id}"] = {
        "edited_rows": {"0": {"date": "31-12-2026", "closed": True}},
        "added_rows": [], "deleted_rows": [],
    }
    button(at, "Save overrides").click().run()
    no_tracebacks(at)
    assert "Nothing was saved" in at.error[0].value
    before = backend.get(f"/api/business-hours/{schedule_id}").json()["overrides"]
    day = (date.today() + timedelta(days=40)).isoformat()
    at.session_state[f"bh_overrides_{schedule_id}"] = {
        "edited_rows": {"0": {"date": day, "closed": True, "message": "Staff training"}},
        "added_rows": [], "deleted_rows": [],
    }
    button(at, "Save overrides").click().run()
    no_tracebacks(at)
    after = backend.get(f"/api/business-hours/{schedule_id}").json()["overrides"]
    assert {"date": day, "closed": True} in [
        {k: o.get(k) for k in ("date", "closed")} for o in after]
    assert len(after) >= len(before)


# --- users -----------------------------------------------------------------------------------


def test_users_list_create_role_and_disable(backend):
    at = signed_in("admin", "users.py")
    no_tracebacks(at)
    listed = set(at.dataframe[0].value["username"])
    assert {"admin", "manager", "agent"} <= listed

    at.text_input(key="uc_username").input("dash.user")
    at.text_input(key="uc_password").input("short")
    button(at, "Create user").click().run()
    no_tracebacks(at)
    assert "Could not create the user" in at.error[0].value
    assert at.text_input(key="uc_username").value == "dash.user"  # the form keeps it
    at.text_input(key="uc_password").input("a-long-enough-password")
    at.selectbox(key="uc_role").set_value("manager")
    button(at, "Create user").click().run()
    no_tracebacks(at)
    assert "Created dash.user (manager)" in texts(at)
    at.run()
    assert "dash.user" in set(at.dataframe[0].value["username"])

    users = backend.get("/api/users").json()["items"]
    new = next(u for u in users if u["username"] == "dash.user")
    at.selectbox(key="ur_user").set_value(new["id"])
    at.selectbox(key="ur_role").set_value("agent")
    button(at, "Change role").click().run()
    assert "dash.user is now agent" in texts(at)
    at.selectbox(key="ud_user").set_value(new["id"])
    button(at, "Disable user").click().run()
    assert "Tick the confirmation" in at.error[0].value
    at.checkbox(key="ud_sure").check()
    button(at, "Disable user").click().run()
    no_tracebacks(at)
    assert backend.get(f"/api/users/{new['id']}").json()["isActive"] is False


def backend_app():
    from dash_support import APP

    return APP
