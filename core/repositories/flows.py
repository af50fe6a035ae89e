"""Flows: drafts in ivr_flows/flow_nodes/flow_connections, immutable published versions,
the numbers each flow answers, and the lookup a new call uses to find its flow.

Every function works inside the caller's transaction and never commits; a failure raises an
`AppError` before anything is flushed that would outlive the rollback.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db.models import (
    Agent,
    BusinessHours,
    Flow,
    FlowConnection,
    FlowNode,
    FlowNumber,
    FlowVersion,
    Queue,
)
from core.errors import Conflict, InvalidFlow, InvalidInput, NotFound
from core.flows.schema import FlowDefinition
from core.flows.validate import Problem, parse_flow, structural_problems, validate_flow
from core.phone import to_e164

MAX_NUMBERS_PER_FLOW = 100
_DETAIL_PROBLEMS = 10


class FlowProblems(InvalidFlow):
    """A flow that cannot be stored or published; carries every problem found."""

    def __init__(self, problems: Sequence[Problem], what: str = "the flow is not valid") -> None:
        self.problems = list(problems)
        super().__init__(f"{what}: {describe_problems(self.problems)}")


def describe_problems(problems: Sequence[Problem]) -> str:
    """One line naming each problem's node and field (the first few, then a count)."""
    parts = []
    for p in problems[:_DETAIL_PROBLEMS]:
        where = ", ".join(x for x in (f"node {p.node_id}" if p.node_id else None, p.field) if x)
        parts.append(f"{where}: {p.message}" if where else p.message)
    if len(problems) > _DETAIL_PROBLEMS:
        parts.append(f"and {len(problems) - _DETAIL_PROBLEMS} more")
    noun = "problem" if len(problems) == 1 else "problems"
    return f"{len(problems)} {noun}: " + "; ".join(parts)


def checksum(defn: FlowDefinition) -> str:
    """sha256 of the canonical JSON: equal definitions, equal checksums."""
    return hashlib.sha256(defn.canonical_json().encode()).hexdigest()


def summary(flow: Flow) -> dict[str, Any]:
    """What the audit log keeps of a flow's metadata."""
    return {
        "name": flow.name,
        "draft_revision": flow.draft_revision,
        "live_version": flow.live_version,
        "is_default": flow.is_default,
    }


# --- reads -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowListing:
    flow: Flow
    numbers: list[str]
    node_count: int


async def list_flows(session: AsyncSession) -> list[FlowListing]:
    """Every flow not deleted, by name, with its numbers and draft size."""
    flows = (
        await session.execute(
            select(Flow).where(Flow.deleted_at.is_(None)).order_by(Flow.name, Flow.id)
        )
    ).scalars().all()
    ids = [f.id for f in flows]
    numbers = await _numbers_by_flow(session, ids)
    counts = dict(
        (
            await session.execute(
                select(FlowNode.flow_id, func.count())
                .where(FlowNode.flow_id.in_(ids))
                .group_by(FlowNode.flow_id)
            )
        ).all()
    ) if ids else {}
    return [FlowListing(f, numbers.get(f.id, []), counts.get(f.id, 0)) for f in flows]


async def _numbers_by_flow(session: AsyncSession, ids: list[int]) -> dict[int, list[str]]:
    if not ids:
        return {}
    rows = await session.execute(
        select(FlowNumber.flow_id, FlowNumber.number)
        .where(FlowNumber.flow_id.in_(ids))
        .order_by(FlowNumber.number)
    )
    out: dict[int, list[str]] = {}
    for flow_id, number in rows:
        out.setdefault(flow_id, []).append(number)
    return out


async def numbers_of(session: AsyncSession, flow_id: int) -> list[str]:
    return (await _numbers_by_flow(session, [flow_id])).get(flow_id, [])


async def get_flow(session: AsyncSession, flow_id: int, *, for_update: bool = False) -> Flow:
    """The flow (not deleted); NotFound otherwise. `for_update` locks its row."""
    stmt = select(Flow).where(Flow.id == flow_id, Flow.deleted_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    flow = (await session.execute(stmt)).scalar_one_or_none()
    if flow is None:
        raise NotFound(f"flow {flow_id} not found")
    return flow


async def load_draft(session: AsyncSession, flow: Flow) -> FlowDefinition:
    """The flow's draft as a definition, nodes and connections in the order they were saved."""
    nodes = (
        await session.execute(
            select(FlowNode).where(FlowNode.flow_id == flow.id).order_by(FlowNode.id)
        )
    ).scalars().all()
    conns = (
        await session.execute(
            select(FlowConnection)
            .where(FlowConnection.flow_id == flow.id)
            .order_by(FlowConnection.id)
        )
    ).scalars().all()
    raw = {
        "name": flow.name,
        "description": flow.description,
        "entryNode": flow.entry_node_key,
        "nodes": [
            {"id": n.node_key, "type": n.type, "name": n.name, "config": n.config,
             "position": {"x": n.position_x, "y": n.position_y}}
            for n in nodes
        ],
        "connections": [
            {"fromNode": c.from_node_key, "toNode": c.to_node_key, "port": c.port}
            for c in conns
        ],
    }
    defn, problems = parse_flow(raw)
    if defn is None:
        # Stored by an older schema that no longer parses: say so instead of a 500.
        raise FlowProblems(problems, f"the stored draft of flow {flow.id} no longer parses")
    return defn


async def list_versions(session: AsyncSession, flow_id: int) -> Sequence[FlowVersion]:
    """Newest first."""
    return (
        await session.execute(
            select(FlowVersion)
            .where(FlowVersion.flow_id == flow_id)
            .order_by(FlowVersion.version.desc())
        )
    ).scalars().all()


async def get_version(session: AsyncSession, flow_id: int, version: int) -> FlowVersion:
    row = (
        await session.execute(
            select(FlowVersion).where(
                FlowVersion.flow_id == flow_id, FlowVersion.version == version
            )
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"flow {flow_id} has no version {version}")
    return row


async def known_references(session: AsyncSession) -> dict[str, set[int]]:
    """Ids a flow may reference, as validate_flow's keyword arguments."""
    queues = (await session.execute(select(Queue.id).where(Queue.deleted_at.is_(None)))).scalars()
    agents = (await session.execute(select(Agent.id).where(Agent.deleted_at.is_(None)))).scalars()
    hours = (await session.execute(select(BusinessHours.id))).scalars()
    return {
        "known_queue_ids": set(queues),
        "known_agent_ids": set(agents),
        "known_business_hours_ids": set(hours),
    }


async def validate_draft(session: AsyncSession, flow: Flow) -> list[Problem]:
    defn = await load_draft(session, flow)
    return validate_flow(defn, **await known_references(session))


# --- writes ------------------------------------------------------------------------------


def _check_storable(defn: FlowDefinition) -> None:
    """Refuse drafts the tables cannot hold (duplicate ids or ports, dangling connections)."""
    blocking = structural_problems(validate_flow(defn))
    if blocking:
        raise FlowProblems(blocking, "the draft cannot be saved")


async def _name_taken(session: AsyncSession, name: str, *, exclude_id: int | None) -> bool:
    stmt = select(Flow.id).where(Flow.deleted_at.is_(None), Flow.name == name)
    if exclude_id is not None:
        stmt = stmt.where(Flow.id != exclude_id)
    return (await session.execute(stmt.limit(1))).first() is not None


async def _write_graph(session: AsyncSession, flow_id: int, defn: FlowDefinition) -> None:
    await session.execute(delete(FlowConnection).where(FlowConnection.flow_id == flow_id))
    await session.execute(delete(FlowNode).where(FlowNode.flow_id == flow_id))
    if defn.nodes:
        await session.execute(
            insert(FlowNode),
            [
                {
                    "flow_id": flow_id,
                    "node_key": n.id,
                    "type": n.type,
                    "name": n.name,
                    "config": n.config.model_dump(mode="json", exclude_none=True),
                    "position_x": n.position.x,
                    "position_y": n.position.y,
                }
                for n in defn.nodes
            ],
        )
    if defn.connections:
        await session.execute(
            insert(FlowConnection),
            [
                {"flow_id": flow_id, "from_node_key": c.from_node, "to_node_key": c.to_node,
                 "port": c.port}
                for c in defn.connections
            ],
        )


async def _allocate_flow_id(session: AsyncSession) -> int | None:
    """None when the database generates ivr_flows.id; else the next id, allocated safely.

    WORKAROUND: ivr_flows.id is part of the composite live_version foreign key, so SQLAlchemy
    does not treat it as autoincrement and 0001_initial creates it without a sequence. Until
    the schema gives it one, ids are allocated here under a transaction-scoped advisory lock
    (flow creation is rare); once it has one, this returns None and the database decides.
    """
    if Flow.__table__.autoincrement_column is not None:
        return None
    await session.execute(select(func.pg_advisory_xact_lock(_FLOW_ID_LOCK)))
    return int(
        (await session.execute(select(func.coalesce(func.max(Flow.id), 0) + 1))).scalar_one()
    )


_FLOW_ID_LOCK = 0x1F10_1D  # an arbitrary key, unique to this use


async def create_flow(
    session: AsyncSession, defn: FlowDefinition, *, created_by: int | None
) -> Flow:
    """A new flow whose draft is `defn` (not published)."""
    _check_storable(defn)
    if await _name_taken(session, defn.name, exclude_id=None):
        raise Conflict(f"a flow named {defn.name!r} already exists")
    flow = Flow(
        id=await _allocate_flow_id(session),
        name=defn.name,
        description=defn.description,
        entry_node_key=defn.entry_node,
        created_by=created_by,
    )
    session.add(flow)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a flow named {defn.name!r} already exists") from exc
    await _write_graph(session, flow.id, defn)
    await session.refresh(flow)
    return flow


async def replace_draft(
    session: AsyncSession, flow_id: int, defn: FlowDefinition, *, expected_revision: int
) -> Flow:
    """Replace the whole draft if nobody saved since `expected_revision` (else Conflict)."""
    _check_storable(defn)
    flow = await get_flow(session, flow_id)
    if await _name_taken(session, defn.name, exclude_id=flow_id):
        raise Conflict(f"a flow named {defn.name!r} already exists")
    # Compare-and-set in one statement, so two concurrent saves cannot both win.
    try:
        result = await session.execute(
            update(Flow)
            .where(
                Flow.id == flow_id,
                Flow.deleted_at.is_(None),
                Flow.draft_revision == expected_revision,
            )
            .values(
                name=defn.name,
                description=defn.description,
                entry_node_key=defn.entry_node,
                draft_revision=Flow.draft_revision + 1,
                updated_at=func.now(),
            )
            .returning(Flow.id)
        )
    except IntegrityError as exc:
        raise Conflict(f"a flow named {defn.name!r} already exists") from exc
    if result.first() is None:
        raise Conflict(
            f"flow {flow_id} was changed by someone else (draft revision is "
            f"{flow.draft_revision}, not {expected_revision}); reload it and apply your edit again"
        )
    await _write_graph(session, flow_id, defn)
    await session.refresh(flow)
    return flow


async def soft_delete(session: AsyncSession, flow: Flow) -> list[str]:
    """Mark the flow deleted and release its numbers (they fall to the default flow)."""
    if flow.is_default:
        raise Conflict("this is the default flow; make another flow the default first")
    numbers = await numbers_of(session, flow.id)
    await session.execute(delete(FlowNumber).where(FlowNumber.flow_id == flow.id))
    flow.deleted_at = datetime.now(UTC)
    await session.flush()
    return numbers


async def publish(
    session: AsyncSession, flow_id: int, *, published_by: int | None, note: str | None = None
) -> FlowVersion:
    """Validate the draft and freeze it as the next version, which becomes live."""
    flow = await get_flow(session, flow_id, for_update=True)  # serialises version numbers
    defn = await load_draft(session, flow)
    problems = validate_flow(defn, **await known_references(session))
    if problems:
        raise FlowProblems(problems, "the draft cannot be published")
    latest = (
        await session.execute(
            select(func.max(FlowVersion.version)).where(FlowVersion.flow_id == flow_id)
        )
    ).scalar_one()
    version = FlowVersion(
        flow_id=flow_id,
        version=(latest or 0) + 1,
        definition=defn.to_json_dict(),
        checksum=checksum(defn),
        note=note,
        published_by=published_by,
    )
    session.add(version)
    flow.live_version = version.version
    await session.flush()
    await session.refresh(version)
    await session.refresh(flow)
    return version


async def make_version_live(session: AsyncSession, flow_id: int, version: int) -> FlowVersion:
    """Rollback (or roll forward): version `version` answers new calls from now on."""
    flow = await get_flow(session, flow_id, for_update=True)
    row = await get_version(session, flow_id, version)
    flow.live_version = row.version
    await session.flush()
    await session.refresh(flow)
    return row


def normalise_numbers(raw: Sequence[str]) -> list[str]:
    """E.164 (default region IN), sorted, duplicates dropped; InvalidInput naming a bad one."""
    if len(raw) > MAX_NUMBERS_PER_FLOW:
        raise InvalidInput(f"numbers: at most {MAX_NUMBERS_PER_FLOW} numbers per flow")
    out: set[str] = set()
    for i, number in enumerate(raw):
        e164 = to_e164(number)
        if e164 is None:
            raise InvalidInput(f"numbers[{i}]: {number[:40]!r} is not a phone number")
        out.add(e164)
    return sorted(out)


async def set_numbers(session: AsyncSession, flow: Flow, numbers: list[str]) -> list[str]:
    """Replace the numbers `flow` answers; Conflict if another flow already answers one."""
    taken = (
        await session.execute(
            select(FlowNumber.number, Flow.id, Flow.name)
            .join(Flow, Flow.id == FlowNumber.flow_id)
            .where(FlowNumber.number.in_(numbers), FlowNumber.flow_id != flow.id)
            .order_by(FlowNumber.number)
        )
    ).all()
    if taken:
        number, other_id, other_name = taken[0]
        raise Conflict(f"{number} already answers flow {other_id} ({other_name!r})")
    await session.execute(delete(FlowNumber).where(FlowNumber.flow_id == flow.id))
    if numbers:
        try:
            await session.execute(
                insert(FlowNumber), [{"number": n, "flow_id": flow.id} for n in numbers]
            )
        except IntegrityError as exc:  # another flow claimed one meanwhile
            raise Conflict("one of these numbers was just assigned to another flow") from exc
    return numbers


async def set_default(session: AsyncSession, flow: Flow) -> Flow | None:
    """Make `flow` the default (it must be published); returns the previous default."""
    if flow.live_version is None:
        raise Conflict("publish this flow before making it the default")
    previous = (
        await session.execute(
            select(Flow)
            .where(Flow.is_default.is_(True), Flow.deleted_at.is_(None), Flow.id != flow.id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if previous is not None:
        previous.is_default = False
        await session.flush()  # the partial unique index allows one default at a time
    flow.is_default = True
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("another flow was made the default at the same time; retry") from exc
    await session.refresh(flow)  # updated_at is set by the database
    return previous


# --- the call engine's lookup ----------------------------------------------------------------


class ResolvedFlow(NamedTuple):
    flow_id: int
    version: int
    name: str
    definition: dict[str, Any]
    checksum: str | None = None


DefinitionCache = OrderedDict[tuple[int, int, str], dict[str, Any]]
_CACHE_SIZE = 64


async def resolve_flow_for_number(
    session: AsyncSession,
    called: str | None,
    *,
    cache: DefinitionCache | None = None,
    flow_id: int | None = None,
) -> ResolvedFlow | None:
    """The published flow answering `called` (its own, else the default flow), or None.

    `flow_id`, when given and live, wins over the number: a call we placed for a callback runs
    the flow the callback names, whatever ExoPhone it shows. Only live published versions are
    returned. `cache` keeps parsed-from-DB definitions by (flow, version, checksum); versions
    are immutable, so it never needs invalidating.
    """
    number = to_e164(called) if called else None
    assigned = (FlowNumber.number == number) if number else None
    stmt = (
        select(Flow.id, Flow.live_version, Flow.name, FlowVersion.checksum)
        .join(
            FlowVersion,
            (FlowVersion.flow_id == Flow.id) & (FlowVersion.version == Flow.live_version),
        )
        .where(Flow.deleted_at.is_(None))
    )
    row = None
    if flow_id is not None:
        row = (await session.execute(stmt.where(Flow.id == flow_id).limit(1))).first()
    if row is None and assigned is not None:
        row = (
            await session.execute(
                stmt.join(FlowNumber, FlowNumber.flow_id == Flow.id).where(assigned).limit(1)
            )
        ).first()
    if row is None:
        row = (await session.execute(stmt.where(Flow.is_default.is_(True)).limit(1))).first()
    if row is None:
        return None
    flow_id, version, name, digest = row
    key = (flow_id, version, digest)
    definition = cache.get(key) if cache is not None else None
    if definition is None:
        definition = (
            await session.execute(
                select(FlowVersion.definition).where(
                    FlowVersion.flow_id == flow_id, FlowVersion.version == version
                )
            )
        ).scalar_one()
        if cache is not None:
            cache[key] = definition
            while len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
    else:
        cache.move_to_end(key)  # type: ignore[union-attr]
    return ResolvedFlow(flow_id, version, name, definition, digest)


def make_version_loader(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[[int, int], Awaitable[tuple[dict[str, Any], str] | None]]:
    """`load(flow_id, version)`: a published version's definition and checksum, or None."""

    async def load(flow_id: int, version: int) -> tuple[dict[str, Any], str] | None:
        async with sessionmaker() as session:
            try:
                row = await get_version(session, flow_id, version)
            except NotFound:
                return None
            return row.definition, row.checksum

    return load


def make_flow_resolver(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[..., Awaitable[ResolvedFlow | None]]:
    """`resolve(called, custom_field=None)` for the call gateway: its own session, definitions
    cached; a `CustomField` naming one of our callbacks picks that callback's flow."""
    from core.repositories.callbacks import flow_for_custom_field

    cache: DefinitionCache = OrderedDict()

    async def resolve(called: str | None, custom_field: str | None = None) -> ResolvedFlow | None:
        async with sessionmaker() as session:
            flow_id = await flow_for_custom_field(session, custom_field) if custom_field else None
            return await resolve_flow_for_number(session, called, cache=cache, flow_id=flow_id)

    return resolve
