"""Dashboard entry point: sign in, then the pages the user's role may see (`st.navigation`).

Talks to the API over HTTP only (dashboard.api_client). Run with `streamlit run dashboard/app.py`
(`ivr dev` does); the API's address comes from IVR_API_URL, else IVR_API_HOST/IVR_API_PORT.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ (not the project) on sys.path.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import ui  # noqa: E402
from dashboard.api_client import ApiError, Me  # noqa: E402

PAGES_DIR = Path(__file__).resolve().parent / "pages"

# (file, title, icon, permission needed; "a|b": either): the order of the menu.
PAGES: tuple[tuple[str, str, str, str], ...] = (
    ("overview.py", "Overview", ":material/monitoring:", "analytics:view"),
    ("live_calls.py", "Live calls", ":material/call:", "calls:live|analytics:view"),
    ("call_history.py", "Call history", ":material/history:", "analytics:view"),
    ("flows.py", "Flows", ":material/account_tree:", "flows:view"),
    ("flow_editor.py", "Flow editor", ":material/edit:", "flows:edit"),
    ("agents.py", "Agents", ":material/support_agent:", "agents:view"),
    ("queues.py", "Queues", ":material/queue:", "queues:view"),
    ("business_hours.py", "Business hours", ":material/schedule:", "business_hours:view"),
    ("users.py", "Users", ":material/group:", "users:manage"),
)


def visible_pages(user: Me) -> list[st.Page]:
    return [
        st.Page(str(PAGES_DIR / file), title=title, icon=icon)
        for file, title, icon, permission in PAGES
        if any(user.can(p) for p in permission.split("|"))
    ]


def sign_in_form() -> None:
    st.title("IVR operations dashboard")
    st.caption(f"Sign in with your platform account · API {ui.client().http.base_url}")
    with st.form("login"):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if not username or not password:
            st.error("Enter both your username and your password.")
            return
        try:
            ui.client().login(username.strip(), password)
        except ApiError as exc:
            st.error(f"Sign-in failed. {exc.message}")
            return
        st.rerun()


def sidebar(user: Me) -> None:
    with st.sidebar:
        st.markdown(f"**{user.display_name}**  \n`{user.role}`")
        if st.button("Sign out", key="sign_out"):
            ui.client().logout()
            st.rerun()


def main() -> None:
    st.set_page_config(page_title="IVR dashboard", page_icon="📞", layout="wide")
    user = ui.client().me
    if user is None:
        sign_in_form()
        return
    pages = visible_pages(user)
    if not pages:
        st.title("IVR operations dashboard")
        st.warning(f"Your role ({user.role}) has no dashboard pages. Ask an administrator.")
        sidebar(user)
        return
    navigation = st.navigation(pages)
    sidebar(user)
    navigation.run()


main()
