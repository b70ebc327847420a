"""Statistics of bulk operations (`connectors.store.stats.operation_stats`) over many change sets.

Creates a throwaway database (PostgreSQL, or a SQLite file with --sqlite), fills it with N change
sets spread over 30 days and 20 accounts (60% imports, 40% bulk jobs of four operations, a few
failed and in progress), then times the whole aggregation (four groupings, p95 by window function)
for all accounts and for one account, `--rounds` times each. Compared with one plain
`SELECT count(*), avg(...) ... GROUP BY` over the same rows: the floor of reading them once.

    .venv/bin/python benchmarks/bench_stats.py [--change-sets 200000] [--rounds 5] [--sqlite]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.store import RecordStore, make_engine, migrate, schema, stats  # noqa: E402

ADMIN_URL = os.environ.get("BULKOPS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
OPERATIONS = ("status_update", "stage_transition", "delete", "tags_add")


def _database(sqlite: bool) -> tuple[str, object]:
    if sqlite:
        path = Path(tempfile.mkdtemp()) / "stats.db"
        return f"sqlite:///{path}", lambda: None
    name = f"bulkops_bench_stats_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def _fill(store: RecordStore, n: int, now: datetime) -> list[uuid.UUID]:
    rng = random.Random(7)
    accounts = [store.ensure_account(f"bench-{i}") for i in range(20)]
    cs_rows, imports, bulk = [], [], []
    for _ in range(n):
        id_ = uuid.uuid4()
        account = rng.choice(accounts)
        start = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        roll = rng.random()
        status = "processing" if roll < 0.01 else "failed" if roll < 0.06 else "completed"
        end = None if status == "processing" else start + timedelta(seconds=rng.expovariate(1 / 30))
        if rng.random() < 0.6:
            cs_rows.append({"id": id_, "account_id": account, "kind": "import", "opened_at": start})
            created = rng.randint(0, 5000)
            imports.append(
                {
                    "id": id_,
                    "account_id": account,
                    "type": "applications",
                    "status": status,
                    "started_at": start,
                    "finished_at": end,
                    "created": created,
                    "errors": rng.randint(0, 20),
                    "rows_read": created,
                }
            )
        else:
            cs_rows.append({"id": id_, "account_id": account, "kind": "bulk_job", "opened_at": start})
            done = rng.randint(1, 20000)
            bulk.append(
                {
                    "id": id_,
                    "account_id": account,
                    "entity_type": "applications",
                    "operation": rng.choice(OPERATIONS),
                    "entity_ids": [],
                    "status": status,
                    "created_at": start,
                    "started_at": start,
                    "finished_at": end,
                    "total_count": done,
                    "processed_count": done,
                    "failed_count": rng.randint(0, 10),
                }
            )
    with store.begin() as conn:
        for part in range(0, len(cs_rows), 10_000):
            conn.execute(schema.change_sets.insert(), cs_rows[part : part + 10_000])
        for part in range(0, len(imports), 10_000):
            conn.execute(schema.import_history.insert(), imports[part : part + 10_000])
        for part in range(0, len(bulk), 10_000):
            conn.execute(schema.bulk_jobs.insert(), bulk[part : part + 10_000])
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    return accounts


def _floor(store: RecordStore, since: datetime) -> None:
    h = schema.import_history
    with store.engine.connect() as conn:
        conn.execute(
            sa.select(h.c.account_id, h.c.status, sa.func.count(), sa.func.avg(h.c.created))
            .where(h.c.started_at >= since)
            .group_by(h.c.account_id, h.c.status)
        ).all()
        b = schema.bulk_jobs
        conn.execute(
            sa.select(b.c.account_id, b.c.operation, b.c.status, sa.func.count(), sa.func.avg(b.c.processed_count))
            .where(b.c.created_at >= since)
            .group_by(b.c.account_id, b.c.operation, b.c.status)
        ).all()


def _time(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--change-sets", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    url, drop = _database(args.sqlite)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        store = RecordStore(url)
        now = datetime.now(UTC)
        t = time.perf_counter()
        accounts = _fill(store, args.change_sets, now)
        print(f"filled {args.change_sets} change sets in {time.perf_counter() - t:.1f} s ({store.dialect})")

        def everything() -> None:
            with store.engine.connect() as conn:
                stats.operation_stats(conn, since=timedelta(days=7), now=now)

        def one() -> None:
            with store.engine.connect() as conn:
                stats.operation_stats(conn, account_id=accounts[0], since=timedelta(days=7), now=now)

        floor = _time(lambda: _floor(store, now - timedelta(days=7)), args.rounds)
        all_ = _time(everything, args.rounds)
        single = _time(one, args.rounds)
        load = os.getloadavg()[0]
        print(f"load average {load:.1f}; medians of {args.rounds}")
        print(f"  floor (plain GROUP BY)      {statistics.median(floor):.3f} s")
        print(
            f"  operation_stats, all        {statistics.median(all_):.3f} s "
            f"({statistics.median(all_) / statistics.median(floor):.1f}x the floor)"
        )
        print(f"  operation_stats, 1 account  {statistics.median(single):.3f} s")
        store.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
