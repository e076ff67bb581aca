"""CLI sub-commands that wire the engine to export/, targets/ and host/ (CLI layer only)."""
