"""What every page shares: the signed-in client, page headers, time and number formatting, and
turning API failures into messages on the page (never a traceback)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import streamlit as st

from dashboard.api_client import ApiClient, ApiError, Me, SessionExpired, api_url, make_http

TZ_NAME = os.environ.get("IVR_DASHBOARD_TZ", "Asia/Kolkata")
TZ = ZoneInfo(TZ_NAME)
TZ_LABEL = "IST" if TZ_NAME == "Asia/Kolkata" else TZ_NAME
T = TypeVar("T")


@st.cache_resource
def shared_http(base_url: str) -> httpx.Client:
    """One connection pool for every session of this dashboard process."""
    return make_http(base_url)


def client() -> ApiClient:
    """This browser session's API client (created signed out)."""
    api = st.session_state.get("api")
    if not isinstance(api, ApiClient):
        api = ApiClient(shared_http(api_url()))
        st.session_state["api"] = api
    return api


@st.cache_data(ttl=30, show_spinner=False)
def _cached_items(_api: ApiClient, path: str, token: str | None) -> list[dict[str, Any]]:
    return _api.items(path)


def lookup_items(path: str) -> list[dict[str, Any]]:
    """A list that changes rarely (flow names for a filter), cached for 30 s per user session."""
    api = client()
    return _cached_items(api, path, api.access_token)


def me() -> Me:
    user = client().me
    if user is None:  # pages only run behind the sign-in gate
        st.stop()
    return user


def header(title: str, caption: str | None = None) -> None:
    """The same title style on every page, with the time zone the page's times are in."""
    st.title(title)
    now = datetime.now(TZ).strftime("%d %b %Y, %H:%M")
    st.caption(f"{caption + ' · ' if caption else ''}Times in {TZ_LABEL} ({TZ_NAME}) · {now}")
    for message in st.session_state.pop("flash", []):
        st.success(message)


def flash(message: str) -> None:
    """A success message shown at the top of the page after the rerun that follows a change."""
    st.session_state.setdefault("flash", []).append(message)


def load(fn: Callable[[], T], *, what: str) -> T | None:
    """Run an API read; on failure show why on the page and return None."""
    try:
        return fn()
    except SessionExpired:
        _session_ended()
        return None
    except ApiError as exc:
        if exc.missing_endpoint:
            st.warning(
                f"{what}: this API does not offer it yet ({exc.message}). "
                "Update the API server; the rest of the page still works."
            )
        else:
            st.error(f"Could not load {what}. {exc.message}")
        return None


def act(fn: Callable[[], T], *, what: str) -> T | None:
    """Run an API change; on failure show the API's reason (and flow problems) and return None."""
    try:
        return fn()
    except SessionExpired:
        _session_ended()
        return None
    except ApiError as exc:
        st.error(f"Could not {what}. {exc.message}")
        if exc.problems:
            st.dataframe(problems_table(exc.problems), hide_index=True)
        return None


def _session_ended() -> None:
    api = client()
    api.access_token = api.refresh_token = None
    api.me = None
    st.error("Your session has ended. Please sign in again.")
    if st.button("Sign in again", key="session_ended_signin"):
        st.rerun()
    st.stop()


def problems_table(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "node": p.get("nodeId") or "(flow)",
            "field": p.get("field") or "",
            "problem": p.get("message", ""),
            "code": p.get("code", ""),
        }
        for p in problems
    ]


# --- formatting --------------------------------------------------------------------------


def parse_ts(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def local(value: Any) -> datetime | None:
    ts = parse_ts(value)
    return ts.astimezone(TZ) if ts and ts.tzinfo else ts


def fmt_time(value: Any, *, with_date: bool = True) -> str:
    ts = local(value)
    if ts is None:
        return "—"
    return ts.strftime("%d %b %H:%M:%S" if with_date else "%H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """`1 h 02 m`, `4 m 05 s`, `12 s`; an em dash when unknown."""
    if seconds is None:
        return "—"
    s = round(float(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} m"
    if s >= 60:
        return f"{s // 60} m {s % 60:02d} s"
    return f"{s} s"


def fmt_pct(value: float | None) -> str:
    return "—" if value is None else f"{float(value):.1f} %"


def day_range(start: date, end: date) -> tuple[str, str]:
    """`from`/`to` query values covering whole local days start..end (to is exclusive)."""
    lo = datetime.combine(start, time.min, TZ)
    hi = datetime.combine(end + timedelta(days=1), time.min, TZ)
    return lo.isoformat(), hi.isoformat()


def today() -> date:
    return datetime.now(TZ).date()
