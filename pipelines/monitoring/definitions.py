"""The monitoring capability: statistics, record-store checks, alerts on failed runs, the outbox drain."""

from __future__ import annotations

import dagster as dg

from pipelines.monitoring.assets import bulk_operations_stats, stats_job, stats_schedule
from pipelines.monitoring.checks import RECORD_STORE_CHECKS, checks_job, checks_schedule
from pipelines.monitoring.sensors import alert_delivery_sensor, outbox_email_sensor, run_failure_alert_sensor

defs = dg.Definitions(
    assets=[bulk_operations_stats],
    asset_checks=RECORD_STORE_CHECKS,
    jobs=[stats_job, checks_job],
    schedules=[stats_schedule, checks_schedule],
    sensors=[run_failure_alert_sensor, alert_delivery_sensor, outbox_email_sensor],
)
