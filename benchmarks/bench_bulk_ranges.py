"""A bulk job in ranges on PostgreSQL: one cursor vs R ranges applied by R processes at once.

    .venv/bin/python benchmarks/bench_bulk_ranges.py --rows 200000 --ranges 2 --order 1,R,1,R

On a throwaway PostgreSQL database with N applications per bulk job, each status_update job of its
own records: (1) `bulk.run_job`, the one cursor of `bulk_job`; (R) `ranges.plan_ranges` then one
process per range running `ranges.run_range`, the store work of `sharded_bulk_job`'s steps without
Dagster's step start-up (a few seconds per step process, not measured here). Runs alternate as
`--order` says so that a change in the machine's load hits both. Prints figures; checks the counts
and the audit rows of each job.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from benchmarks.bench_bulk_ops import ADMIN, _seed, _vacuum
from connectors.store import RecordStore, bulk, make_engine, migrate
from connectors.store.bulk import ranges
from pipelines.bulk import service


def _range(url: str, job_id: str, k: int, batch_size: int) -> None:
    store = RecordStore(url)
    try:
        ranges.run_range(store, uuid.UUID(job_id), k, batch_size)
    finally:
        store.dispose()


def _job(store: RecordStore, account: uuid.UUID, ids: list[uuid.UUID]) -> uuid.UUID:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "rejected"},
    )
    return uuid.UUID(job["id"])


def _check(store: RecordStore, account: uuid.UUID, job_id: uuid.UUID, n: int) -> None:
    done = service.get_job(store, account, job_id)
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("completed", n, 0), done
    with store.engine.connect() as conn:
        audited = conn.scalar(sa.text("SELECT count(*) FROM audit_log WHERE change_set_id = :j"), {"j": job_id})
    assert audited == n, audited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--ranges", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--order", default="1,R,1,R")
    args = parser.parse_args()

    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"bulkops_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        store = RecordStore(url)
        print(f"{args.rows:,} applications per bulk job, batch {args.batch_size:,}, {os.cpu_count()} CPUs")
        for how in args.order.split(","):
            account = store.ensure_account(f"bench-{uuid.uuid4().hex[:6]}")
            job_id = _job(store, account, _seed(store, account, args.rows))
            _vacuum(url)
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            if how == "1":
                assert bulk.run_job(store, job_id, batch_size=args.batch_size) == "completed"
            else:
                started = ranges.plan_ranges(store, job_id, args.ranges)
                assert started is not None
                procs = [
                    multiprocessing.Process(target=_range, args=(url, str(job_id), k, args.batch_size))
                    for k in range(len(started.ranges))
                ]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join()
                    assert p.exitcode == 0, p.exitcode
                assert ranges.finish_ranges(store, job_id) == "completed"
            secs = time.perf_counter() - t0
            _check(store, account, job_id, args.rows)
            label = "one cursor" if how == "1" else f"{args.ranges} ranges"
            print(f"  {label:<12} {secs:8.2f}s  {args.rows / secs:>10,.0f} rows/s  load {load:.1f} at start")
        store.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
