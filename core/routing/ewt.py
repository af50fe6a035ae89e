"""Estimated wait time: a queueing model over recent handle times and staffed agents. Pure.

Model (M/M/N, the model behind Erlang C). N agents staffed for the queue, mean handle time
AHT (talk + wrap-up, averaged over the queue's recent calls), so each agent finishes calls at
rate 1/AHT.

- A caller at position k (1 = next) while all N agents are busy waits for k completions. With
  N busy agents completions arrive as a Poisson process of rate N/AHT, so that wait is
  Erlang(k, N/AHT) distributed with mean      EWT(k) = k · AHT / N     (`position_wait_s`).
  Agents free right now serve the first `free` callers at once: EWT(k) = 0 for k <= free, and
  (k - free) · AHT / N after that.
- A new caller (stats): Erlang C. Offered load A = λ · AHT (λ: arrivals per second over the
  recent window). P(wait) = C(N, A) = (A^N/N! · N/(N-A)) / (Σ_{i<N} A^i/i! + A^N/N! · N/(N-A)),
  mean wait W = C(N, A) · AHT / (N - A) (`erlang_c_wait_s`); infinite when A >= N.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_AHT_S = 180.0


def average_handle_s(recent: Sequence[float], default_s: float = DEFAULT_AHT_S) -> float:
    values = [v for v in recent if v > 0]
    return sum(values) / len(values) if values else default_s


def position_wait_s(position: int, staffed: int, aht_s: float, free: int = 0) -> float | None:
    """Expected wait of the caller at `position` (1-based); None when nobody is staffed."""
    if position <= free:
        return 0.0
    if staffed <= 0:
        return None
    return (position - free) * aht_s / staffed


def erlang_c(agents: int, load: float) -> float:
    """Probability that an arriving caller waits (Erlang C), for `load` Erlangs on `agents`."""
    if agents <= 0:
        return 1.0
    if load <= 0:
        return 0.0
    if load >= agents:
        return 1.0
    # Iterative form avoids factorials: term_i = A^i / i!.
    term, total = 1.0, 1.0
    for i in range(1, agents):
        term *= load / i
        total += term
    top = term * load / agents * (agents / (agents - load))
    return top / (total + top)


def erlang_c_wait_s(agents: int, arrivals_per_s: float, aht_s: float) -> float:
    """Mean wait of a new caller; math.inf when the queue is overloaded or unstaffed."""
    load = arrivals_per_s * aht_s
    if agents <= 0 or load >= agents:
        return math.inf
    return erlang_c(agents, load) * aht_s / (agents - load)


def spoken_wait(seconds: float | None) -> str | None:
    """EWT as callers hear it, rounded up to a whole minute (never "zero minutes")."""
    if seconds is None or math.isinf(seconds):
        return None
    minutes = max(1, math.ceil(seconds / 60))
    return "about one minute" if minutes == 1 else f"about {minutes} minutes"
