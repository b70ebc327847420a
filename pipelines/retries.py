"""The one step retry policy of imports, bulk jobs and rollbacks.

Only transient database faults (`connectors.store.faults.is_transient`) reach it: steps turn
every other error into `dg.Failure(allow_retries=False)`. Four attempts over about 14 s with
exponential backoff and jitter ride out a PostgreSQL restart or failover. On the last attempt a
step turns the fault into a failure that says what failed, after how many attempts and why
(`retries_exhausted`), rather than Dagster's bare "Exceeded max_retries".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa

from connectors.store.errors import describe_error
from connectors.store.faults import is_transient

RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def last_attempt(context: dg.OpExecutionContext | dg.AssetExecutionContext, policy: dg.RetryPolicy | None) -> bool:
    """Whether this attempt of the step is its last under POLICY (None: no retries)."""
    return policy is None or context.retry_number >= policy.max_retries


def retries_exhausted(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    exc: BaseException,
    *,
    what: str,
    resume: str,
    url: str | sa.URL | None,
    metadata: dict | None = None,
    reason: str | None = None,
) -> dg.Failure:
    """The failure of a step whose last attempt met transient fault EXC: '<what> failed after N attempts: <why>;
    <resume>'. <why> is REASON, by default EXC told as a record-store error (`describe_error`)."""
    attempts = context.retry_number + 1
    reason = reason or describe_error(exc, url=url)
    plural = "s" if attempts > 1 else ""
    return dg.Failure(
        description=f"{what} failed after {attempts} attempt{plural}: {reason}; {resume}",
        metadata={**(metadata or {}), "attempts": attempts, "reason": reason},
        allow_retries=False,
    )


@contextmanager
def said_when_exhausted(
    context: dg.OpExecutionContext, *, what: str, resume: str, url: str | sa.URL | None
) -> Iterator[None]:
    """Around an op's body: a transient fault on the op's last attempt becomes `retries_exhausted`'s failure;
    earlier ones pass on to the op's retry policy."""
    try:
        yield
    except (dg.Failure, dg.RetryRequested):
        raise
    except Exception as exc:
        if is_transient(exc) and last_attempt(context, context.op_def.retry_policy):
            raise retries_exhausted(context, exc, what=what, resume=resume, url=url) from exc
        raise
