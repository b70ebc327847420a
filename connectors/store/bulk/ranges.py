"""A bulk job in N ranges of item `seq`, each with its own cursor, so that several workers apply it at once.

`plan_ranges` splits the job's unapplied items into ranges kept in `summary.ranges`
(`[{"lo", "hi", "next"}]`, items `[lo, next)` of a range committed); a job already split keeps its
ranges, so a relaunch resumes each range after its last committed batch. `process_range_batch`
applies the next batch of one range in one transaction: the record changes, item outcomes, audit
rows, the job's counters (added, not overwritten) and the range's `next`. The job row is locked only
at the end of the batch, for the counters and the cursor: on PostgreSQL the batches of different
ranges apply their records at the same time (SQLite runs one writer at a time anyway).
`finish_ranges` completes the job once every range is done.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from connectors.store.bulk.base import utcnow
from connectors.store.bulk.outcomes import failure_outcome
from connectors.store.bulk.runner import BatchResult, _run_batch, jobs_t, lock_job, not_processing_for, start_job
from connectors.store.dialect import dialect_of
from connectors.store.store import RecordStore


class RangeTaken(RuntimeError):
    """Another step committed a batch of the range meanwhile: this batch was rolled back."""


class _Ended(Exception):
    """The job ended (cancelled, failed) or went to another run while the batch ran: roll the batch back."""


def unfinished(ranges: list[dict[str, int]]) -> list[int]:
    """The indexes of the RANGES not applied to their end."""
    return [k for k, r in enumerate(ranges) if r["next"] < r["hi"]]


@dataclass
class Started:
    job: sa.Row
    ranges: list[dict[str, int]]

    def unfinished(self) -> list[int]:
        return unfinished(self.ranges)


def split(lo: int, hi: int, parts: int) -> list[dict[str, int]]:
    """[lo, hi) in at most PARTS ranges of nearly equal size (none empty unless the whole is)."""
    n = max(1, min(parts, hi - lo))
    size, extra = divmod(hi - lo, n)
    out, at = [], lo
    for k in range(n):
        end = at + size + (1 if k < extra else 0)
        out.append({"lo": at, "hi": end, "next": at})
        at = end
    return out


def plan_ranges(store: RecordStore, job_id: uuid.UUID, parts: int, run_id: str | None = None) -> Started | None:
    """Start the job for RUN_ID and split it in PARTS ranges (or keep the ranges it has); None when
    there is nothing to run (finished, a preview awaiting confirmation, cancelled before starting)."""
    if start_job(store, job_id, run_id, in_ranges=True) is None:
        return None
    with store.begin() as conn:
        job = lock_job(conn, job_id)
        summary = dict(job.summary or {})
        ranges = summary.get("ranges")
        if not ranges:
            # items below next_seq were applied by a one-cursor run: the ranges cover the rest
            ranges = split(job.next_seq, job.total_count, parts)
            summary["ranges"] = ranges
            conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(summary=summary, updated_at=utcnow()))
            job = conn.execute(sa.select(jobs_t).where(jobs_t.c.id == job_id)).one()
    return Started(job, [dict(r) for r in ranges])


def process_range_batch(
    store: RecordStore, job_id: uuid.UUID, k: int, batch_size: int, *, run_id: str | None = None
) -> BatchResult | None:
    """Apply the next batch of range K in one transaction; None when the range is done or the job
    is not processing for RUN_ID (any more). A requested cancel ends the job cancelled."""
    try:
        return _range_batch(store, job_id, k, batch_size, run_id)
    except _Ended:
        return None


def _range_batch(
    store: RecordStore, job_id: uuid.UUID, k: int, batch_size: int, run_id: str | None
) -> BatchResult | None:
    now = utcnow()
    with store.begin() as conn:
        # SQLite: the database's write lock first (a batch that read before writing could not write
        # once another range committed); PostgreSQL: nothing yet, the job row is locked at the end
        dialect_of(conn).lock_job(conn, job_id)
        job = conn.execute(sa.select(jobs_t).where(jobs_t.c.id == job_id)).one()
        if not_processing_for(job, run_id):
            return None
        if job.cancel_requested_at is not None:
            job = lock_job(conn, job_id)
            if job.status == "processing":
                conn.execute(
                    jobs_t.update()
                    .where(jobs_t.c.id == job_id)
                    .values(status="cancelled", finished_at=now, updated_at=now)
                )
            return BatchResult(0, 0, 0, 0, 0, "cancelled", job.processed_count, job.failed_count, job.total_count)
        r = job.summary["ranges"][k]
        lo = r["next"]
        hi = min(lo + batch_size, r["hi"])
        if lo >= hi:
            return None
        dialect_of(conn).relax_commit(conn)  # the finish step commits the job's end durably
        s, f, skipped = _run_batch(conn, job, lo, hi, now)
        # the job row is locked from here to the commit: counters and the cursor, nothing else
        locked = lock_job(conn, job_id)
        summary = dict(locked.summary)
        ranges = [dict(x) for x in summary["ranges"]]
        if not_processing_for(locked, run_id):
            # cancelled (by another range's step), failed or taken by another run meanwhile: its counts
            # are final, this batch is undone
            raise _Ended()
        if ranges[k]["next"] != lo:
            # a second step of the range (a redelivered task) went first: the raise undoes this batch
            raise RangeTaken(f"range {k} of bulk job {job_id} moved on from {lo} meanwhile")
        ranges[k]["next"] = hi
        summary["ranges"] = ranges
        values: dict[str, Any] = {
            "processed_count": locked.processed_count + s + f + skipped,
            "failed_count": locked.failed_count + f,
            "skipped_count": locked.skipped_count + skipped,
            "summary": summary,
            "updated_at": now,
        }
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(**values))
    return BatchResult(
        lo, hi, s, f, skipped, "processing", values["processed_count"], values["failed_count"], locked.total_count
    )


def run_range(
    store: RecordStore,
    job_id: uuid.UUID,
    k: int,
    batch_size: int,
    *,
    run_id: str | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Apply range K batch by batch to its end (or until SHOULD_STOP, or the job stops); its counts."""
    counts = {"batches": 0, "processed": 0, "failed": 0, "skipped": 0}
    while True:
        if should_stop is not None and should_stop():
            return counts
        result = process_range_batch(store, job_id, k, batch_size, run_id=run_id)
        if result is None or result.job_status != "processing":
            return counts
        counts["batches"] += 1
        counts["processed"] += result.succeeded + result.failed + result.skipped
        counts["failed"] += result.failed
        counts["skipped"] += result.skipped
        if on_batch is not None:
            on_batch(result)


def finish_ranges(store: RecordStore, job_id: uuid.UUID, *, run_id: str | None = None) -> str:
    """End the job once: completed (or failed when every record failed) when every range is done,
    cancelled when a cancel was requested; its status (unchanged when a range is still unfinished)."""
    now = utcnow()
    with store.begin() as conn:
        job = lock_job(conn, job_id)
        if not_processing_for(job, run_id):
            return job.status
        ranges = (job.summary or {}).get("ranges") or []
        if job.cancel_requested_at is not None:
            values: dict[str, Any] = {"status": "cancelled"}
        elif not unfinished(ranges):
            values = {"status": "completed", "next_seq": job.total_count}
            if job.failed_count:
                values.update(failure_outcome(conn, job, job.failed_count))
        else:
            return job.status
        values.update(finished_at=now, updated_at=now)
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(**values))
        return values["status"]
