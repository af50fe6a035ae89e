"""Roles and what each may do: the one permission table, used by the API and shown in the README.

Roles are ordered (`super_admin` > `admin` > `manager` > `agent`) and each role holds every
permission of the roles below it plus its own, so "at least manager" and "has analytics:view"
never disagree. Routes check a permission (`RequirePermission("flows:edit")`) rather than a role
where they can: moving a permission between roles is then a one-line change here.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    super_admin = "super_admin"
    admin = "admin"
    manager = "manager"
    agent = "agent"


# Lowest first; the rank is the position.
ROLE_ORDER: tuple[Role, ...] = (Role.agent, Role.manager, Role.admin, Role.super_admin)
ROLE_RANK: dict[Role, int] = {role: rank for rank, role in enumerate(ROLE_ORDER)}

PERMISSION_DESCRIPTIONS: dict[str, str] = {
    "calls:view": "see live and past calls",
    "callbacks:view": "see scheduled callbacks",
    "callbacks:schedule": "schedule or cancel a callback",
    "agents:view": "see agents and their status",
    "agents:status:own": "change one's own agent status",
    "agents:status:any": "change any agent's status",
    "agents:manage": "create, edit and remove agents",
    "queues:view": "see queues and their live state",
    "queues:manage": "create, edit and remove queues",
    "business_hours:view": "see business-hours calendars",
    "business_hours:manage": "edit business hours and holidays",
    "flows:view": "see flows and their versions",
    "flows:edit": "edit flow drafts",
    "flows:publish": "publish or roll back a flow version",
    "analytics:view": "see dashboards and reports",
    "analytics:export": "export call history as CSV",
    "calls:live": "see live calls' state and variables (masked)",
    "audit:view": "read the audit log",
    "users:manage": "create, edit and disable users and their roles",
}
ALL_PERMISSIONS: frozenset[str] = frozenset(PERMISSION_DESCRIPTIONS)

# What each role adds on top of the role below it.
_GRANTS: dict[Role, frozenset[str]] = {
    Role.agent: frozenset(
        {
            "calls:view",
            "agents:view",
            "agents:status:own",
            "queues:view",
        }
    ),
    Role.manager: frozenset(
        {
            "agents:status:any",
            # Callbacks are scheduled and followed by managers and above.
            "callbacks:view",
            "callbacks:schedule",
            "business_hours:view",
            "flows:view",
            "flows:edit",
            "analytics:view",
            "analytics:export",
            "calls:live",
        }
    ),
    Role.admin: frozenset(
        {
            "agents:manage",
            "queues:manage",
            "business_hours:manage",
            "flows:publish",
            "audit:view",
        }
    ),
    Role.super_admin: frozenset({"users:manage"}),
}


def _accumulate() -> dict[Role, frozenset[str]]:
    table: dict[Role, frozenset[str]] = {}
    held: frozenset[str] = frozenset()
    for role in ROLE_ORDER:
        held = held | _GRANTS[role]
        table[role] = held
    return table


PERMISSIONS: dict[Role, frozenset[str]] = _accumulate()


def parse_role(value: str | Role) -> Role | None:
    """The Role for a stored value, or None for anything unknown (treated as no access)."""
    try:
        return Role(value)
    except ValueError:
        return None


def has_permission(role: str | Role, permission: str) -> bool:
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    parsed = parse_role(role)
    return parsed is not None and permission in PERMISSIONS[parsed]


def role_at_least(role: str | Role, minimum: str | Role) -> bool:
    parsed = parse_role(role)
    return parsed is not None and ROLE_RANK[parsed] >= ROLE_RANK[Role(minimum)]


def permissions_for(role: str | Role) -> list[str]:
    parsed = parse_role(role)
    return sorted(PERMISSIONS[parsed]) if parsed is not None else []


def permission_table_markdown() -> str:
    """The permission table as a Markdown table (roles highest first), for the README."""
    roles = list(reversed(ROLE_ORDER))
    lines = [
        "| permission | what it allows | " + " | ".join(f"`{r.value}`" for r in roles) + " |",
        "|---|---|" + "|".join(":-:" for _ in roles) + "|",
    ]
    for permission, description in PERMISSION_DESCRIPTIONS.items():
        marks = " | ".join("✓" if permission in PERMISSIONS[r] else "" for r in roles)
        lines.append(f"| `{permission}` | {description} | {marks} |")
    return "\n".join(lines) + "\n"
