"""Dashboard entry point (placeholder until the full dashboard): sign in, see the API's health.

Talks to the API over HTTP only. The API's address comes from IVR_API_URL (set by `ivr dev`),
else from IVR_API_HOST/IVR_API_PORT.
"""

from __future__ import annotations

import os

import httpx
import streamlit as st


def api_url() -> str:
    explicit = os.environ.get("IVR_API_URL")
    if explicit:
        return explicit.rstrip("/")
    host = os.environ.get("IVR_API_HOST", "127.0.0.1")
    port = os.environ.get("IVR_API_PORT", "8000")
    return f"http://{host}:{port}"


@st.cache_resource
def client() -> httpx.Client:
    return httpx.Client(base_url=api_url(), timeout=10)


def login(username: str, password: str) -> str | None:
    try:
        response = client().post(
            "/api/auth/login", json={"username": username, "password": password}
        )
    except httpx.HTTPError as exc:
        st.error(f"The API at {api_url()} is not reachable: {exc}")
        return None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        st.error(f"Sign-in failed ({response.status_code}): {detail}")
        return None
    return response.json().get("accessToken")


def show_health(token: str) -> None:
    try:
        response = client().get("/health", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        st.error(f"The API at {api_url()} is not reachable: {exc}")
        return
    st.subheader(f"System health ({response.status_code})")
    try:
        st.json(response.json())
    except ValueError:
        st.code(response.text)


st.set_page_config(page_title="IVR dashboard", page_icon="📞")
st.title("IVR dashboard")

token = st.session_state.get("token")
if token is None:
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in") and username and password:
            token = login(username, password)
            if token:
                st.session_state["token"] = token
                st.rerun()
else:
    if st.button("Sign out"):
        del st.session_state["token"]
        st.rerun()
    show_health(token)
