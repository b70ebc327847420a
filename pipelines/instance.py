"""The local Dagster instance that the CLI, the API and `dagster dev` share, and what steps ask it."""

from __future__ import annotations

import os
from importlib.resources import files
from typing import TYPE_CHECKING

from connectors import settings

if TYPE_CHECKING:
    import dagster as dg


def use_local_dagster_home() -> None:
    """Point `DAGSTER_HOME` at var/dagster (unless set) and give it our dagster.yaml when missing."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(files("pipelines").joinpath("dagster.local.yaml").read_text())


def run_terminating(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> bool:
    """Whether someone terminated the step's run (UI, API, `dagster run terminate`): CANCELING or CANCELED.

    Dagster can only interrupt a run its launcher started; a step checks this between batches so
    that runs it cannot interrupt (in-process, directly launched) stop too.
    """
    import dagster as dg

    run = context.instance.get_run_by_id(context.run.run_id)
    return run is not None and run.status in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)
