"""Routing: agents' live state, strategies, reservations with leases, queues (see model.py)."""
