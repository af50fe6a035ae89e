"""Pure chart builders: API data in, plotly figure out (no Streamlit, no I/O), so each one is
unit-tested on its own. Titles carry units; times are labelled with their zone."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import plotly.graph_objects as go

GREEN, AMBER, RED, GREY, BLUE = "#2e9e5b", "#e0a100", "#d64545", "#8a8f98", "#3b7dd8"
STATUS_COLOURS = {
    "completed": GREEN,
    "failed": RED,
    "abandoned": AMBER,
    "in_progress": BLUE,
    "available": GREEN,
    "reserved": BLUE,
    "on_call": "#7b4fd6",
    "wrap_up": AMBER,
    "break": GREY,
    "offline": "#c7cbd1",
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "height": 320}


def _fig(title: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title}, **{**_LAYOUT, **layout})
    return fig


# --- thresholds (wallboard colours) ------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """Green up to `warn`, amber up to `alert`, red beyond; `higher_is_better` flips it."""

    warn: float
    alert: float
    higher_is_better: bool = False


THRESHOLDS: dict[str, Threshold] = {
    "callsInQueue": Threshold(5, 15),
    "longestWait": Threshold(60, 180),
    "avgSpeedOfAnswer": Threshold(20, 60),
    "abandonRate": Threshold(5, 10),
    "serviceLevel": Threshold(80, 60, higher_is_better=True),
    "successRate": Threshold(90, 75, higher_is_better=True),
    "availableAgents": Threshold(1, 0, higher_is_better=True),
}


def metric_colour(name: str, value: float | None) -> str:
    """The wallboard colour of a KPI value: green, amber or red (grey when unknown/untracked)."""
    rule = THRESHOLDS.get(name)
    if rule is None or value is None:
        return GREY
    v = float(value)
    if rule.higher_is_better:
        return GREEN if v >= rule.warn else AMBER if v > rule.alert else RED
    return GREEN if v <= rule.warn else AMBER if v <= rule.alert else RED


# --- overview ----------------------------------------------------------------------------


def calls_over_time(
    series: Sequence[Mapping[str, Any]], *, interval: str, tz: tzinfo | None, tz_label: str
) -> go.Figure:
    """Stacked bars of completed / failed / abandoned / in-progress calls per bucket."""
    unit = "hour" if interval == "hour" else "day"
    fig = _fig(f"Calls per {unit} ({tz_label})", barmode="stack")
    xs = [_wall_clock(p.get("bucket"), tz) for p in series]
    for key, label in (
        ("completed", "Completed"),
        ("failed", "Failed"),
        ("abandoned", "Abandoned"),
        ("inProgress", "In progress"),
    ):
        colour = STATUS_COLOURS["in_progress" if key == "inProgress" else key]
        fig.add_bar(x=xs, y=[int(p.get(key) or 0) for p in series], name=label,
                    marker_color=colour)
    fig.update_yaxes(title_text="calls", rangemode="tozero")
    fig.update_xaxes(title_text=f"{unit} starting ({tz_label})")
    return fig


def top_flows(flows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Horizontal bars: calls per flow today, most first."""
    ordered = sorted(flows, key=lambda f: int(f.get("callCount") or 0))
    fig = _fig("Top flows today (calls)")
    fig.add_bar(
        x=[int(f.get("callCount") or 0) for f in ordered],
        y=[str(f.get("flowName") or "—") for f in ordered],
        orientation="h",
        marker_color=BLUE,
        text=[int(f.get("callCount") or 0) for f in ordered],
    )
    fig.update_xaxes(title_text="calls", rangemode="tozero")
    return fig


def queue_sizes(queues: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Callers waiting per queue, coloured by the in-queue threshold."""
    fig = _fig("Callers waiting per queue (callers)")
    sizes = [int(q.get("waiting") or 0) for q in queues]
    fig.add_bar(
        x=[str(q.get("name")) for q in queues],
        y=sizes,
        marker_color=[metric_colour("callsInQueue", s) for s in sizes],
        text=sizes,
    )
    fig.update_yaxes(title_text="callers waiting", rangemode="tozero")
    return fig


# --- agents ------------------------------------------------------------------------------


def agent_statuses(agents: Iterable[Mapping[str, Any]]) -> go.Figure:
    """How many agents are in each live status."""
    counts = Counter(str(a.get("status") or "offline") for a in agents)
    order = [s for s in STATUS_COLOURS if s in counts] + sorted(set(counts) - set(STATUS_COLOURS))
    fig = _fig("Agents by live status (agents)")
    fig.add_bar(
        x=order,
        y=[counts[s] for s in order],
        marker_color=[STATUS_COLOURS.get(s, GREY) for s in order],
        text=[counts[s] for s in order],
    )
    fig.update_yaxes(title_text="agents", rangemode="tozero", dtick=1)
    return fig


def agent_performance(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Calls handled and missed per agent (bars) with occupancy % (line, right axis)."""
    names = [str(r.get("agentName")) for r in rows]
    fig = _fig("Agent performance: calls (bars) and occupancy % (line)", barmode="group")
    fig.add_bar(x=names, y=[int(r.get("callsHandled") or 0) for r in rows],
                name="Handled (calls)", marker_color=GREEN)
    fig.add_bar(x=names, y=[int(r.get("missed") or 0) for r in rows],
                name="Missed (calls)", marker_color=RED)
    fig.add_scatter(
        x=names,
        y=[r.get("occupancy") for r in rows],
        name="Occupancy (%)",
        mode="lines+markers",
        yaxis="y2",
        marker_color=BLUE,
    )
    fig.update_layout(
        yaxis={"title": {"text": "calls"}, "rangemode": "tozero"},
        yaxis2={"title": {"text": "occupancy (%)"}, "overlaying": "y", "side": "right",
                "range": [0, 100]},
    )
    return fig


# --- calls -------------------------------------------------------------------------------


def call_timeline(visits: Sequence[Mapping[str, Any]], *, ended_at: datetime | None,
                  tz: tzinfo | None, tz_label: str) -> go.Figure:
    """One bar per node visited, from entering to leaving it (the path as a timeline)."""
    fig = _fig(f"Path through the flow ({tz_label})", height=max(220, 40 * len(visits) + 90))
    labels, starts, lengths_ms, texts = [], [], [], []
    for i, v in enumerate(visits):
        start = _ts(v.get("enteredAt"))
        end = _ts(v.get("exitedAt")) or ended_at
        if start is None:
            continue
        stop = end or start
        labels.append(f"{i + 1}. {v.get('nodeName') or v.get('nodeId')} ({v.get('nodeType', '')})")
        starts.append(_wall_clock(start, tz))
        lengths_ms.append(max((stop - start).total_seconds() * 1000, 300))
        texts.append(f"→ {v['port']}" if v.get("port") else "")
    fig.add_bar(
        y=labels, x=lengths_ms, base=starts, orientation="h", text=texts,
        marker_color=BLUE, hovertemplate="%{y}<br>%{x} ms<extra></extra>",
    )
    fig.update_yaxes(autorange="reversed", title_text="node")
    fig.update_xaxes(type="date", title_text=f"time ({tz_label})")
    return fig


def _wall_clock(value: Any, tz: tzinfo | None) -> datetime | None:
    """A time as the clock on the wall in `tz`, without an offset: plotly draws aware times in
    UTC, which is not what an operator in India reads."""
    ts = _ts(value)
    if ts is None or tz is None or ts.tzinfo is None:
        return ts
    return ts.astimezone(tz).replace(tzinfo=None)


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


# --- flows -------------------------------------------------------------------------------

HUNG_UP = "Hung up"
ENDED = "Ended"


def funnel_links(
    calls: Iterable[Mapping[str, Any]],
) -> tuple[list[str], dict[tuple[str, str], int]]:
    """Node order and (from, to) → callers for the Sankey, from calls' paths and statuses.

    A node revisited in one call (a repeated menu) counts once, so the diagram has no cycles;
    a call's last node flows to "Hung up" when it was abandoned, else to "Ended" (in-progress
    calls stop at their current node).
    """
    order: list[str] = []
    links: Counter[tuple[str, str]] = Counter()
    for call in calls:
        path: list[str] = []
        for node in call.get("path") or []:
            if node not in path:
                path.append(str(node))
        for node in path:
            if node not in order:
                order.append(node)
        for a, b in itertools.pairwise(path):
            links[(a, b)] += 1
        status = call.get("status")
        if path and status == "abandoned":
            links[(path[-1], HUNG_UP)] += 1
        elif path and status not in (None, "in_progress"):
            links[(path[-1], ENDED)] += 1
    return order, dict(links)


def flow_sankey(
    calls: Iterable[Mapping[str, Any]], node_names: Mapping[str, str] | None = None
) -> go.Figure:
    """Callers moving through a flow's nodes and where they hung up or ended."""
    order, links = funnel_links(calls)
    labels = [*order, HUNG_UP, ENDED]
    index = {name: i for i, name in enumerate(labels)}
    names = node_names or {}
    colours = [BLUE] * len(order) + [RED, GREEN]
    fig = _fig("Caller funnel through the flow (callers)", height=460)
    fig.add_trace(
        go.Sankey(
            arrangement="snap",
            node={
                "label": [names.get(n, n) for n in labels],
                "color": colours,
                "pad": 18,
                "thickness": 16,
            },
            link={
                "source": [index[a] for a, _ in links],
                "target": [index[b] for _, b in links],
                "value": list(links.values()),
                "color": [
                    "rgba(214,69,69,0.45)" if b == HUNG_UP else "rgba(59,125,216,0.30)"
                    for _, b in links
                ],
            },
        )
    )
    return fig


# --- business hours ----------------------------------------------------------------------


def weekly_grid(weekly: Mapping[str, Any], *, tz_label: str) -> go.Figure:
    """Open intervals per weekday as bars over a 24 h axis (overnight spans wrap to midnight)."""
    fig = _fig(f"Weekly opening hours (hour of day, {tz_label})", height=300, barmode="overlay")
    days, bases, lengths, texts = [], [], [], []
    for day in WEEKDAYS:
        for iv in weekly.get(day) or []:
            start, end = _hours(iv.get("start")), _hours(iv.get("end"))
            if end <= start:  # overnight: to midnight here; the next day starts at 00:00
                end = 24.0
            days.append(day.capitalize())
            bases.append(start)
            lengths.append(end - start)
            texts.append(f"{iv.get('start')}-{iv.get('end')}")
    fig.add_bar(y=days, x=lengths, base=bases, orientation="h", text=texts,
                marker_color=GREEN, name="open")
    fig.update_xaxes(range=[0, 24], dtick=2, title_text=f"hour of day ({tz_label})")
    fig.update_yaxes(
        categoryorder="array",
        categoryarray=[d.capitalize() for d in reversed(WEEKDAYS)],
        title_text="weekday",
    )
    return fig


def _hours(hhmm: Any) -> float:
    try:
        h, m = str(hhmm).split(":")[:2]
        return int(h) + int(m) / 60
    except ValueError:
        return 0.0
