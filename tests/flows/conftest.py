"""The flows API tests run on the API suite's fixtures (real uvicorn + httpx, seeded users).

tests/ has no packages, so tests/api/conftest.py is loaded by path and its fixtures re-bound
here; `api_helpers` comes from the same folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest_asyncio

from core.config import Settings
from core.seed import run_seed

_API_TESTS = Path(__file__).resolve().parent.parent / "api"
if str(_API_TESTS) not in sys.path:
    sys.path.insert(0, str(_API_TESTS))

_spec = importlib.util.spec_from_file_location("_flows_api_conftest", _API_TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
_api_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api_conftest)

api_settings = _api_conftest.api_settings
extra_routes = _api_conftest.extra_routes
app = _api_conftest.app
base_url = _api_conftest.base_url
client = _api_conftest.client
engine = _api_conftest.engine
db = _api_conftest.db
sessions = _api_conftest.sessions
auth = _api_conftest.auth


@pytest_asyncio.fixture(scope="module")
async def seeded(api_settings: Settings) -> None:
    """The whole seed (users and flows), as `ivr dev` runs it."""
    await run_seed(api_settings)
