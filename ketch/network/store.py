"""The network tables of the engine's database (schema only for now)."""

SCHEMA = ""
