"""Process-level tuning shared by the long-running entry points (API, worker, load generator).

Python's cyclic garbage collector periodically walks every container object of its oldest
generation. A server process keeps hundreds of thousands of them from its imports (FastAPI,
SQLAlchemy, pydantic, temporalio...), none of which ever becomes garbage, so each full
collection was a 120-220 ms pause of the whole event loop, every few seconds under load,
measured in the API during `ivr loadtest-queue` (bench/QUEUE_RESULTS.md): every webhook in
flight waited it out. `gc.freeze()` moves what exists at the end of start-up into a permanent
generation the collector no longer walks; everything created later is collected as before.
The young generation's threshold is raised too: a webhook allocates thousands of container
objects (pydantic models, dicts, JSON), so at the default of 700 a collection ran on every
few requests, each one a pause of the loop that every request in flight waits out.
"""

from __future__ import annotations

import gc
import importlib

YOUNG_THRESHOLD = 20_000  # allocations (net) between young-generation collections; default 700


def freeze_startup_heap(*preload: str) -> int:
    """Import `preload` (modules a process would otherwise import on its first request),
    collect once, then freeze the heap; the number of objects frozen."""
    for module in preload:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
    return gc.get_freeze_count()


__all__ = ["freeze_startup_heap"]
