"""Data access: the SQL lives here; callers pass the session and commit once, at their edge."""
