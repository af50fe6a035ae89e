"""Chart builders are pure: data in, figure out. Check what each figure would draw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dashboard import charts


def test_metric_colour_thresholds_both_directions():
    assert charts.metric_colour("callsInQueue", 0) == charts.GREEN
    assert charts.metric_colour("callsInQueue", 10) == charts.AMBER
    assert charts.metric_colour("callsInQueue", 16) == charts.RED
    assert charts.metric_colour("serviceLevel", 85) == charts.GREEN
    assert charts.metric_colour("serviceLevel", 70) == charts.AMBER
    assert charts.metric_colour("serviceLevel", 40) == charts.RED
    assert charts.metric_colour("serviceLevel", None) == charts.GREY
    assert charts.metric_colour("callsToday", 999) == charts.GREY  # no threshold: neutral


def test_calls_over_time_stacks_statuses_per_bucket():
    series = [
        {"bucket": "2026-01-05T09:00:00+05:30", "calls": 5, "completed": 3, "failed": 1,
         "abandoned": 1, "inProgress": 0},
        {"bucket": "2026-01-05T10:00:00+05:30", "calls": 2, "completed": 2, "failed": 0,
         "abandoned": 0, "inProgress": 0},
    ]
    fig = charts.calls_over_time(series, interval="hour", tz=ZoneInfo("Asia/Kolkata"),
                                 tz_label="IST")
    assert fig.layout.title.text == "Calls per hour (IST)"
    assert fig.layout.barmode == "stack"
    by_name = {t.name: list(t.y) for t in fig.data}
    assert by_name == {"Completed": [3, 2], "Failed": [1, 0], "Abandoned": [1, 0],
                       "In progress": [0, 0]}
    assert "IST" in fig.layout.xaxis.title.text and fig.layout.yaxis.title.text == "calls"
    # Drawn at the wall-clock hour in India (plotly would show an aware time in UTC).
    assert fig.data[0].x[0] == datetime(2026, 1, 5, 9, 0)


def test_top_flows_sorted_for_a_horizontal_bar():
    fig = charts.top_flows([{"flowName": "Sales", "callCount": 2},
                            {"flowName": "Support", "callCount": 9}])
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(bar.y) == ["Sales", "Support"] and list(bar.x) == [2, 9]  # biggest on top


def test_queue_sizes_coloured_by_threshold():
    fig = charts.queue_sizes([{"name": "tech", "waiting": 1}, {"name": "general", "waiting": 20}])
    bar = fig.data[0]
    assert list(bar.x) == ["tech", "general"] and list(bar.y) == [1, 20]
    assert list(bar.marker.color) == [charts.GREEN, charts.RED]


def test_agent_statuses_counts_each_status():
    fig = charts.agent_statuses([{"status": "available"}, {"status": "offline"},
                                 {"status": "available"}, {"status": "on_call"}])
    bar = fig.data[0]
    assert dict(zip(bar.x, bar.y, strict=True)) == {"available": 2, "on_call": 1, "offline": 1}


def test_agent_performance_bars_and_occupancy_axis():
    rows = [{"agentName": "Asha", "callsHandled": 4, "missed": 1, "occupancy": 55.0},
            {"agentName": "Ravi", "callsHandled": 0, "missed": 0, "occupancy": None}]
    fig = charts.agent_performance(rows)
    handled, missed, occupancy = fig.data
    assert list(handled.y) == [4, 0] and list(missed.y) == [1, 0]
    assert occupancy.yaxis == "y2" and list(occupancy.y) == [55.0, None]
    assert fig.layout.yaxis2.range == (0, 100)


def test_call_timeline_one_bar_per_visit_with_ports():
    t0 = datetime(2026, 1, 5, 5, 30, tzinfo=UTC)
    visits = [
        {"nodeId": "welcome", "nodeType": "welcome", "nodeName": "Welcome",
         "enteredAt": t0.isoformat(), "exitedAt": (t0 + timedelta(seconds=4)).isoformat(),
         "port": "open"},
        {"nodeId": "main_menu", "nodeType": "menu", "nodeName": "Main Menu",
         "enteredAt": (t0 + timedelta(seconds=4)).isoformat(), "exitedAt": None, "port": None},
    ]
    fig = charts.call_timeline(visits, ended_at=t0 + timedelta(seconds=10),
                               tz=ZoneInfo("Asia/Kolkata"), tz_label="IST")
    bar = fig.data[0]
    assert list(bar.y) == ["1. Welcome (welcome)", "2. Main Menu (menu)"]
    assert list(bar.x) == [4000, 6000]  # ms in each node; the open visit runs to the end
    assert list(bar.text) == ["→ open", ""]
    assert bar.base[0] == datetime(2026, 1, 5, 11, 0)  # 05:30 UTC is 11:00 in IST


def test_funnel_links_counts_transitions_hangups_and_ends():
    calls = [
        {"path": ["welcome", "menu", "billing"], "status": "completed"},
        {"path": ["welcome", "menu", "menu", "goodbye"], "status": "completed"},  # repeat
        {"path": ["welcome", "menu"], "status": "abandoned"},
        {"path": ["welcome"], "status": "in_progress"},
    ]
    order, links = charts.funnel_links(calls)
    assert order == ["welcome", "menu", "billing", "goodbye"]
    assert links == {
        ("welcome", "menu"): 3,
        ("menu", "billing"): 1,
        ("billing", charts.ENDED): 1,
        ("menu", "goodbye"): 1,
        ("goodbye", charts.ENDED): 1,
        ("menu", charts.HUNG_UP): 1,
    }


def test_flow_sankey_uses_node_names_and_marks_hangups_red():
    fig = charts.flow_sankey(
        [{"path": ["welcome", "menu"], "status": "abandoned"}],
        {"welcome": "Welcome", "menu": "Main Menu"},
    )
    sankey = fig.data[0]
    assert list(sankey.node.label) == ["Welcome", "Main Menu", charts.HUNG_UP, charts.ENDED]
    assert list(sankey.link.source) == [0, 1] and list(sankey.link.target) == [1, 2]
    assert list(sankey.link.value) == [1, 1]
    assert "214,69,69" in sankey.link.color[1]


def test_weekly_grid_bars_for_open_intervals_and_overnight():
    weekly = {"mon": [{"start": "09:00", "end": "18:00"}],
              "fri": [{"start": "22:00", "end": "02:00", "overnight": True}], "sun": []}
    fig = charts.weekly_grid(weekly, tz_label="IST")
    bar = fig.data[0]
    assert list(bar.y) == ["Mon", "Fri"]
    assert list(bar.base) == [9.0, 22.0]
    assert list(bar.x) == [9.0, 2.0]  # the overnight span is drawn up to midnight
    assert "IST" in fig.layout.title.text


@pytest.mark.parametrize("builder", [charts.top_flows, charts.queue_sizes, charts.agent_statuses,
                                     charts.agent_performance])
def test_builders_accept_empty_data(builder):
    assert builder([]).layout.title.text
