"""Submitting and terminating the Dagster run of a bulk job.

Two paths, picked by `BULKOPS_DAGSTER_GRAPHQL_URL`:

- set (e.g. http://127.0.0.1:3000): the run is submitted to the running webserver through
  `DagsterGraphQLClient`, goes through the queued run coordinator and the daemon, shows in the
  UI's run history and is terminated from the UI or `terminate_bulk_job_run` like any run;
- unset (the fast path): the run is created in the local instance (`DAGSTER_HOME`, so it still
  shows in the UI's run history) and executed at once in a detached child process, skipping
  queue polling and code-server start-up. `terminate_bulk_job_run` interrupts that process;
  a termination from the UI is seen by the job between batches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid

import dagster as dg
import sqlalchemy as sa

from connectors import settings
from connectors.store import RecordStore, schema
from pipelines.instance import GRAPHQL_URL_ENV, code_location, graphql_client, use_local_dagster_home

JOB_NAME = "bulk_job"
PID_TAG = "bulkops/pid"
_REF_ENV = "BULKOPS_INSTANCE_REF"

# local child processes by run id, so tests and scripts can wait for them
_children: dict[str, subprocess.Popen] = {}


def bulk_job_definition() -> dg.JobDefinition:
    """The bulk job with the code location's resources bound (reconstructable in a child process)."""
    from pipelines.definitions import defs

    return defs.resolve_job_def(JOB_NAME)


def run_config_for(job_id: uuid.UUID, database_url: str | None = None, batch_size: int = 0) -> dict:
    """Run config of the bulk job for one bulk_jobs row (its op config is `BulkJobConfig`, as the Launchpad shows it)."""
    from pipelines.bulk.ops import BulkJobConfig

    op_config = BulkJobConfig(bulk_job_id=str(job_id), batch_size=batch_size).model_dump()
    config: dict = {"ops": {"apply_bulk_job": {"config": op_config}}}
    if database_url:
        config["resources"] = {"record_store": {"config": {"database_url": database_url}}}
    return config


def _tags_for(job: sa.Row) -> dict[str, str]:
    return {
        "bulkops/kind": "bulk_job",
        "bulkops/bulk_job_id": str(job.id),
        "bulkops/account_id": str(job.account_id),
        "bulkops/operation": f"{job.entity_type}.{job.operation}",
    }


def launch_bulk_job(
    job_id: uuid.UUID,
    *,
    database_url: str | None = None,
    instance: dg.DagsterInstance | None = None,
    batch_size: int = 0,
) -> str:
    """Submit (or start) the Dagster run of a bulk job and store its run id on the job.

    Args:
        job_id: the bulk job.
        database_url: the record store the run uses; defaults to the run's own settings.
        instance: the Dagster instance for the local path (default: `DAGSTER_HOME`). Passing one
            forces the local path.
        batch_size: records per transaction (0: the dialect default).

    Returns:
        The Dagster run id.

    Raises:
        LookupError: no such bulk job.
    """
    store = RecordStore(database_url or settings.database_url(), check=False)
    try:
        t = schema.bulk_jobs
        with store.engine.connect() as conn:
            job = conn.execute(
                sa.select(t.c.id, t.c.account_id, t.c.entity_type, t.c.operation).where(t.c.id == job_id)
            ).one_or_none()
        if job is None:
            raise LookupError(f"no bulk job {job_id}")
        run_config = run_config_for(job_id, database_url, batch_size)
        tags = _tags_for(job)
        if instance is None and os.environ.get(GRAPHQL_URL_ENV):
            run_id = graphql_client().submit_job_execution(
                JOB_NAME,
                repository_location_name=code_location(),
                run_config=run_config,
                tags=tags,
            )
            _store_run_id(store, job_id, run_id)
            return run_id
        return _launch_local(store, job_id, run_config, tags, instance)
    finally:
        store.dispose()


def _store_run_id(store: RecordStore, job_id: uuid.UUID, run_id: str) -> None:
    t = schema.bulk_jobs
    with store.begin() as conn:
        conn.execute(
            t.update().where(t.c.id == job_id, t.c.status.in_(["pending", "failed"])).values(dagster_run_id=run_id)
        )


def _local_instance() -> dg.DagsterInstance:
    use_local_dagster_home()
    return dg.DagsterInstance.get()


def _launch_local(
    store: RecordStore, job_id: uuid.UUID, run_config: dict, tags: dict, instance: dg.DagsterInstance | None
) -> str:
    from dagster._serdes import serialize_value

    own = instance is None
    instance = instance or _local_instance()
    try:
        run = instance.create_run_for_job(bulk_job_definition(), run_config=run_config, tags=tags)
        _store_run_id(store, job_id, run.run_id)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.bulk.launch", run.run_id],
            env={**os.environ, _REF_ENV: serialize_value(instance.get_ref())},
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _children[run.run_id] = proc
        return run.run_id
    finally:
        if own:
            instance.dispose()


def wait_for_local_run(run_id: str, timeout: float | None = None) -> int | None:
    """Wait for a locally started run's process to exit; its exit code, or None when not ours."""
    proc = _children.get(run_id)
    if proc is None:
        return None
    code = proc.wait(timeout=timeout)
    _children.pop(run_id, None)
    return code


def terminate_bulk_job_run(run_id: str, instance: dg.DagsterInstance | None = None) -> bool:
    """Terminate a bulk job's run; True when a termination was requested.

    The interrupt reaches the batch loop: committed batches stay and the job is marked
    cancelled with exact counts.
    """
    if instance is None and os.environ.get(GRAPHQL_URL_ENV):
        from dagster_graphql import DagsterGraphQLClientError

        try:
            graphql_client().terminate_run(run_id)
            return True
        except DagsterGraphQLClientError:
            return False
    own = instance is None
    instance = instance or _local_instance()
    try:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        if run.status != dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceling(run)
        pid = run.tags.get(PID_TAG)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGINT)
        return True
    finally:
        if own:
            instance.dispose()


def _execute_child(run_id: str) -> int:
    from dagster._core.execution.api import execute_run
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    ref = os.environ.get(_REF_ENV)
    with capture_interrupts():
        instance = dg.DagsterInstance.from_ref(deserialize_value(ref, InstanceRef)) if ref else dg.DagsterInstance.get()
        with instance:
            if instance.get_run_by_id(run_id) is None:
                return 2
            if _cancelled_before_start(instance, run_id):
                return 0
            instance.add_run_tags(run_id, {PID_TAG: str(os.getpid())})
            # a terminate that read the run before the pid tag landed only marked it CANCELING
            if _cancelled_before_start(instance, run_id):
                return 0
            # import by module path: run as __main__, this file's functions are not reconstructable
            from pipelines.bulk.launch import bulk_job_definition as target

            try:
                result = execute_run(dg.reconstructable(target), instance.get_run_by_id(run_id), instance)
            except Exception:
                # the run turned CANCELING between the check and execute_run's own invariant
                if _cancelled_before_start(instance, run_id):
                    return 0
                raise
            return 0 if result.success else 1


def _cancelled_before_start(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Finish a run terminated before its step began: CANCELING becomes CANCELED, nothing runs."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status not in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
        return False
    if run.status == dg.DagsterRunStatus.CANCELING:
        instance.report_run_canceled(run, message="terminated before the run started")
    return True


if __name__ == "__main__":
    sys.exit(_execute_child(sys.argv[1]))
