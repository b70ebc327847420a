"""Creating a bulk job by filter (one INSERT ... SELECT) against the same records by a list of ids.

Creates a throwaway PostgreSQL database with N applications of one account, half of them at
stage `review`, then times, `--rounds` times each, `service.create_job` (dry run, nothing launched)
over the review applications:

- filter: `filter=["stage=review"]`, resolved in SQL into the bulk job's items;
- ids: the same ids handed over as a list (what a caller that selected them itself sends).

    .venv/bin/python benchmarks/bench_bulk_by_filter.py [--records 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import sqlalchemy as sa

from connectors.store import RecordStore, make_engine, migrate, schema
from pipelines.bulk import service

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_by_filter_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        store = RecordStore(url)
        account = store.ensure_account("bench")
        candidate, job = uuid.uuid4(), uuid.uuid4()
        rows = [
            {
                "id": uuid.uuid4(),
                "account_id": account,
                "candidate_id": candidate,
                "job_id": job,
                "stage": "review" if i % 2 else "interview",
            }
            for i in range(args.records)
        ]
        ids = [r["id"] for r in rows if r["stage"] == "review"]
        with store.begin() as conn:
            conn.execute(schema.users.insert().values(id=candidate, account_id=account, email="a@b.c"))
            conn.execute(schema.jobs.insert().values(id=job, account_id=account, title="Engineer"))
            for start in range(0, len(rows), 20_000):
                conn.execute(schema.applications.insert(), rows[start : start + 20_000])
        times: dict[str, list[float]] = {"filter": [], "ids": []}
        for _ in range(args.rounds):
            for label, selection in (("filter", {"filter": ["stage=review"]}), ("ids", {"entity_ids": ids})):
                started = time.perf_counter()
                created = service.create_job(
                    store,
                    account,
                    created_by=None,
                    entity_type="applications",
                    operation="status_update",
                    params={"status": "rejected"},
                    mode="dry_run",
                    **selection,
                )
                times[label].append(time.perf_counter() - started)
                assert created["total_count"] == len(ids)
        for label, seconds in times.items():
            print(
                f"{label}: {len(ids)} records, median {statistics.median(seconds):.2f}s ({min(seconds):.2f}-{max(seconds):.2f})"
            )
        store.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
