"""The local Dagster instance that the CLI, the API and `dagster dev` share."""

from __future__ import annotations

import os
from importlib.resources import files

from connectors import settings


def use_local_dagster_home() -> None:
    """Point `DAGSTER_HOME` at var/dagster (unless set) and give it our dagster.yaml when missing."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(files("pipelines").joinpath("dagster.local.yaml").read_text())
