"""The local Dagster instance that the CLI, the API and `dagster dev` share, and what steps ask it."""

from __future__ import annotations

import os
from importlib.resources import files
from typing import TYPE_CHECKING

from connectors import settings
from connectors.processes import process_gone, process_id, this_process

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


class TerminationWatch:
    """A batch loop's `should_stop`: asks `run_terminating` and remembers the last answer (`terminated`),
    so the step can tell a loop stopped by Terminate from one that ran to its end."""

    def __init__(self, context: dg.OpExecutionContext | dg.AssetExecutionContext) -> None:
        self.context = context
        self.terminated = False

    def __call__(self) -> bool:
        self.terminated = run_terminating(self.context)
        return self.terminated


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


# host:pid:start-time of the process running a run's step (and of its run worker, when another), so a
# run whose processes died is found
PROCESS_TAG = "bulkops/process"
ACTIVE_STATUSES = ("STARTED", "CANCELING")


def record_process(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> None:
    """Tag the step's run with the processes running it, for `reap_dead_runs`.

    A step of the multiprocess executor runs in a child of the run worker, which lives on between
    steps and while a retry waits: both are recorded, and the run is dead only when both are gone.
    Under the in-process executor the step's process is the run worker.
    """
    import multiprocessing

    processes = [this_process()]
    parent = multiprocessing.parent_process()
    # under the in-process executor the step runs in the run worker, whose parent is the code server
    in_worker = context.job_def.executor_def.name == "in_process"
    if parent is not None and parent.pid is not None and not in_worker:
        processes.append(process_id(parent.pid))
    run_id = context.run.run_id
    # the run id in the value: a retry or re-execution inherits its parent's tags, not its process
    context.instance.add_run_tags(run_id, {PROCESS_TAG: f"{','.join(processes)}@{run_id}"})


def reap_dead_runs(
    instance: dg.DagsterInstance, tags: dict[str, str] | None = None, run_ids: list[str] | None = None
) -> list[str]:
    """Mark failed every started or canceling run (of TAGS) whose process is gone; their ids.

    Nothing else notices the death of a run that runs in the process that started it
    (`bulkops import`, killed with -9), or of a run whose whole deployment died (a killed
    `dagster dev`): it stays STARTED for ever, a re-run of the same file waits for it, and the
    run queue's per-file limit holds. Its failure reaches the run-failure sensors, which finish
    its import or bulk job with the reason.
    """
    import dagster as dg

    statuses = [dg.DagsterRunStatus[s] for s in ACTIVE_STATUSES]
    reaped = []
    for record in instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids, tags=tags or {}, statuses=statuses)):
        run = record.dagster_run
        tag, _, owner = run.tags.get(PROCESS_TAG, "").partition("@")
        processes = tag.split(",")
        if owner == run.run_id and tag and all(process_gone(p) for p in processes):
            host, _, rest = processes[0].partition(":")
            instance.report_run_failed(
                run, f"the process running this run (pid {rest.split(':')[0]} on {host}) is gone"
            )
            reaped.append(run.run_id)
    return reaped
