"""Carrier adapters: every carrier quirk lives here; the rest of the system sees CallEvent and Reply."""
