"""Callbacks already waiting (some for days) must replay on today's code: every saved
CallbackWorkflow history replays without non-determinism. A change to the workflow's shape is
guarded with `workflow.patched()` and gets a fresh history here, recorded by running this
module with IVR_RECORD_CALLBACK_HISTORIES=1 (never edit a saved history)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cb_support import new_callback
from fake_exotel import FakeExotel
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.callbacks import CallbackActivities
from core.callbacks import AGENT_RESERVED_SIGNAL, AgentReserved, CallbackMode
from core.config import Settings
from core.temporal import callback_workflow_id, with_data_converter
from workflows import WORKFLOWS, workflow_runner
from workflows.callback import CallbackWorkflow

HERE = Path(__file__).resolve().parent / "histories"
HISTORIES = sorted(HERE.glob("*.json"))
RECORD = os.environ.get("IVR_RECORD_CALLBACK_HISTORIES") == "1"


def test_there_are_histories_to_replay():
    assert len(HISTORIES) >= 2


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path):
    history = WorkflowHistory.from_json(f"callback-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=WORKFLOWS, workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.skipif(not RECORD, reason="set IVR_RECORD_CALLBACK_HISTORIES=1 to re-record")
async def test_record_histories(
    time_skipping_env: WorkflowEnvironment, cb_settings: Settings, sessionmaker,
    fake_exotel: tuple[FakeExotel, str],
):
    fake = fake_exotel[0]
    fake.call_duration_s = 0.0
    client = with_data_converter(time_skipping_env.client)
    tq = f"cb-rec-{uuid.uuid4().hex[:8]}"
    HERE.mkdir(exist_ok=True)
    async with httpx.AsyncClient(timeout=5) as http, Worker(
        client, task_queue=tq, workflows=[CallbackWorkflow],
        activities=CallbackActivities(cb_settings, sessionmaker, http).all(),
        workflow_runner=workflow_runner(),
    ):
        now = await time_skipping_env.get_current_time()
        fake.outcomes["+919800000101"] = ["no-answer", "busy"]
        retried = await new_callback(sessionmaker, cb_settings, phone="+919800000101",
                                     scheduled_at=now + timedelta(hours=3), max_attempts=2,
                                     retry_delay_s=900, send_sms=True)
        queued = await new_callback(sessionmaker, cb_settings, phone="+919800000102",
                                    mode=CallbackMode.queue)
        for name, start in (("scheduled_sms_retries_exhausted", retried),
                            ("queue_agent_first_answered", queued)):
            handle = await client.start_workflow(
                CallbackWorkflow.run, start, id=callback_workflow_id(start.callback_id),
                task_queue=tq,
            )
            if start.mode == CallbackMode.queue:
                await handle.signal(AGENT_RESERVED_SIGNAL,
                                    AgentReserved(agent_id=1, agent_number="+919700000101"))
            await handle.result()
            history = await handle.fetch_history()
            (HERE / f"{name}.json").write_text(history.to_json())
