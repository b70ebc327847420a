"""Jobs run under Dagster's Celery executor, where dagster-celery is installed (the `celery` extra)."""

from __future__ import annotations

import importlib
import importlib.util

import dagster as dg


def celery_jobs(module: str, *names: str) -> list[dg.JobDefinition]:
    """The jobs NAMES of MODULE (a `celery_jobs` module of a capability); none without dagster-celery."""
    if importlib.util.find_spec("dagster_celery") is None:
        return []
    loaded = importlib.import_module(module)
    return [getattr(loaded, name) for name in names]
