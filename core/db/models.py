"""The system of record: SQLAlchemy 2 models for every table (one Alembic history mirrors them).

Enumerations are checked text rather than PostgreSQL enum types: adding a value is then a
one-line constraint change instead of an `ALTER TYPE` that cannot run inside a transaction.

Indexes for "newest first" reads are plain ascending B-trees ending in `id`: PostgreSQL scans a
B-tree backwards, so `(started_at, id)` serves `ORDER BY started_at DESC, id DESC` and the keyset
predicate `(started_at, id) < (:t, :id)` as well as a DESC index would, and it is the form Alembic
compares without false positives. Order both keys the same way (both DESC) when paginating.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db.base import Base, TimestampMixin

ROLES = ("super_admin", "admin", "manager", "agent")
NODE_TYPES = (
    "welcome", "play", "menu", "hangup", "queue", "transfer", "record", "decision", "gather", "api",
)
EXECUTION_STATUSES = ("in_progress", "completed", "failed", "abandoned")
AGENT_STATUSES = ("offline", "available", "reserved", "on_call", "wrap_up", "break")
STRATEGIES = ("sequential", "round_robin", "longest_idle", "skills_based", "load_balanced")
DIRECTIONS = ("inbound", "outbound")
QUEUE_ENTRY_STATUSES = (
    "waiting", "assigned", "abandoned", "timed_out", "overflowed", "callback_requested",
    "called_back",
)
CALLBACK_STATUSES = (
    "scheduled", "waiting_in_queue", "dialing", "completed", "failed", "cancelled", "exhausted",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _jsonb_default(value: str) -> Any:
    return text(f"'{value}'::jsonb")


# --- people and access -------------------------------------------------------------------


class User(TimestampMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_in("role", ROLES), name="role"),
        Index("uq_users_username_lower", func.lower(text("username")), unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    full_name: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    last_login_at: Mapped[datetime | None]
    # Access tokens issued before this instant are refused (a password reset, a new role or
    # disabling ends every session at once, not when the short-lived token expires).
    sessions_valid_after: Mapped[datetime | None]


class RefreshToken(Base):
    """One issued refresh token; tokens rotated from one login share a family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family_id", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    replaced_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    user_agent: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(INET)


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("ix_audit_logs_occurred_at", "occurred_at", "id"),
        Index("ix_audit_logs_entity", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    actor_username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    ip: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(64))


# --- flows ---------------------------------------------------------------------------------


class BusinessHours(TimestampMixin, Base):
    __tablename__ = "business_hours"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), server_default="Asia/Kolkata")
    weekly: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    holiday_country: Mapped[str | None] = mapped_column(String(8))
    holiday_subdivision: Mapped[str | None] = mapped_column(String(16))
    custom_holidays: Mapped[list[Any]] = mapped_column(JSONB, server_default=_jsonb_default("[]"))
    overrides: Mapped[list[Any]] = mapped_column(JSONB, server_default=_jsonb_default("[]"))
    messages: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))


class Flow(TimestampMixin, Base):
    """A flow's editable draft and its pointer to the live published version."""

    __tablename__ = "ivr_flows"
    __table_args__ = (
        Index(
            "uq_ivr_flows_single_default", "is_default", unique=True,
            postgresql_where=text("is_default AND deleted_at IS NULL"),
        ),
        Index(
            "uq_ivr_flows_name_live", "name", unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The live pointer must name a version of this same flow. Deferred to commit, so a
        # publish may set the pointer and insert the version in either order in one transaction;
        # added after both tables exist (use_alter) because the two tables reference each other.
        ForeignKeyConstraint(
            ["id", "live_version"], ["flow_versions.flow_id", "flow_versions.version"],
            name="fk_ivr_flows_live_version", use_alter=True,
            deferrable=True, initially="DEFERRED",
        ),
        CheckConstraint("draft_revision >= 1", name="draft_revision"),
    )

    # Explicit: a column that is part of a foreign key (the live_version pair) is otherwise not
    # treated as autoincrement, and the id would get no sequence in create_all or the ORM.
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    entry_node_key: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    is_default: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    draft_revision: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    live_version: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    deleted_at: Mapped[datetime | None]

    nodes: Mapped[list[FlowNode]] = relationship(
        back_populates="flow", cascade="all, delete-orphan", order_by="FlowNode.id"
    )
    connections: Mapped[list[FlowConnection]] = relationship(
        back_populates="flow", cascade="all, delete-orphan", order_by="FlowConnection.id"
    )


class FlowNode(Base):
    __tablename__ = "flow_nodes"
    __table_args__ = (
        UniqueConstraint("flow_id", "node_key"),
        CheckConstraint(_in("type", NODE_TYPES), name="type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("ivr_flows.id", ondelete="CASCADE"))
    node_key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    position_x: Mapped[float] = mapped_column(Float, server_default=text("0"))
    position_y: Mapped[float] = mapped_column(Float, server_default=text("0"))

    flow: Mapped[Flow] = relationship(back_populates="nodes")


class FlowConnection(Base):
    __tablename__ = "flow_connections"
    __table_args__ = (
        UniqueConstraint("flow_id", "from_node_key", "port"),
        # ON UPDATE CASCADE: renaming a node's key in the editor carries its connections along.
        ForeignKeyConstraint(
            ["flow_id", "from_node_key"], ["flow_nodes.flow_id", "flow_nodes.node_key"],
            ondelete="CASCADE", onupdate="CASCADE", name="fk_flow_connections_from_node",
        ),
        ForeignKeyConstraint(
            ["flow_id", "to_node_key"], ["flow_nodes.flow_id", "flow_nodes.node_key"],
            ondelete="CASCADE", onupdate="CASCADE", name="fk_flow_connections_to_node",
        ),
        # The unique constraint above covers lookups by source node; deleting or renaming a
        # target node needs this one, or every node delete scans the whole table.
        Index("ix_flow_connections_to_node", "flow_id", "to_node_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("ivr_flows.id", ondelete="CASCADE"))
    from_node_key: Mapped[str] = mapped_column(String(64))
    to_node_key: Mapped[str] = mapped_column(String(64))
    port: Mapped[str] = mapped_column(String(32))

    flow: Mapped[Flow] = relationship(back_populates="connections")


class FlowVersion(Base):
    """An immutable published snapshot of a flow; calls pin one at start."""

    __tablename__ = "flow_versions"
    __table_args__ = (
        UniqueConstraint("flow_id", "version"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    flow_id: Mapped[int] = mapped_column(ForeignKey("ivr_flows.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    checksum: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class FlowNumber(Base):
    """A called number (E.164) answered by a flow; numbers not listed go to the default flow."""

    __tablename__ = "flow_numbers"
    # The number is the routing key matched against the carrier's normalised `To`; a number
    # stored in any other form would silently never match.
    __table_args__ = (CheckConstraint(r"number ~ '^\+[1-9][0-9]{6,14}$'", name="e164"),)

    number: Mapped[str] = mapped_column(String(20), primary_key=True)
    flow_id: Mapped[int] = mapped_column(
        ForeignKey("ivr_flows.id", ondelete="CASCADE"), index=True
    )


# --- routing -------------------------------------------------------------------------------


class Agent(TimestampMixin, Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint(_in("status", AGENT_STATUSES), name="status"),
        CheckConstraint("max_concurrent_calls BETWEEN 1 AND 20", name="max_concurrent_calls"),
        CheckConstraint("wrap_up_s >= 0", name="wrap_up_s"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    phone_number: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(254))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )
    team: Mapped[str | None] = mapped_column(String(64))
    skills: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    sequence: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_concurrent_calls: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    wrap_up_s: Mapped[int] = mapped_column(Integer, server_default=text("30"))
    status: Mapped[str] = mapped_column(String(16), server_default="offline")
    status_changed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_call_ended_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    deleted_at: Mapped[datetime | None]
    # The live state last mirrored from Redis (leases, wrap-up, counters) and its version:
    # enough to rebuild Redis after a loss, and an older mirror never overwrites a newer one.
    live_state: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    state_version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Queue(TimestampMixin, Base):
    __tablename__ = "queues"
    __table_args__ = (
        CheckConstraint(_in("strategy", STRATEGIES), name="strategy"),
        CheckConstraint("max_size > 0 AND max_wait_s > 0", name="limits"),
        # A zero interval would make every hold segment zero seconds long: a tight poll loop.
        CheckConstraint("announce_interval_s > 0", name="announce_interval_s"),
        CheckConstraint("service_level_s > 0", name="service_level_s"),
        # Queues are soft-deleted; a deleted queue's name must be free for a new one.
        Index(
            "uq_queues_name_live", "name", unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(String(16), server_default="longest_idle")
    required_skills: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=_jsonb_default("{}")
    )
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_size: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    max_wait_s: Mapped[int] = mapped_column(Integer, server_default=text("600"))
    hold_music_url: Mapped[str | None] = mapped_column(String(1024))
    hold_message: Mapped[str | None] = mapped_column(Text)
    announce_interval_s: Mapped[int] = mapped_column(Integer, server_default=text("30"))
    announce_position: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    announce_wait_time: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    service_level_s: Mapped[int] = mapped_column(Integer, server_default=text("20"))
    overflow: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    callback_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    deleted_at: Mapped[datetime | None]


# --- calls ---------------------------------------------------------------------------------


class FlowExecution(Base):
    """One call through a flow: written as the call starts, finalised exactly once at its end."""

    __tablename__ = "flow_executions"
    __table_args__ = (
        CheckConstraint(_in("status", EXECUTION_STATUSES), name="status"),
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        # History is paginated by keyset, newest first, optionally filtered by one of these.
        Index("ix_flow_executions_started_at", "started_at", "id"),
        Index("ix_flow_executions_flow_started", "flow_id", "started_at", "id"),
        Index("ix_flow_executions_status_started", "status", "started_at", "id"),
        Index("ix_flow_executions_caller_started", "caller", "started_at", "id"),
        # Agent performance and queue reports are per agent/queue over a date range.
        Index("ix_flow_executions_agent_started", "agent_id", "started_at"),
        Index("ix_flow_executions_queue_started", "queue_id", "started_at"),
        Index(
            "ix_flow_executions_active", "started_at",
            postgresql_where=text("status = 'in_progress'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    flow_id: Mapped[int | None] = mapped_column(ForeignKey("ivr_flows.id", ondelete="SET NULL"))
    flow_version: Mapped[int | None] = mapped_column(Integer)
    carrier: Mapped[str] = mapped_column(String(16), server_default="exotel")
    direction: Mapped[str] = mapped_column(String(16), server_default="inbound")
    caller: Mapped[str | None] = mapped_column(String(20))
    called: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), server_default="in_progress")
    end_reason: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_s: Mapped[float | None] = mapped_column(Float)
    current_node_key: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[list[Any]] = mapped_column(JSONB, server_default=_jsonb_default("[]"))
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    recording_url: Mapped[str | None] = mapped_column(String(1024))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id", ondelete="SET NULL"))
    queue_wait_s: Mapped[float | None] = mapped_column(Float)


class NodeExecution(Base):
    """One visit of a node by a call; (execution, seq) makes a retried write idempotent."""

    __tablename__ = "node_executions"
    __table_args__ = (
        UniqueConstraint("execution_id", "seq"),
        Index("ix_node_executions_node", "node_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("flow_executions.id", ondelete="CASCADE")
    )
    seq: Mapped[int] = mapped_column(Integer)
    node_key: Mapped[str] = mapped_column(String(64))
    node_type: Mapped[str] = mapped_column(String(16))
    node_name: Mapped[str | None] = mapped_column(String(128))
    entered_at: Mapped[datetime]
    exited_at: Mapped[datetime | None]
    port: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))


class CallQueueEntry(Base):
    __tablename__ = "call_queue_entries"
    __table_args__ = (
        CheckConstraint(_in("status", QUEUE_ENTRY_STATUSES), name="status"),
        Index("ix_call_queue_entries_queue_enqueued", "queue_id", "enqueued_at"),
        Index("ix_call_queue_entries_call_sid", "call_sid"),
        Index("ix_call_queue_entries_agent_enqueued", "agent_id", "enqueued_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"))
    # Indexed: the SET NULL on deleting an execution (retention purge) must not scan the table.
    execution_id: Mapped[int | None] = mapped_column(
        ForeignKey("flow_executions.id", ondelete="SET NULL"), index=True
    )
    call_sid: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str | None] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    status: Mapped[str] = mapped_column(String(24), server_default="waiting")
    position_at_entry: Mapped[int | None] = mapped_column(Integer)
    enqueued_at: Mapped[datetime] = mapped_column(server_default=func.now())
    left_at: Mapped[datetime | None]
    wait_s: Mapped[float | None] = mapped_column(Float)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))


class VoiceCallback(TimestampMixin, Base):
    """A callback request (scheduled or from a queue), its attempts and the carrier's raw events."""

    __tablename__ = "voice_callbacks"
    __table_args__ = (
        CheckConstraint(_in("status", CALLBACK_STATUSES), name="status"),
        CheckConstraint("max_attempts >= 1 AND retry_delay_s >= 0", name="retry"),
        Index("ix_voice_callbacks_status_scheduled", "status", "scheduled_at"),
        Index("ix_voice_callbacks_queue_status", "queue_id", "status"),
        Index(
            "uq_voice_callbacks_idempotency_key", "idempotency_key", unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    phone_number: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(24), server_default="scheduled")
    scheduled_at: Mapped[datetime | None]
    asap: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    queue_id: Mapped[int | None] = mapped_column(ForeignKey("queues.id", ondelete="SET NULL"))
    flow_id: Mapped[int | None] = mapped_column(ForeignKey("ivr_flows.id", ondelete="SET NULL"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    queue_position: Mapped[int | None] = mapped_column(Integer)
    source_call_sid: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    retry_delay_s: Mapped[int] = mapped_column(Integer, server_default=text("300"))
    attempts: Mapped[list[Any]] = mapped_column(JSONB, server_default=_jsonb_default("[]"))
    carrier_events: Mapped[list[Any]] = mapped_column(JSONB, server_default=_jsonb_default("[]"))
    last_error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(128))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    completed_at: Mapped[datetime | None]


class CarrierStatusEvent(Base):
    """One status callback from a carrier, stored raw: every call's (inbound flows' and the
    calls placed for callbacks), whatever its workflow made of it. A carrier retry of the same
    callback (same call, same payload) is stored once."""

    __tablename__ = "carrier_status_events"
    __table_args__ = (
        UniqueConstraint("call_sid", "payload_hash"),
        Index("ix_carrier_status_events_received_at", "received_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    carrier: Mapped[str] = mapped_column(String(16), server_default="exotel")
    call_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(32))
    custom_field: Mapped[str | None] = mapped_column(String(128))
    # The callback whose call this was (CustomField cb:{id}:{attempt}); kept when it is purged.
    callback_id: Mapped[int | None] = mapped_column(
        ForeignKey("voice_callbacks.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    # sha256 of the payload's canonical JSON: what makes a retried callback the same one.
    payload_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SmsCallback(Base):
    """An SMS sent or a delivery report received, stored raw."""

    __tablename__ = "sms_callbacks"
    __table_args__ = (Index("ix_sms_callbacks_sms_sid", "sms_sid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sms_sid: Mapped[str | None] = mapped_column(String(64))
    to_number: Mapped[str | None] = mapped_column(String(20))
    from_number: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(32))
    detailed_status: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_jsonb_default("{}"))
    callback_id: Mapped[int | None] = mapped_column(
        ForeignKey("voice_callbacks.id", ondelete="SET NULL"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
