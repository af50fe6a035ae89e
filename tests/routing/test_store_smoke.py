from __future__ import annotations

from core.routing.model import Requirements


async def test_reserve_release_cycle(store, memory):
    for i in (1, 2, 3, 4):
        await store.set_presence(i, "available")
    agent = await store.reserve(
        Requirements(skills={"technical": 3}), "skills_based", lease="c1:t:0", lease_s=30
    )
    assert agent is not None and agent.id == 2
    assert agent.status == "reserved"
    again = await store.reserve(
        Requirements(skills={"technical": 3}), "skills_based", lease="c1:t:0", lease_s=30
    )
    assert again.id == 2
    assert await store.extend("c1:t:0", 100, on_call=True) == 2
    assert (await store.agent(2)).status == "on_call"
    assert await store.release("c1:t:0", handled=True, queue_id=7, handle_s=60) == 2
    snap = await store.agent(2)
    assert snap.status == "wrap_up"
    assert memory.mirrored[2].status == "wrap_up"
    assert snap.handled_today == 1
