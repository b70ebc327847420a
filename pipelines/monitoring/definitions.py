"""The monitoring capability: statistics, record-store checks, alerts on failed runs, the outbox drain."""

from __future__ import annotations

import dagster as dg

from pipelines.monitoring.assets import bulk_operations_stats, stats_job, stats_schedule

defs = dg.Definitions(assets=[bulk_operations_stats], jobs=[stats_job], schedules=[stats_schedule])
