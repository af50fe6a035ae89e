"""Each strategy's choice on the same fixture, and skill widening over time (pure)."""

from __future__ import annotations

from core.routing.model import AgentSnapshot, Requirements, Widening
from core.routing.strategies import cursor_value, rank

NOW = 1_000_000_000
DAY = "2026-11-28"


def agent(i: int, **kw) -> AgentSnapshot:
    base = dict(id=i, presence="available", status="available", sequence=i, handled_day=DAY)
    return AgentSnapshot(**{**base, **kw})


# One fixture for every strategy: four free agents that each strategy orders differently.
FIXTURE = [
    agent(
        1, skills={"technical": 2}, last_end_ms=NOW - 60_000, handled_today=9, max_calls=2, calls={}
    ),
    agent(2, skills={"technical": 5, "english": 5}, last_end_ms=NOW - 10_000, handled_today=4),
    agent(3, skills={"technical": 3}, last_end_ms=NOW - 300_000, handled_today=7),
    agent(
        4,
        skills={"technical": 4},
        last_end_ms=NOW - 120_000,
        handled_today=2,
        max_calls=3,
        calls={"x": (NOW + 5000, "c")},
    ),
    agent(5, skills={"technical": 5}, presence="break", status="break"),  # never chosen
    agent(6, skills={"technical": 5}, wrap_until_ms=NOW + 10_000),  # wrapping up
]
ANY = Requirements(skills={"technical": 1})


def ids(strategy: str, req: Requirements = ANY, **kw) -> list[int]:
    return [a.id for a in rank(strategy, FIXTURE, req, now_ms=NOW, day=DAY, **kw)]


def test_sequential_takes_the_fixed_order():
    assert ids("sequential") == [1, 2, 3, 4]
    assert ids("sequential", Requirements(agent_ids=(3, 1, 2))) == [3, 1, 2]


def test_round_robin_starts_after_the_last_agent_served():
    assert ids("round_robin") == [1, 2, 3, 4]
    assert ids("round_robin", cursor=cursor_value(FIXTURE[1])) == [3, 4, 1, 2]
    # The cursor's agent need not be free: agent 5 (sequence 5, on a break) was served last.
    assert ids("round_robin", cursor=cursor_value(FIXTURE[4])) == [1, 2, 3, 4]


def test_longest_idle_first():
    assert ids("longest_idle") == [3, 4, 1, 2]


def test_skills_based_best_match_then_longest_idle():
    req = Requirements(skills={"technical": 3}, optional={"english": 3})
    # 2: (5-3) + english 5 = 7; 4: 1; 3: 0 ; 1 lacks technical 3.
    assert ids("skills_based", req) == [2, 4, 3]
    assert ids("skills_based", Requirements(skills={"technical": 4})) == [2, 4]


def test_load_balanced_fewest_active_then_fewest_handled_today():
    # 4 has one active call (and room for more) so goes last; the rest by calls handled today.
    assert ids("load_balanced") == [2, 3, 1, 4]


def test_nobody_free_nobody_ranked():
    assert ids("longest_idle", Requirements(skills={"spanish": 1})) == []
    assert ids("sequential", Requirements(agent_ids=(5, 6))) == []


def test_skill_widening_relaxes_minimums_and_drops_optional_over_time():
    widening = Widening.from_config(
        [{"afterS": 30, "relaxBy": 1}, {"afterS": 90, "relaxBy": 2, "dropOptional": True}]
    )
    req = Requirements(skills={"technical": 5}, optional={"english": 4})
    at = {t: widening.apply(req, t) for t in (0, 29, 30, 90, 600)}
    assert at[0] == req and at[29] == req
    assert at[30].skills == {"technical": 4} and at[30].optional == {"english": 4}
    assert at[90].skills == {"technical": 2} and at[90].optional == {}
    assert at[600].skills == {"technical": 2}

    def chosen(t: float) -> list[int]:
        return [a.id for a in rank("skills_based", FIXTURE, widening.apply(req, t), now_ms=NOW)]

    assert chosen(0) == [2]
    assert chosen(30) == [2, 4]
    assert chosen(90) == [2, 4, 3, 1]
