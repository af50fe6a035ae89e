"""Fixtures of the dashboard tests: a seeded API and worker with simulated calls (module-wide)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dash_support import Backend

from core.config import Settings


@pytest.fixture(scope="module")
def backend(settings: Settings, temporal_env: Any) -> Iterator[Backend]:
    """Seeded API + worker with a few simulated calls already made (module-wide)."""
    dash_settings = settings.model_copy(
        update={"temporal_task_queue": f"dash-{uuid.uuid4().hex[:8]}", "call_grace_s": 3.0}
    )
    previous = os.environ.get("IVR_API_URL")
    b = Backend(dash_settings)
    b.start()
    os.environ["IVR_API_URL"] = b.url
    try:
        b.run(b.place_calls(), timeout=240)
        yield b
    finally:
        if previous is None:
            os.environ.pop("IVR_API_URL", None)
        else:
            os.environ["IVR_API_URL"] = previous
        b.stop()
