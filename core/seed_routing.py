"""Seed step: the original design's 4 agents and 2 queues, wired into the production flow.

Agents: 1 billing, 2 technical support, 1 general enquiries, with skills. Under `ivr dev`
(env dev) they start available, so `ivr call --digits 2` reaches a tech agent through the
queue at once; elsewhere they start offline until they (or a supervisor) sign them in.
Queues: "Tech Support" (skills_based, technical) and "General" (longest_idle, general).

Runs before `seed_flows`, which creates the production flow with these ids (`routing_ids`).
Idempotent: rows are found by name. A production flow seeded before queues existed (an older
database) is wired here, only while its queue nodes name no queue and nobody has edited it
since it was seeded (draft revision 1, every version published by the seed): its draft gets
the queue ids and the billing agent and is published again. Operators' edits are never
overwritten.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.config import Env, Settings
from core.db.models import Agent, Flow, FlowVersion, Queue
from core.flows.samples import MAIN_FLOW_NAME
from core.flows.schema import FlowDefinition
from core.redis import make_redis
from core.repositories import audit as audit_repo
from core.repositories import flows as flows_repo

log = structlog.stdlib.get_logger(__name__)

# name, phone, team, skills, sequence
SEED_AGENTS: tuple[tuple[str, str, str, dict[str, int], int], ...] = (
    ("Priya Sharma", "+919800000101", "billing", {"billing": 5, "english": 4, "hindi": 5}, 1),
    ("Arjun Mehta", "+919800000102", "tech", {"technical": 5, "english": 5}, 2),
    ("Kavya Iyer", "+919800000103", "tech", {"technical": 3, "english": 4, "tamil": 5}, 3),
    ("Rahul Verma", "+919800000104", "general", {"general": 4, "billing": 2, "hindi": 4}, 4),
)
TECH_QUEUE = "Tech Support"
GENERAL_QUEUE = "General"
SEED_QUEUES: tuple[dict[str, Any], ...] = (
    {
        "name": TECH_QUEUE,
        "description": "Technical support line",
        "strategy": "skills_based",
        "required_skills": {"technical": 1},
        "max_size": 50,
        "max_wait_s": 600,
        "announce_interval_s": 30,
        "service_level_s": 30,
        "callback_enabled": True,
        "hold_message": "Thank you for holding. An engineer will be with you shortly.",
        "settings": {
            "widening": [{"afterS": 120, "relaxBy": 1, "dropOptional": True}],
            "agingS": 300,
        },
    },
    {
        "name": GENERAL_QUEUE,
        "description": "General enquiries",
        "strategy": "longest_idle",
        "required_skills": {"general": 1},
        "max_size": 50,
        "max_wait_s": 600,
        "announce_interval_s": 30,
        "service_level_s": 20,
        "callback_enabled": True,
        "hold_message": "Thank you for holding. Your call is important to us.",
        "settings": {"agingS": 300},
    },
)


async def seed_routing(session: AsyncSession, settings: Settings) -> None:
    agents, created = await _ensure_agents(session, available=settings.env == Env.dev)
    queues = await _ensure_queues(session)
    # A production flow seeded before queues existed (an older database) is wired here; a
    # fresh seed creates it wired (seed_flows asks `routing_ids`).
    await _wire_main_flow(session, queues, billing=[agents["Priya Sharma"]])
    if created:
        await session.flush()
        await _reload_live_state(settings)


async def routing_ids(session: AsyncSession) -> dict[str, Any]:
    """The seeded queues and billing agent, as `sample_flows` keyword arguments (None if an
    operator removed them)."""
    queues = dict(
        (
            await session.execute(
                select(Queue.name, Queue.id).where(
                    Queue.name.in_((TECH_QUEUE, GENERAL_QUEUE)), Queue.deleted_at.is_(None)
                )
            )
        )
        .tuples()
        .all()
    )
    billing = await session.scalar(
        select(Agent.id).where(Agent.name == SEED_AGENTS[0][0], Agent.deleted_at.is_(None)).limit(1)
    )
    return {
        "tech_queue_id": queues.get(TECH_QUEUE),
        "general_queue_id": queues.get(GENERAL_QUEUE),
        "billing_agent_ids": [billing] if billing is not None else None,
    }


async def _reload_live_state(settings: Settings) -> None:
    """New agents rows: make the next routing operation rebuild Redis from PostgreSQL.

    Dropping the marker is enough (core.routing.store rebuilds when it is missing); the
    rebuild reads committed rows, and the seed commits before any call can run.
    """
    if not settings.redis_url:
        return
    redis = make_redis(settings.redis_url)
    try:
        await redis.delete("routing:loaded")
    except Exception as err:  # Redis not up yet: it will start empty and be rebuilt anyway
        log.warning("seed_routing_redis_unavailable", error=str(err))
    finally:
        await redis.aclose()


async def _ensure_agents(session: AsyncSession, *, available: bool) -> tuple[dict[str, int], bool]:
    ids: dict[str, int] = {}
    created = False
    for name, phone, team, skills, sequence in SEED_AGENTS:
        found = await session.scalar(select(Agent.id).where(Agent.name == name).limit(1))
        if found is None:
            agent = Agent(
                name=name,
                phone_number=phone,
                team=team,
                skills=skills,
                sequence=sequence,
                max_concurrent_calls=1,
                wrap_up_s=10,
                status="available" if available else "offline",
                live_state={"presence": "available" if available else "offline"},
            )
            session.add(agent)
            await session.flush()
            found = agent.id
            await audit_repo.record(
                session,
                audit_repo.SYSTEM,
                action="agent.seed",
                entity_type="agent",
                entity_id=found,
                after={"name": name, "team": team, "skills": skills},
            )
            log.info("seed_agent_created", agent_id=found, name=name)
            created = True
        ids[name] = found
    return ids, created


async def _ensure_queues(session: AsyncSession) -> dict[str, int]:
    ids: dict[str, int] = {}
    for spec in SEED_QUEUES:
        found = await session.scalar(
            select(Queue.id).where(Queue.name == spec["name"], Queue.deleted_at.is_(None)).limit(1)
        )
        if found is None:
            queue = Queue(**spec)
            session.add(queue)
            await session.flush()
            found = queue.id
            await audit_repo.record(
                session,
                audit_repo.SYSTEM,
                action="queue.seed",
                entity_type="queue",
                entity_id=found,
                after={"name": spec["name"]},
            )
            log.info("seed_queue_created", queue_id=found, name=spec["name"])
        ids[spec["name"]] = found
    return ids


async def _wire_main_flow(
    session: AsyncSession, queues: dict[str, int], *, billing: list[int]
) -> None:
    flow = await session.scalar(
        select(Flow).where(Flow.name == MAIN_FLOW_NAME, Flow.deleted_at.is_(None)).limit(1)
    )
    if flow is None or flow.draft_revision != 1 or flow.live_version is None:
        return
    by_user = await session.scalar(
        select(FlowVersion.id)
        .where(FlowVersion.flow_id == flow.id, FlowVersion.published_by.is_not(None))
        .limit(1)
    )
    if by_user is not None:
        return
    draft = (await flows_repo.load_draft(session, flow)).to_json_dict()
    wanted = {"tech_queue": queues[TECH_QUEUE], "general_queue": queues[GENERAL_QUEUE]}
    changed = False
    for node in draft["nodes"]:
        config = node.setdefault("config", {})
        if node["id"] in wanted and "queueId" not in config:
            config["queueId"] = wanted[node["id"]]
            changed = True
        if node["id"] == "billing_transfer" and "agents" not in config and billing:
            config.pop("skills", None)
            config.update(agents=billing, routingStrategy="sequential")
            changed = True
    if not changed:
        return
    defn = FlowDefinition.model_validate(draft)
    await flows_repo.replace_draft(session, flow.id, defn, expected_revision=1)
    version = await flows_repo.publish(
        session, flow.id, published_by=None, note="seeded: queues and agents wired"
    )
    await audit_repo.record(
        session,
        audit_repo.SYSTEM,
        action="flow.seed_routing",
        entity_type="flow",
        entity_id=flow.id,
        after={"live_version": version.version, **wanted, "billing_agents": billing},
    )
    log.info("seed_flow_wired", flow_id=flow.id, live_version=version.version)
