"""Each sync connection (a YAML file in the syncs folder) as an asset, a Dagster job and a schedule.

The asset `syncs/<name>` is the connection's target as the last sync left it: each run is one
materialization carrying the run's history row (read, created, updated, unchanged, conflicts,
errors, status), so the UI plots a connection's runs over time. A connection never runs twice at
once: its job's runs carry the tag `bulkops/sync: <name>`, limited to one per value by the run
queue (`dagster.yaml`), and a run that finds another run of the connection in progress waits.
"""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from connectors import settings
from connectors.store.changes import all_failed_message
from connectors.store.errors import describe_error
from connectors.store.faults import is_transient
from connectors.sync import SyncSourceError
from pipelines.instance import reap_dead_runs, record_process, run_terminating
from pipelines.retries import RETRY_POLICY, last_attempt, retries_exhausted
from pipelines.syncs.config import Connection, load_folder
from resources import RecordStoreResource

SYNC_TAG = "bulkops/sync"
# a run that finds its connection busy waits this long between looks, this many times
BUSY_WAIT_SECONDS = 30
BUSY_RETRIES = 20


def syncs_folder() -> Path:
    """Where the connection files are (`connectors.settings.syncs_dir`)."""
    return settings.syncs_dir()


class SyncRunConfig(dg.Config):
    """Launchpad options of one sync run."""

    full_refresh: bool = Field(
        default=False,
        description="Read every source row, not only what changed since the last completed run's cursor.",
    )


def _busy(context: dg.AssetExecutionContext, name: str) -> str | None:
    """Another run of the connection in progress, else None."""
    # a run whose process is gone (killed with -9) is failed now, so this run resumes it at once
    for dead in reap_dead_runs(context.instance, tags={SYNC_TAG: name}):
        context.log.info(f"run {dead} was syncing {name} but its process is gone: marked failed")
    live = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={SYNC_TAG: name}, statuses=live))
    others = [r.run_id for r in runs if r.run_id != context.run.run_id]
    return others[0] if others else None


def history_metadata(result: Any) -> dict[str, Any]:
    """A run's history row as materialization metadata (counts, status, run id; never a secret)."""
    return {
        "sync_run_id": str(result.run_id),
        "status": result.status,
        **{k: dg.MetadataValue.int(int(v)) for k, v in result.counts.items()},
        "elapsed_s": dg.MetadataValue.float(float(result.elapsed_s)),
        "resumed": result.resumed,
    }


def sync_asset(connection: Connection, retry_policy: dg.RetryPolicy | None = RETRY_POLICY) -> dg.AssetsDefinition:
    """The asset of CONNECTION; RETRY_POLICY: its step's (tests shorten it)."""
    name = connection.name
    src = connection.shown_source()
    what = src.get("table") or src.get("resource") or src.get("path") or src["type"]
    description = (
        f"{connection.description or 'Sync'}: {src['type']} source {what} -> {connection.entity} of account "
        f"{connection.account} ({connection.direction}, conflicts {connection.conflict}, deletes {connection.delete}); "
        f"declared in {Path(connection.path).name}."
    )

    @dg.asset(
        name=name,
        key_prefix=["syncs"],
        group_name="syncs",
        description=description,
        retry_policy=retry_policy,
        kinds={"sql" if src["type"] == "sql" else "api"},
        tags={SYNC_TAG: name},
    )
    def _sync(context: dg.AssetExecutionContext, config: SyncRunConfig, record_store: RecordStoreResource) -> Any:
        from pipelines.syncs.engine import SyncFailed, run_sync

        record_process(context)
        busy = _busy(context, name)
        if busy is not None:
            context.log.info(f"run {busy} is syncing {name}; waiting {BUSY_WAIT_SECONDS}s")
            raise dg.RetryRequested(max_retries=BUSY_RETRIES, seconds_to_wait=BUSY_WAIT_SECONDS)
        context.log.info(
            f"syncing {name}: {src['type']} {what} -> {connection.entity} ({'full' if config.full_refresh else 'incremental'})"
        )

        def exhausted(exc: BaseException, reason: str | None = None) -> dg.Failure:
            # not Dagster's bare "Exceeded max_retries": what failed, after how many attempts, why
            return retries_exhausted(
                context,
                exc,
                what=f"sync {name}",
                resume="its committed batches are kept and the connection's next run resumes after them",
                url=record_store.url,
                reason=reason,
            )

        def on_batch(counts: dict[str, int]) -> None:
            context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=dict(counts)))

        try:
            result = run_sync(
                record_store.store,
                connection,
                full_refresh=config.full_refresh,
                dagster_run_id=context.run.run_id,
                on_batch=on_batch,
                should_stop=lambda: run_terminating(context),
            )
        except SyncFailed as exc:
            # the external system after its own retries, a mapping that does not fit: the run's row
            # says failed, its committed batches stay, the next run resumes after them
            raise dg.Failure(
                description=f"sync {name} failed: {exc.message}",
                metadata={"sync_run_id": str(exc.run_id) if exc.run_id else ""},
                allow_retries=False,
            ) from None
        except SyncSourceError as exc:
            # unreachable or overloaded: retried with backoff (RETRY_POLICY), then the run fails saying why
            if exc.transient and last_attempt(context, retry_policy):
                # the source's own message: the record store is not what failed
                raise exhausted(exc, reason=str(exc)) from exc
            context.log.warning(f"sync {name}: {exc}; retried with backoff")
            raise
        except Exception as exc:
            if is_transient(exc):
                if last_attempt(context, retry_policy):
                    raise exhausted(exc) from exc
                context.log.warning(f"will retry: {describe_error(exc, url=record_store.database_url)}")
            raise
        if result.status == "failed":
            # every record read failed (`changes.ends_failed`): the run fails like an import's, saying why;
            # no retry reads the same records again, the next run does once they are fixed
            why = all_failed_message(result.counts["errors"], result.details.get("failed_reasons") or [])
            raise dg.Failure(
                description=f"sync {name} failed: {why}", metadata=history_metadata(result), allow_retries=False
            )
        return dg.MaterializeResult(metadata=history_metadata(result))

    return _sync


def sync_definitions(connections: list[Connection]) -> dg.Definitions:
    """An asset, a job and (when it has a cron) a schedule per connection."""
    assets, jobs, schedules = [], [], []
    for c in connections:
        asset = sync_asset(c)
        job = dg.define_asset_job(
            f"sync_{c.name}",
            selection=dg.AssetSelection.assets(asset),
            description=f"Run the sync {c.name} once (Launchpad: full_refresh under ops config).",
            tags={"bulkops/kind": "sync", "bulkops/group": "syncs", SYNC_TAG: c.name},
            executor_def=dg.in_process_executor,
        )
        assets.append(asset)
        jobs.append(job)
        if c.schedule:
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"sync_{c.name}_schedule",
                    cron_schedule=c.schedule,
                    job=job,
                    execution_timezone=c.timezone,
                    description=f"Runs the sync {c.name} on {c.schedule!r} ({c.timezone}).",
                    default_status=dg.DefaultScheduleStatus.RUNNING,
                    tags={"bulkops/group": "syncs"},
                )
            )
    from pipelines.syncs.jobs import resolve_sync_conflict_job

    # without a connection there is no conflict to resolve (and no `syncs` group to belong to)
    extra = [resolve_sync_conflict_job] if connections else []
    sensors = [_failure_sensor(jobs)] if jobs else []
    return dg.Definitions(assets=assets, jobs=[*jobs, *extra], schedules=schedules, sensors=sensors)


def _failure_sensor(jobs: list) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="sync_failure_sensor",
        description=(
            "Ends the sync_runs row of a failed or crashed sync run `failed` with the run's reason, so no row stays "
            "processing; the connection's next run resumes after its committed batches."
        ),
        monitored_jobs=jobs,
        default_status=dg.DefaultSensorStatus.RUNNING,
        tags={"bulkops/group": "syncs"},
    )
    def sync_failure_sensor(context: dg.RunFailureSensorContext, record_store: RecordStoreResource) -> None:
        from pipelines.syncs.engine import end_run

        run = context.dagster_run
        message = context.failure_event.message or "run failed"
        ended = end_run(record_store.store, run.run_id, "failed", f"Dagster run {run.run_id} failed: {message}")
        context.log.info(f"run {run.run_id}: {ended} sync run(s) marked failed")

    return sync_failure_sensor


def load_definitions(folder: Path | None = None) -> dg.Definitions:
    """The syncs of FOLDER (default `syncs_folder()`); a bad file fails the load naming file and line."""
    return sync_definitions(load_folder(folder or syncs_folder()))
