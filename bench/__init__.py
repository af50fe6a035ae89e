"""Benchmarks: the raw-Temporal baseline that `ivr loadtest --baseline` measures against."""
