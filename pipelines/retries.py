"""The one step retry policy of imports, bulk jobs and rollbacks.

Only transient database faults (`connectors.store.faults.is_transient`) reach it: steps turn
every other error into `dg.Failure(allow_retries=False)`. Four attempts over about 14 s with
exponential backoff and jitter ride out a PostgreSQL restart or failover.
"""

import dagster as dg

RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
