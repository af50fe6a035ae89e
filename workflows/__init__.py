"""Workflow code: deterministic only (see ARCHITECTURE.md).

`WORKFLOWS` is the worker's registry: every workflow class the worker serves. Add a class
here when it is written; worker.py reads the list, nothing else changes.

The sandbox re-imports a workflow's module, and so this package, for every workflow run: this
file therefore imports nothing of its own at load time (the registry is built on first access),
so starting a call does not re-execute the callback and SMS workflow modules as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from temporalio.worker import WorkflowRunner

# Pure, deterministic libraries the workflows use, loaded once outside the sandbox instead of
# re-imported per workflow run (Jinja2 also builds caches guarded by locks at first use).
PASSTHROUGH_MODULES = ("jinja2", "markupsafe", "pydantic", "pydantic_core", "core")


def _registry() -> list[type]:
    from workflows.call import CallWorkflow
    from workflows.callback import CallbackWorkflow
    from workflows.sms import SmsWorkflow

    return [CallWorkflow, CallbackWorkflow, SmsWorkflow]


def __getattr__(name: str) -> Any:
    if name == "WORKFLOWS":
        registry = globals()["WORKFLOWS"] = _registry()
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def workflow_runner(*, sandboxed: bool = True) -> WorkflowRunner:
    """The runner workers use: Temporal's sandbox (tests always use it), or none when a
    deployment trades that guard for the per-call re-import it costs (IVR_WORKFLOW_SANDBOX)."""
    from temporalio.worker import UnsandboxedWorkflowRunner
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    if not sandboxed:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


WORKFLOWS: list[type]
