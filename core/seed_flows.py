"""Seed step: the production "Main Customer Support Flow" (published, the default flow) and two
sample flows. Idempotent: a flow whose name exists (even deleted by an operator) is left alone.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Settings
from core.db.models import Flow
from core.errors import Conflict
from core.flows.samples import MAIN_FLOW_NAME, sample_flows
from core.repositories import audit as audit_repo
from core.repositories import flows as flows_repo
from core.seed_business_hours import support_hours_id
from core.seed_routing import routing_ids

log = structlog.stdlib.get_logger(__name__)


async def seed_flows(session: AsyncSession, settings: Settings) -> None:
    """Create and publish each seeded flow that does not exist yet; make the main one default."""
    hours_id = await support_hours_id(session)  # the welcome node's business-hours check
    # Queues and agents come from the routing seed step, which runs first.
    for defn in sample_flows(business_hours_id=hours_id, **await routing_ids(session)):
        exists = (
            await session.execute(select(Flow.id).where(Flow.name == defn.name).limit(1))
        ).first()
        if exists is not None:
            continue
        try:
            # A savepoint: a concurrent seeder creating the same flow must not fail the seed.
            async with session.begin_nested():
                flow = await flows_repo.create_flow(session, defn, created_by=None)
                version = await flows_repo.publish(
                    session, flow.id, published_by=None, note="seeded"
                )
                default = defn.name == MAIN_FLOW_NAME and not await _has_default(session)
                if default:
                    await flows_repo.set_default(session, flow)
                await audit_repo.record(
                    session,
                    audit_repo.SYSTEM,
                    action="flow.seed",
                    entity_type="flow",
                    entity_id=flow.id,
                    after={"name": defn.name, "nodes": len(defn.nodes),
                           "connections": len(defn.connections), "live_version": version.version,
                           "is_default": default},
                )
        except Conflict:
            continue
        log.info("seed_flow_created", flow_id=flow.id, name=defn.name, default=default)


async def _has_default(session: AsyncSession) -> bool:
    row = await session.execute(
        select(Flow.id).where(Flow.is_default.is_(True), Flow.deleted_at.is_(None)).limit(1)
    )
    return row.first() is not None
