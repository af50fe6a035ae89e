"""Every carrier status callback stored raw (inbound calls' too, not only callbacks' calls).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "carrier_status_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("carrier", sa.String(length=16), server_default="exotel", nullable=False),
        sa.Column("call_sid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("custom_field", sa.String(length=128), nullable=True),
        sa.Column("callback_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["voice_callbacks.id"],
            name=op.f("fk_carrier_status_events_callback_id_voice_callbacks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_status_events")),
        sa.UniqueConstraint(
            "call_sid", "payload_hash", name=op.f("uq_carrier_status_events_call_sid_payload_hash")
        ),
    )
    op.create_index(
        op.f("ix_carrier_status_events_callback_id"),
        "carrier_status_events",
        ["callback_id"],
        unique=False,
    )
    op.create_index(
        "ix_carrier_status_events_received_at",
        "carrier_status_events",
        ["received_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("carrier_status_events")
