"""Flows: the typed graph model, its validation, prompt templates and output ports (pure)."""
