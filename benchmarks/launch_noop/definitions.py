"""The benchmark's own code location: a no-op job, the floor of a run launched through Dagster.

`bench_launch.py --webserver` serves it beside the bulkops location, so a run of `noop_job` pays
what every run pays (the queue, the run worker's start, Dagster's own imports) and nothing of ours.
"""

import dagster as dg


@dg.op(description="Does nothing.")
def noop() -> None:
    pass


@dg.job(
    description="Does nothing: the launch latency floor of bench_launch.py.",
    tags={"bulkops/group": "benchmarks"},
    executor_def=dg.in_process_executor,
)
def noop_job() -> None:
    noop()


defs = dg.Definitions(jobs=[noop_job])
