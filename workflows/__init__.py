"""Workflow code: deterministic only (see ARCHITECTURE.md).

`WORKFLOWS` is the worker's registry: every workflow class the worker serves. Add a class
here when it is written; worker.py reads the list, nothing else changes.
"""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from workflows.call import CallWorkflow
from workflows.callback import CallbackWorkflow
from workflows.sms import SmsWorkflow

WORKFLOWS: list[type] = [CallWorkflow, CallbackWorkflow, SmsWorkflow]

# Pure, deterministic libraries the workflows use, loaded once outside the sandbox instead of
# re-imported per workflow run (Jinja2 also builds caches guarded by locks at first use).
PASSTHROUGH_MODULES = ("jinja2", "markupsafe", "pydantic", "pydantic_core", "core")


def workflow_runner(*, sandboxed: bool = True) -> WorkflowRunner:
    """The runner workers use: Temporal's sandbox (tests always use it), or none when a
    deployment trades that guard for the per-call re-import it costs (IVR_WORKFLOW_SANDBOX)."""
    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
