"""Asset checks on the record store, run by record_store_checks_schedule and shown on each asset's Checks tab."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from connectors.store import checks
from pipelines.monitoring.assets import GROUP_TAGS, bulk_operations_stats
from resources import RecordStoreResource

CANDIDATES = dg.AssetKey(["bulkops", "candidates"])
APPLICATIONS = dg.AssetKey(["bulkops", "applications"])
BULK_JOBS = dg.AssetKey(["bulkops", "bulk_jobs"])
# run-status sensors end a change set within seconds of its run; past this it is stuck
GRACE = timedelta(minutes=5)
COUNTERS_WINDOW_DAYS = 7
LIVE = frozenset({dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING})
LIVE |= {dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING}


def _result(finding: checks.Finding, severity: dg.AssetCheckSeverity, what: str) -> dg.AssetCheckResult:
    metadata: dict = {"count": finding.count}
    if finding.sample:
        columns = list(finding.sample[0])
        metadata["sample"] = dg.MetadataValue.table(
            records=[dg.TableRecord({c: r.get(c) or "" for c in columns}) for r in finding.sample],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
        )
    metadata["rule"] = what
    return dg.AssetCheckResult(passed=finding.passed, severity=severity, metadata=metadata)


@dg.asset_check(
    asset=CANDIDATES,
    name="no_duplicate_normalised_emails",
    description="No two live candidates of one account share an email once trimmed and lower-cased.",
)
def no_duplicate_normalised_emails(record_store: RecordStoreResource) -> dg.AssetCheckResult:
    with record_store.store.engine.connect() as conn:
        finding = checks.duplicate_emails(conn)
    return _result(finding, dg.AssetCheckSeverity.ERROR, "account, email and how many live users share it")


@dg.asset_check(
    asset=APPLICATIONS,
    name="no_application_without_its_candidate",
    description="Every live application's candidate exists, is not deleted and belongs to the same account.",
)
def no_application_without_its_candidate(record_store: RecordStoreResource) -> dg.AssetCheckResult:
    with record_store.store.engine.connect() as conn:
        finding = checks.applications_without_candidate(conn)
    return _result(finding, dg.AssetCheckSeverity.ERROR, "applications whose candidate is missing or deleted")


def _run_state(instance: dg.DagsterInstance, run_id: str | None) -> tuple[str, datetime | None]:
    if not run_id:
        return "no run", None
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return "run not found", None
    end = datetime.fromtimestamp(record.end_time, UTC) if record.end_time else None
    return record.dagster_run.status.value, end


@dg.asset_check(
    asset=BULK_JOBS,
    name="every_processing_bulk_job_has_a_live_run",
    description="Every bulk job in status processing has a Dagster run that is queued, starting or running.",
)
def every_processing_bulk_job_has_a_live_run(
    context: dg.AssetCheckExecutionContext, record_store: RecordStoreResource
) -> dg.AssetCheckResult:
    with record_store.store.engine.connect() as conn:
        rows = checks.processing_bulk_jobs(conn)
    bad = []
    live = {s.value for s in LIVE}
    for row in rows:
        state, _ = _run_state(context.instance, row.dagster_run_id)
        if state not in live:
            bad.append({"bulk_job_id": str(row.id), "dagster_run_id": row.dagster_run_id, "run": state})
    finding = checks.Finding(len(bad), bad[: checks.SAMPLE])
    return _result(finding, dg.AssetCheckSeverity.WARN, "processing bulk jobs whose run is over or missing")


@dg.asset_check(
    asset=bulk_operations_stats,
    name="no_change_set_stuck_in_progress",
    description=(
        "No import, bulk job, sync or other change set is still in progress more than 5 minutes after its run ended."
    ),
)
def no_change_set_stuck_in_progress(
    context: dg.AssetCheckExecutionContext, record_store: RecordStoreResource
) -> dg.AssetCheckResult:
    with record_store.store.engine.connect() as conn:
        rows = checks.in_progress_change_sets(conn)
    now = datetime.now(UTC)
    bad = []
    for row in rows:
        if not row.dagster_run_id:
            continue
        state, ended = _run_state(context.instance, row.dagster_run_id)
        if state == "run not found" or (ended is not None and now - ended > GRACE):
            bad.append(
                {"id": str(row.id), "operation": row.operation, "dagster_run_id": row.dagster_run_id, "run": state}
            )
    finding = checks.Finding(len(bad), bad[: checks.SAMPLE])
    return _result(finding, dg.AssetCheckSeverity.WARN, "change sets in progress whose run ended")


@dg.asset_check(
    asset=bulk_operations_stats,
    name="counters_equal_their_outcomes",
    description=(
        "For imports and bulk jobs finished in the last 7 days: created/updated equal the import's audit rows, "
        "flagged its review flags; processed, failed and skipped counts equal the bulk job's item outcomes."
    ),
)
def counters_equal_their_outcomes(record_store: RecordStoreResource) -> dg.AssetCheckResult:
    since = datetime.now(UTC) - timedelta(days=COUNTERS_WINDOW_DAYS)
    with record_store.store.engine.connect() as conn:
        finding = checks.counter_mismatches(conn, since=since)
    return _result(
        finding,
        dg.AssetCheckSeverity.ERROR,
        "counted_a/b/c: created, updated, flagged (imports) or processed, failed, skipped (bulk jobs); found_*: outcomes",
    )


RECORD_STORE_CHECKS = [
    no_duplicate_normalised_emails,
    no_application_without_its_candidate,
    every_processing_bulk_job_has_a_live_run,
    no_change_set_stuck_in_progress,
    counters_equal_their_outcomes,
]

checks_job = dg.define_asset_job(
    "record_store_checks_job",
    selection=dg.AssetSelection.checks(*RECORD_STORE_CHECKS),
    description="Runs the record store's consistency checks (duplicates, orphans, stuck operations, counters).",
    tags={"bulkops/kind": "monitoring", **GROUP_TAGS},
)

checks_schedule = dg.ScheduleDefinition(
    name="record_store_checks_schedule",
    cron_schedule="17 * * * *",
    job=checks_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs the record store's consistency checks every hour; results show on each asset's Checks tab.",
    tags=GROUP_TAGS,
)
