"""Prefect tasks of terrawatch: one pipeline step per module (catalog, load, infer, cube)."""
