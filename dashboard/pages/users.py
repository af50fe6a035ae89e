"""Users (super admin): list, create, change role, disable."""

from __future__ import annotations

import streamlit as st

from dashboard import ui

ROLES = ["agent", "manager", "admin", "super_admin"]

ui.header("Users", "Who may sign in, and with which role")
api = ui.client()
user = ui.me()

users = ui.load(lambda: api.items("/api/users"), what="users")
if users is None:
    st.stop()
st.dataframe(
    [
        {
            "id": u["id"],
            "username": u["username"],
            "name": u.get("fullName") or "",
            "email": u.get("email") or "",
            "role": u["role"],
            "active": "✓" if u.get("isActive") else "disabled",
            "last sign-in (IST)": ui.fmt_time(u.get("lastLoginAt")),
        }
        for u in users
    ],
    hide_index=True,
)

create_tab, role_tab, disable_tab = st.tabs(["Create", "Change role", "Disable"])
with create_tab:
    with st.form("user_create"):
        c1, c2 = st.columns(2)
        username = c1.text_input("Username", key="uc_username")
        password = c2.text_input("Password (at least 8 characters)", type="password",
                                 key="uc_password")
        full_name = c1.text_input("Full name", key="uc_name")
        email = c2.text_input("Email", key="uc_email")
        role = c1.selectbox("Role", ROLES, key="uc_role")
        create = st.form_submit_button("Create user", type="primary")
    if create:
        if not username.strip() or not password:
            st.error("A username and a password are required; nothing was created.")
        else:
            body = {"username": username.strip(), "password": password, "role": role,
                    "fullName": full_name.strip() or None, "email": email.strip() or None}
            created = ui.act(lambda: api.post("/api/users", body), what="create the user")
            if created:
                st.success(f"Created {created['username']} ({created['role']}).")

others = [u for u in users if u["id"] != user.id]
with role_tab:
    if not others:
        st.caption("There is nobody else to change.")
    else:
        with st.form("user_role"):
            target = st.selectbox("User", [u["id"] for u in others],
                                  format_func=lambda i: next(u["username"] for u in others
                                                             if u["id"] == i),
                                  key="ur_user")
            new_role = st.selectbox("New role", ROLES, key="ur_role")
            change = st.form_submit_button("Change role")
        if change:
            done = ui.act(lambda: api.patch(f"/api/users/{target}", {"role": new_role}),
                          what="change the role")
            if done:
                st.success(f"{done['username']} is now {done['role']}; their sessions ended.")

with disable_tab:
    active = [u for u in others if u.get("isActive")]
    if not active:
        st.caption("No other active users.")
    else:
        with st.form("user_disable"):
            target = st.selectbox("User", [u["id"] for u in active],
                                  format_func=lambda i: next(u["username"] for u in active
                                                             if u["id"] == i),
                                  key="ud_user")
            sure = st.checkbox("Yes, disable this user and end their sessions", key="ud_sure")
            disable = st.form_submit_button("Disable user")
        if disable:
            if not sure:
                st.error("Tick the confirmation first; nothing was changed.")
            elif ui.act(lambda: api.delete(f"/api/users/{target}") or True,
                        what="disable the user"):
                st.success("User disabled; their sessions have ended.")
