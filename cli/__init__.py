"""The `ivr` command-line tool (entry point: `cli.main:app`)."""
