"""Trivial one-op jobs: what Dagster itself takes to queue, launch and finish a run.

A code location of its own (`bench_baseline`), loaded only by benchmarks/bench_api.py's
workspace, so the bulkops location stays as it is.
"""

from __future__ import annotations

import dagster as dg


@dg.op
def noop() -> None:
    pass


@dg.job(name="noop_job", description="One op that does nothing, on Dagster's default executor.")
def noop_job() -> None:
    noop()


@dg.job(
    name="noop_job_in_process",
    description="One op that does nothing, on the in-process executor (as the bulk job runs).",
    executor_def=dg.in_process_executor,
)
def noop_job_in_process() -> None:
    noop()


defs = dg.Definitions(jobs=[noop_job, noop_job_in_process])
