"""Business hours: each schedule's weekly grid, holidays in the coming months, an overrides
editor, and "would we be open at …?"."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holiday_lib
import streamlit as st

from dashboard import charts, ui

MONTHS_AHEAD = 3

ui.header("Business hours", "When calls are answered and when they go to voicemail")
api = ui.client()
user = ui.me()

schedules = ui.load(lambda: api.items("/api/business-hours"), what="business-hours schedules")
if schedules is None:
    st.stop()
if not schedules:
    st.info("No schedules yet. An admin creates one through the API (POST /api/business-hours) "
            "or `ivr seed` loads 'Support hours'.")
    st.stop()

names = {s["id"]: s["name"] for s in schedules}
sid = st.selectbox("Schedule", list(names), format_func=names.get, key="bh_pick")
sched: dict[str, Any] = next(s for s in schedules if s["id"] == sid)
zone_name = sched.get("timezone") or ui.TZ_NAME
st.caption(f"Time zone: {zone_name} · public holidays: "
           f"{sched.get('holidayCountry') or 'none'}"
           f"{'/' + sched['holidaySubdivision'] if sched.get('holidaySubdivision') else ''}")

zone_label = "IST" if zone_name == "Asia/Kolkata" else zone_name
if any(sched.get("weekly", {}).get(d) for d in charts.WEEKDAYS):
    st.plotly_chart(charts.weekly_grid(sched["weekly"], tz_label=zone_label), key="bh_grid")
else:
    st.warning("This schedule has no weekly hours: it is always closed unless an override "
               "opens it.")


def upcoming_holidays(s: dict[str, Any], start: date, end: date) -> list[dict[str, str]]:
    """Public (from the holidays package, as the API uses) and custom holidays in [start, end]."""
    found: dict[date, str] = {}
    if s.get("holidayCountry"):
        try:
            cal = holiday_lib.country_holidays(
                s["holidayCountry"], subdiv=s.get("holidaySubdivision"),
                years=range(start.year, end.year + 1),
            )
            found.update({d: n for d, n in cal.items() if start <= d <= end})
        except (NotImplementedError, KeyError):
            pass
    for h in s.get("customHolidays") or []:
        d = date.fromisoformat(h["date"])
        for year in range(start.year, end.year + 1) if h.get("annual") else [d.year]:
            try:
                when = d.replace(year=year)
            except ValueError:
                continue
            if start <= when <= end:
                found[when] = h.get("name", "holiday")
    return [{"date": d.strftime("%a %d %b %Y"), "holiday": found[d]} for d in sorted(found)]


st.subheader(f"Holidays in the next {MONTHS_AHEAD} months")
today = ui.today()
hols = upcoming_holidays(sched, today, today + timedelta(days=31 * MONTHS_AHEAD))
if hols:
    st.dataframe(hols, hide_index=True)
else:
    st.caption("No holidays in the coming months.")

st.subheader("Would we be open at …")
with st.form("bh_check"):
    c1, c2 = st.columns(2)
    day = c1.date_input(f"Date ({zone_label})", value=today, key="bh_day")
    at_time = c2.time_input(f"Time ({zone_label})", value=time(10, 0), key="bh_time")
    asked = st.form_submit_button("Check")
if asked:
    at = datetime.combine(day, at_time, ZoneInfo(zone_name))
    result = ui.load(lambda: api.get(f"/api/business-hours/{sid}/check", at=at.isoformat()),
                     what="the check")
    if result is not None:
        when = at.strftime("%a %d %b %Y %H:%M")
        if result.get("open"):
            closes = ui.local(result.get("closesAt"))
            st.success(f"Open at {when} {zone_label}"
                       + (f"; closes {closes.strftime('%H:%M')}" if closes else "") + ".")
        else:
            nxt = ui.local(result.get("nextOpenAt"))
            reason = result.get("holiday") or result.get("reason")
            st.error(f"Closed at {when} {zone_label} ({reason})"
                     + (f"; next open {nxt.strftime('%a %d %b %H:%M')}" if nxt else "") + ".")
        if result.get("message"):
            st.caption(f"Callers hear: “{result['message']}”")


def overrides_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for o in s.get("overrides") or []:
        rows.append({
            "date": o.get("date") or "",
            "from": o.get("from") or "",
            "to": o.get("to") or "",
            "closed": bool(o.get("closed")),
            "hours": ", ".join(f"{i['start']}-{i['end']}" for i in o.get("intervals") or []),
            "message": (o.get("message") or "") if isinstance(o.get("message"), str) else "",
        })
    return rows


def overrides_from_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the editor as API overrides; ValueError naming the row when one is unusable."""
    out = []
    for n, r in enumerate(rows, start=1):
        if not any(str(r.get(k) or "").strip() for k in ("date", "from", "to", "hours")):
            continue  # an empty row the editor added
        o: dict[str, Any] = {}
        for k in ("date", "from", "to"):
            v = str(r.get(k) or "").strip()
            if v:
                try:
                    o[k] = date.fromisoformat(v).isoformat()
                except ValueError:
                    raise ValueError(f"row {n}: {k} {v!r} is not a date (YYYY-MM-DD)") from None
        if r.get("closed"):
            o["closed"] = True
        hours = str(r.get("hours") or "").strip()
        if hours:
            intervals = []
            for part in hours.split(","):
                start, sep, end = part.strip().partition("-")
                if not sep:
                    raise ValueError(
                        f"row {n}: hours {part.strip()!r} should look like 09:00-13:00"
                    )
                intervals.append({"start": start.strip(), "end": end.strip()})
            o["intervals"] = intervals
        message = str(r.get("message") or "").strip()
        if message:
            o["message"] = message
        out.append(o)
    return out


st.subheader("Overrides")
st.caption("A date (or a from/to range) that is closed or has its own hours, e.g. "
           "`10:00-14:00, 15:00-17:00`. Dates as YYYY-MM-DD.")
can_edit = user.can("business_hours:manage")
edited = st.data_editor(
    overrides_rows(sched) or [{"date": "", "from": "", "to": "", "closed": False, "hours": "",
                               "message": ""}],
    num_rows="dynamic", disabled=not can_edit, key=f"bh_overrides_{sid}", hide_index=True,
)
if can_edit and st.button("Save overrides", key="bh_save"):
    try:
        overrides = overrides_from_rows(list(edited))
    except ValueError as exc:
        st.error(f"Nothing was saved: {exc}.")
    else:
        keep = ("name", "timezone", "weekly", "holidayCountry", "holidaySubdivision",
                "customHolidays", "messages")
        body = {k: sched[k] for k in keep if sched.get(k) is not None}
        body["overrides"] = overrides
        saved = ui.act(lambda: api.put(f"/api/business-hours/{sid}", body),
                       what="save the overrides")
        if saved:
            st.success(f"Saved {len(saved.get('overrides') or [])} override(s).")
elif not can_edit:
    st.caption("Changing business hours needs an admin.")
