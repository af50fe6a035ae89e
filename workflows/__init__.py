"""Workflow code: deterministic only (see ARCHITECTURE.md).

`WORKFLOWS` is the worker's registry: every workflow class the worker serves. Add a class
here when it is written; worker.py reads the list, nothing else changes.
"""

from __future__ import annotations

from workflows.call import CallWorkflow

WORKFLOWS: list[type] = [CallWorkflow]
