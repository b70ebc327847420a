"""Bulk-job benchmark on PostgreSQL: bulkops status update and soft delete vs a plain UPDATE.

    .venv/bin/python benchmarks/bench_bulk_ops.py --rows 1000000

On a throwaway PostgreSQL database with N applications, measures in one run:
(a) a single plain `UPDATE applications SET status = ... WHERE id = ANY(:ids)` of all rows,
(b) the bulkops status_update job of the same ids: creating the job (ids stored, one item per
    record) and running it (batches with per-record outcomes, before/after images, one audit row
    per record, counters), through the same engine the Dagster op drives,
(c) a plain `UPDATE ... SET deleted_at = now() WHERE id = ANY(:ids)`, then (d) the bulkops soft
    delete job. Tables are vacuumed (untimed) before each step. Prints figures; nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate, schema
from pipelines.bulk import service

ADMIN = os.environ.get("BULKOPS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _vacuum(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def _seed(store: RecordStore, account: uuid.UUID, rows: int) -> list[uuid.UUID]:
    cand, job = uuid.uuid4(), uuid.uuid4()
    with store.begin() as conn:
        conn.execute(schema.users.insert().values(id=cand, account_id=account, email="a@b.c", email_normalized="a@b.c"))
        conn.execute(schema.jobs.insert().values(id=job, account_id=account, title="Engineer"))
        conn.execute(
            sa.text(
                "INSERT INTO applications (id, account_id, candidate_id, job_id, stage, status) "
                "SELECT gen_random_uuid(), :a, :c, :j, 'applied', 'active' FROM generate_series(1, :n)"
            ),
            {"a": account, "c": cand, "j": job, "n": rows},
        )
    with store.engine.connect() as conn:
        return list(
            conn.scalars(sa.text("SELECT id FROM applications WHERE account_id = :a ORDER BY id"), {"a": account})
        )


def _plain(store: RecordStore, ids: list[uuid.UUID], set_clause: str) -> float:
    t0 = time.perf_counter()
    with store.begin() as conn:
        n = conn.execute(sa.text(f"UPDATE applications SET {set_clause} WHERE id = ANY(:ids)"), {"ids": ids}).rowcount
    elapsed = time.perf_counter() - t0
    assert n == len(ids), n
    return elapsed


def _bulk(
    store: RecordStore, account: uuid.UUID, ids: list[uuid.UUID], operation: str, params: dict, batch_size: int
) -> tuple[float, float, dict]:
    t0 = time.perf_counter()
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation=operation, entity_ids=ids, params=params
    )
    t1 = time.perf_counter()
    done = service.run_job_now(store, account, uuid.UUID(job["id"]), batch_size=batch_size)
    t2 = time.perf_counter()
    assert done["status"] == "completed" and done["processed_count"] == len(ids) and done["failed_count"] == 0, done
    with store.engine.connect() as conn:
        audited = conn.scalar(
            sa.text("SELECT count(*) FROM audit_log WHERE change_set_id = :j"), {"j": uuid.UUID(job["id"])}
        )
    assert audited == len(ids), audited
    return t1 - t0, t2 - t1, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the PostgreSQL default of the engine")
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
        account = store.ensure_account("bench")
        t0 = time.perf_counter()
        ids = _seed(store, account, args.rows)
        print(f"seeded {len(ids):,} applications in {time.perf_counter() - t0:.1f}s")
        n = len(ids)
        results = {}
        _vacuum(url)
        results["plain status UPDATE"] = _plain(store, ids, "status = 'plain', updated_at = now()")
        _vacuum(url)
        create, run, _ = _bulk(store, account, ids, "status_update", {"status": "rejected"}, args.batch_size)
        results["bulkops status_update: create"] = create
        results["bulkops status_update: run"] = run
        _vacuum(url)
        results["plain soft-delete UPDATE"] = _plain(store, ids, "deleted_at = now(), updated_at = now()")
        with store.begin() as conn:
            conn.execute(sa.text("UPDATE applications SET deleted_at = NULL WHERE id = ANY(:ids)"), {"ids": ids})
        _vacuum(url)
        create, run, _ = _bulk(store, account, ids, "delete", {}, args.batch_size)
        results["bulkops delete: create"] = create
        results["bulkops delete: run"] = run
        print(f"\n{n:,} rows, PostgreSQL {store.engine.dialect.server_version_info}")
        for key, secs in results.items():
            print(f"  {key:<34} {secs:8.2f}s  {n / secs:>12,.0f} rows/s")
        for op, plain in (("status_update", "plain status UPDATE"), ("delete", "plain soft-delete UPDATE")):
            total = results[f"bulkops {op}: create"] + results[f"bulkops {op}: run"]
            print(
                f"  {op}: create+run {total:.2f}s = {n / total:,.0f} rows/s -> "
                f"{results[plain] / total:.2f}x the plain UPDATE (run only: {results[plain] / results[f'bulkops {op}: run']:.2f}x)"
            )
        store.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
