"""The statistics asset and its schedule."""

import dagster as dg
from pydantic import Field

from pipelines.monitoring import report
from resources import RecordStoreResource

GROUP = "monitoring"
GROUP_TAGS = {"bulkops/group": GROUP}


class StatsConfig(dg.Config):
    """Which operations the statistics cover."""

    since: str = Field(
        default=report.DEFAULT_WINDOW,
        description="The window the numbers cover, back from now: a number and a unit (s, m, h, d, w), such as 7d.",
    )
    plotted_accounts: int = Field(
        default=report.PLOTTED_ACCOUNTS,
        ge=0,
        le=1000,
        description="How many accounts get numbers of their own under Plots: the busiest ones (most records in the "
        "window). Every account stays in summary_by_account and stats.",
    )


@dg.asset(
    name="bulk_operations_stats",
    group_name=GROUP,
    kinds={"sql"},
    deps=[dg.AssetKey("imported_file"), dg.AssetKey(["bulkops", "bulk_jobs"])],
    description=(
        "Statistics of bulk operations (imports, bulk jobs, syncs, document imports, rollbacks) from their change "
        "sets: per operation kind and account, in progress, succeeded, failed, success rate, mean and p95 duration, "
        "records per day. Each number is plotted over time under Plots; `summary` is the table. Refreshed every 5 "
        "minutes by bulk_operations_stats_schedule; materialize it to refresh now. `bulkops stats` and the API's "
        "stats-get give the same numbers."
    ),
)
def bulk_operations_stats(
    context: dg.AssetExecutionContext, config: StatsConfig, record_store: RecordStoreResource
) -> dg.MaterializeResult:
    result = report.stats_report(record_store.store, since=config.since)
    total = result.groups["total"]
    context.log.info(
        f"since {result.since:%Y-%m-%d %H:%M}: {total['in_progress']} in progress, {total['succeeded']} succeeded, "
        f"{total['failed']} failed, {total['records']} records"
    )
    return dg.MaterializeResult(metadata=report.metadata(result, accounts_limit=config.plotted_accounts))


stats_job = dg.define_asset_job(
    "bulk_operations_stats_job",
    selection=dg.AssetSelection.assets(bulk_operations_stats),
    description="Refreshes bulk_operations_stats: the statistics of bulk operations over the last 7 days.",
    tags={"bulkops/kind": "monitoring", **GROUP_TAGS},
)

stats_schedule = dg.ScheduleDefinition(
    name="bulk_operations_stats_schedule",
    cron_schedule="*/5 * * * *",
    job=stats_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refreshes bulk_operations_stats every 5 minutes, so its plots show the numbers over time.",
    tags=GROUP_TAGS,
)
