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


# the running Dagster webserver that queued submissions go to (bulk jobs, `bulkops import --submit`)
GRAPHQL_URL_ENV = "BULKOPS_DAGSTER_GRAPHQL_URL"
LOCATION_ENV = "BULKOPS_DAGSTER_LOCATION"
DEFAULT_GRAPHQL_URL = "http://127.0.0.1:3000"  # `make dev`
DEFAULT_LOCATION = "bulkops"  # workspace.yaml


def graphql_url(url: str | None = None) -> str:
    """URL, else `$BULKOPS_DAGSTER_GRAPHQL_URL`, else `make dev`'s webserver."""
    return url or os.environ.get(GRAPHQL_URL_ENV) or DEFAULT_GRAPHQL_URL


def graphql_client(url: str | None = None):  # type: ignore[no-untyped-def]
    """A `DagsterGraphQLClient` for `graphql_url(URL)`, path prefix included."""
    from urllib.parse import urlparse

    from dagster_graphql import DagsterGraphQLClient

    parsed = urlparse(graphql_url(url))
    prefix = parsed.path.rstrip("/")
    kwargs = {"path_prefix": prefix} if prefix else {}
    return DagsterGraphQLClient(
        parsed.hostname or "127.0.0.1", port_number=parsed.port, use_https=parsed.scheme == "https", **kwargs
    )


def code_location() -> str:
    """The code location name runs are submitted to (`$BULKOPS_DAGSTER_LOCATION`, default bulkops)."""
    return os.environ.get(LOCATION_ENV, DEFAULT_LOCATION)
