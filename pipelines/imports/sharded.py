"""A sharded import whose shards are Dagster steps: an executor can put them on different workers.

`sharded_import_job`: `plan_import_shards` starts the import (one history row, one change set)
and plans its shards, one dynamic output each; `write_import_shard` writes one shard (a step per
shard, mapped over the outputs); `finish_sharded_import` merges the failed-rows parts and
completes the import once every shard is written. The import engine is the one of every import
(`engine.run_import(..., shards_as_steps=True)`, `engine.write_import_shard`,
`engine.finish_sharded_import`): per-shard positions in `details.shards`, per-shard resume.

Under the default multiprocess executor the shard steps are processes of the run worker's host;
under Dagster's Celery executor (`celery_sharded_import_job`, `pipelines/imports/celery_jobs.py`, the
`celery` extra) they are tasks on the Celery workers that listen on the run's queue. A shard step
killed with its worker is redelivered to another worker (Celery `task_acks_late`, see
`deploy/celery/`), which resumes the shard after its last committed batch.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from connectors import settings
from connectors.store.errors import describe_error
from connectors.store.faults import is_transient
from connectors.store.schema import import_history
from pipelines.imports.assets import ACTIVE_STATUSES, ImportConfig
from pipelines.instance import run_terminating
from pipelines.monitoring.tags import tag_run
from pipelines.records import import_changes
from pipelines.retries import RETRY_POLICY, last_attempt, retries_exhausted
from resources import RecordStoreResource

# an account's sharded import launched while another one's shards are planned or written waits this long, this often
BUSY_RETRIES = 40
BUSY_WAIT_SECONDS = 15
TAGS = {"bulkops/kind": "import", "bulkops/group": "imports"}


def _failed_rows_dir() -> Path:
    return settings.var_dir() / "imports" / "failed-rows"


def _other_sharded_import(context: dg.OpExecutionContext, store: Any, account_id: uuid.UUID) -> str | None:
    """The run of another sharded import of the account still planned or written by an active run, if any.

    Its shards hold the account's lock shared only while they are written: between its planning
    step and its shard steps (queued on busy workers) nothing else keeps a second sharded import of
    the account from writing the same records at once.
    """
    h = import_history
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(h.c.dagster_run_id, h.c.details).where(
                h.c.account_id == account_id, h.c.status == "processing", h.c.dagster_run_id.is_not(None)
            )
        ).all()
    for run_id, details in rows:
        if run_id == context.run.run_id or not (details or {}).get("shards"):
            continue
        run = context.instance.get_run_by_id(run_id)
        if run is not None and run.status in ACTIVE_STATUSES:
            return run_id
    return None


def _failure(what: str, exc: BaseException, record_store: RecordStoreResource) -> dg.Failure:
    return dg.Failure(
        description=f"{what} failed: {describe_error(exc, url=record_store.database_url)}",
        metadata={"error": type(exc).__name__},
        allow_retries=False,
    )


@dg.op(
    out=dg.DynamicOut(dict),
    retry_policy=RETRY_POLICY,
    tags=TAGS,
    description="Start the import of the file (one history row, one change set) and plan its shards: one output each.",
)
def plan_import_shards(
    context: dg.OpExecutionContext, config: ImportConfig, record_store: RecordStoreResource
) -> Iterator[dg.DynamicOutput]:
    from pipelines.imports import shards
    from pipelines.imports.engine import ImportFailed, file_identity, run_import

    path = Path(config.path).expanduser()
    if not config.path or not path.is_file():
        raise dg.Failure(description=f"file to import not found: {config.path or '(no path)'}", allow_retries=False)
    entity = config.entity or "applications"
    what = f"import of {path.name}"
    try:
        options = config.options(entity)
        store = record_store.store
        account_id = store.account_id(config.account)
        identity = file_identity(path)
        # under the account's lock alone: two sharded imports of the account never plan at once
        with shards.account_turn(store, account_id):
            busy = _other_sharded_import(context, store, account_id)
            if busy is not None:
                context.log.info(
                    f"run {busy} is writing a sharded import of this account; waiting {BUSY_WAIT_SECONDS}s"
                )
                raise dg.RetryRequested(max_retries=BUSY_RETRIES, seconds_to_wait=BUSY_WAIT_SECONDS)
            result = run_import(
                store,
                account_id,
                path,
                options,
                failed_rows_dir=_failed_rows_dir(),
                dagster_run_id=context.run.run_id,
                shards_as_steps=True,
            )
    except (dg.Failure, dg.RetryRequested):
        raise
    except ImportFailed as exc:
        raise dg.Failure(description=f"{what} failed: {exc.message}", allow_retries=False) from exc
    except Exception as exc:
        if is_transient(exc) and not last_attempt(context, RETRY_POLICY):
            raise
        raise _failure(what, exc, record_store) from exc
    tag_run(context, kind="import", account=config.account, entity=entity, change_set_id=result.import_id)
    if result.status != "processing":
        # not sharded (or a duplicate, a dry run): it ran whole here, there is nothing to fan out
        context.log.info(f"{what}: {result.status} in one step ({result.rows_read} rows read)")
        for event in import_changes(entity, result, path.name):
            context.log_event(event)
        return
    count = int(result.details["shards"]["count"])
    context.log.info(f"{what}: import {result.import_id}, {count} shards")
    for k in range(count):
        yield dg.DynamicOutput(
            {
                "import_id": str(result.import_id),
                "shard": k,
                "count": count,
                "path": str(path),
                "entity": entity,
                "config": config.model_dump(),
                "identity": identity,
            },
            mapping_key=f"shard_{k}",
        )


@dg.op(
    retry_policy=RETRY_POLICY,
    tags=TAGS,
    description="Write one shard of the import, resuming after its last committed batch.",
)
def write_import_shard(context: dg.OpExecutionContext, record_store: RecordStoreResource, shard: dict) -> dict:
    from pipelines.imports import engine, shards

    k, count, import_id = shard["shard"], shard["count"], uuid.UUID(shard["import_id"])
    what = f"shard {k + 1} of {count} of import {import_id}"
    store = record_store.store
    context.log.info(f"writing {what} (attempt {context.retry_number + 1}) on {socket.gethostname()} pid {os.getpid()}")

    def progress(counts: dict[str, int]) -> None:
        if counts["batches"] % 10 == 0:
            context.log.info(f"{what}: {counts['batches']} batches, {counts['rows_read']} rows read")

    try:
        options = ImportConfig(**shard["config"]).options(shard["entity"])
        counts = engine.write_import_shard(
            store,
            import_id,
            k,
            shard["path"],
            options,
            failed_rows_dir=_failed_rows_dir(),
            on_progress=progress,
            should_stop=lambda: run_terminating(context),
        )
    except engine.ImportFailed as exc:
        raise dg.Failure(description=f"{what} failed: {exc.message}", allow_retries=False) from exc
    except shards.Stopped as exc:
        raise dg.Failure(
            description=f"{what} stopped (run terminated or the import ended elsewhere); "
            "its committed batches are kept and a re-run resumes it",
            allow_retries=False,
        ) from exc
    except Exception as exc:
        if is_transient(exc):
            if not last_attempt(context, RETRY_POLICY):
                context.log.warning(f"will retry: {describe_error(exc, url=record_store.database_url)}")
                raise
            failure = retries_exhausted(
                context,
                exc,
                what=what,
                resume="its committed batches are kept and a re-run resumes each shard",
                url=record_store.url,
            )
        else:
            failure = _failure(what, exc, record_store)
        engine.fail_import(store, import_id, failure.description or what)
        raise failure from exc
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as exc:
        # terminated: never retried (a retry would resume what the user just stopped)
        raise dg.Failure(
            description=f"interrupted: {what} stopped; its committed batches are kept and a re-run resumes it",
            allow_retries=False,
        ) from exc
    if "aborted_at" in counts:
        context.log.warning(
            f"{what}: the error policy aborted at row {counts['aborted_at']}; the other shards write up to "
            "the file's first bad row, then the finishing step fails the import naming it"
        )
    elif "stopped_before" in counts:
        context.log.info(f"{what}: stopped before the batches after row {counts['stopped_before']}, a bad row")
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    context.add_output_metadata({"shard": k, **counts, **worker})
    return {**shard, "counts": counts, "worker": worker}


@dg.op(
    retry_policy=RETRY_POLICY,
    tags=TAGS,
    description="Once every shard is written: merge the failed-rows parts and complete the import.",
)
def finish_sharded_import(
    context: dg.OpExecutionContext, record_store: RecordStoreResource, written: list[dict]
) -> None:
    from pipelines.imports import engine

    if not written:
        return  # the import was not sharded: the planning step ran it whole
    first = written[0]
    import_id, entity, path = uuid.UUID(first["import_id"]), first["entity"], Path(first["path"])
    store = record_store.store
    try:
        options = ImportConfig(**first["config"]).options(entity)
        result = engine.finish_sharded_import(
            store, import_id, path, options, failed_rows_dir=_failed_rows_dir(), identity=first["identity"]
        )
    except engine.ImportFailed as exc:
        raise dg.Failure(description=f"import {import_id} failed: {exc.message}", allow_retries=False) from exc
    except Exception as exc:
        if is_transient(exc) and not last_attempt(context, RETRY_POLICY):
            raise
        raise _failure(f"import {import_id}", exc, record_store) from exc
    for event in import_changes(entity, result, path.name):
        context.log_event(event)
    context.log.info(
        f"import {import_id} completed: {result.rows_read} rows read, {result.created} created, "
        f"{result.updated} updated, {result.skipped} skipped, {result.errors} errors"
    )
    context.add_output_metadata(
        {
            "import_id": str(import_id),
            **{c: getattr(result, c) for c in ("rows_read", "created", "updated", "skipped", "errors")},
            "shards": dg.MetadataValue.json(
                [{"shard": w["shard"], **w["counts"], **w["worker"]} for w in sorted(written, key=lambda w: w["shard"])]
            ),
            **({"failed_rows": dg.MetadataValue.path(result.failed_rows_path)} if result.failed_rows_path else {}),
        }
    )


def compose_sharded_import() -> None:
    """The steps of a sharded import, to call in a job's body: plan, one step per shard, finish.

    Each job is a decorated function at module scope (`sharded_import_job` below,
    `celery_sharded_import_job`) so Dagster can load it by name in another process: a Celery
    worker or the multiprocess executor's step process.
    """
    finish_sharded_import(plan_import_shards().map(write_import_shard).collect())


JOB_ARGS: dict[str, Any] = {
    "tags": TAGS,
    # bound here too (not only by the code location): a worker or `reconstructable` loads the job alone
    "resource_defs": {"record_store": RecordStoreResource()},
    "description": (
        "Import one big file as N shards, each a step of its own (the shards option under "
        "ops.plan_import_shards.config.shards): one import, one history row and change set; "
        "an executor can run the shards on different workers."
    ),
}


@dg.job(name="sharded_import_job", **JOB_ARGS)
def sharded_import_job() -> None:
    compose_sharded_import()
