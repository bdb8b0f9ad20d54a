"""Prefect flows of terrawatch: the jobs users run or schedule."""
