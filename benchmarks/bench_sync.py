"""Sync benchmark, PostgreSQL to PostgreSQL: a full first sync vs the importer on the same rows,
then an incremental sync after 1% of the source rows changed.

    .venv/bin/python benchmarks/bench_sync.py --rows 1000000

Creates a source database holding `hr_applications` (ROWS rows: id, email, names, job code,
stage, updated_at; indexed on (updated_at, id)), and two fresh record stores. In the first, the
importer imports the rows (exported to a CSV file with COPY, mapped with the same field mapping);
in the second, the sync reads them from the source (full first sync), then 1% of the source rows
get a new stage and `updated_at`, and the incremental sync runs. Each bulkops step runs in a
child process so its peak RSS is its own. Prints figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import sqlalchemy as sa

ADMIN = os.environ.get("BULKOPS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
COLUMNS = ("id", "email", "first_name", "last_name", "job_code", "stage", "updated_at")
MAPPING = {
    "columns": {
        "id": "external_id",
        "email": "email",
        "first_name": "first_name",
        "last_name": "last_name",
        "job_code": "job_code",
        "stage": "stage",
        "updated_at": None,
    }
}


def _database(name: str) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    return sa.make_url(ADMIN).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _plain(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(False)


def make_source(url: str, rows: int) -> None:
    with psycopg.connect(_plain(url), autocommit=True) as c:
        c.execute(
            "CREATE TABLE hr_applications (id text PRIMARY KEY, email text, first_name text, last_name text, "
            "job_code text, stage text, updated_at timestamptz NOT NULL)"
        )
        c.execute(
            "INSERT INTO hr_applications SELECT 'A' || lpad(i::text, 8, '0'), 'person' || i || '@example.com', "
            "'First' || i, 'Last' || i, 'JOB-' || lpad((i %% 200)::text, 3, '0'), "
            "(ARRAY['applied','screening','review','interview','offer'])[1 + i %% 5], "
            "timestamptz '2026-01-01' + (i / 7) * interval '1 second' FROM generate_series(1, %s) i",
            (rows,),
        )
        c.execute("CREATE INDEX ON hr_applications (updated_at, id)")
        c.execute("ANALYZE hr_applications")


def export_csv(url: str, path: Path) -> None:
    with psycopg.connect(_plain(url)) as c, c.cursor() as cur, open(path, "wb") as f:
        cols = ", ".join(COLUMNS)
        with cur.copy(f"COPY (SELECT {cols} FROM hr_applications ORDER BY id) TO STDOUT (FORMAT csv, HEADER)") as cp:
            for chunk in cp:
                f.write(chunk)


def change_one_percent(url: str) -> int:
    with psycopg.connect(_plain(url), autocommit=True) as c:
        cur = c.execute(
            "UPDATE hr_applications SET stage = 'hired', updated_at = timestamptz '2027-01-01' "
            "WHERE right(id, 2) = '00'"
        )
        c.execute("ANALYZE hr_applications")
        return cur.rowcount


def _store(url: str) -> uuid.UUID:
    from connectors.store import RecordStore, make_engine, migrate

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    store = RecordStore(url)
    account = store.ensure_account("bench")
    store.dispose()
    return account


def _import_child(url: str, path: str, batch: int, q: mp.Queue) -> None:
    from connectors.store import RecordStore
    from pipelines.imports.engine import ImportOptions, run_import

    store = RecordStore(url)
    t = time.perf_counter()
    r = run_import(
        store,
        store.account_id("bench"),
        path,
        ImportOptions(batch_size=batch, mapping=MAPPING, duplicate_keys=("external_id",)),
        failed_rows_dir=tempfile.gettempdir(),
    )
    q.put(
        {
            "elapsed": time.perf_counter() - t,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "created": r.created,
            "errors": r.errors,
        }
    )


def _sync_child(url: str, source_url: str, batch: int, q: mp.Queue) -> None:
    from connectors.store import RecordStore
    from pipelines.syncs.config import Connection
    from pipelines.syncs.engine import run_sync

    connection = Connection(
        name="bench",
        path="bench.yaml",
        account="bench",
        entity="applications",
        direction="in",
        source={"type": "sql", "url": source_url, "table": "hr_applications", "key": "id", "cursor": "updated_at"},
        key_field="external_id",
        mapping=MAPPING,
        conflict="source_wins",
        delete="ignore",
        schedule=None,
        batch_size=batch,
    )
    store = RecordStore(url)
    t = time.perf_counter()
    r = run_sync(store, connection)
    q.put(
        {
            "elapsed": time.perf_counter() - t,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **r.counts,
        }
    )


def _in_child(target, *args) -> dict:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000, help="rows per committed batch, for both")
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:8]
    names = [f"bench_sync_src_{tag}", f"bench_sync_imp_{tag}", f"bench_sync_dst_{tag}"]
    src, imp, dst = (_database(n) for n in names)
    try:
        t = time.perf_counter()
        make_source(src, args.rows)
        print(f"source: {args.rows} rows in {time.perf_counter() - t:.1f}s")
        _store(imp)
        _store(dst)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "hr_applications.csv"
            export_csv(src, path)
            imported = _in_child(_import_child, imp, str(path), args.batch)
        sync = _in_child(_sync_child, dst, src, args.batch)
        changed = change_one_percent(src)
        incremental = _in_child(_sync_child, dst, src, args.batch)
        i_rate = imported["created"] / imported["elapsed"]
        s_rate = sync["created"] / sync["elapsed"]
        print(
            f"importer       : {imported['created']} created in {imported['elapsed']:.1f}s = {i_rate:,.0f} rows/s, "
            f"peak RSS {imported['rss_mb']:.0f} MB"
        )
        print(
            f"full sync      : {sync['created']} created in {sync['elapsed']:.1f}s = {s_rate:,.0f} rows/s, "
            f"peak RSS {sync['rss_mb']:.0f} MB  ({s_rate / i_rate:.2f}x the importer)"
        )
        print(
            f"incremental    : {changed} rows changed, {incremental['records_read']} read, {incremental['updated']} "
            f"updated in {incremental['elapsed']:.2f}s = {incremental['elapsed'] / sync['elapsed']:.3f}x the full "
            f"sync, peak RSS {incremental['rss_mb']:.0f} MB"
        )
    finally:
        if not args.keep:
            for n in names:
                _drop(n)


if __name__ == "__main__":
    main()
