"""Import benchmark on PostgreSQL: raw COPY vs bulkops first import vs re-import.

    .venv/bin/python benchmarks/bench_import.py --rows 1000000 --rows-small 250000

Generates an applications CSV (about 5% duplicate emails, messy values: upper case and padded
emails, mixed stages, a few bad dates and bad emails, quoted newlines), then on a throwaway
PostgreSQL database measures (a) COPY of the file into an all-text table, (b) the first
bulkops import, (c) a re-import of the same file (all updates, `force=True` bypasses the
identical-content skip). Each bulkops import runs in a child process so its peak RSS is its
own. Prints figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

ADMIN = os.environ.get("BULKOPS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HEADER = ["Application ID", "First Name", "Last Name", "Email", "Phone", "Job Code", "Job Title", "Stage", "Source",
          "Applied At", "Years Experience", "Cover Letter"]
STAGES = ["Applied", "Phone Screen", "In Review", "Interview", "Offer", "  applied ", "IN REVIEW"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    jobs = [(f"JOB-{i:03d}", f"Job title {i}") for i in range(200)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(rows):
            # about 5% of rows reuse an earlier candidate's email (same job: a duplicate application)
            dup = i > 100 and rnd.random() < 0.05
            k = rnd.randrange(i) if dup else i
            job = jobs[k % len(jobs)]
            email = f"person{k}@example.com"
            if rnd.random() < 0.1:
                email = f"  {email.upper()} "
            applied = f"2026-{1 + k % 12:02d}-{1 + k % 28:02d} {k % 24:02d}:{k % 60:02d}"
            if rnd.random() < 0.001:
                applied = "31/31/2026"
            if rnd.random() < 0.001:
                email = "not-an-email"
            cover = "Hello,\nI'd like the job." if rnd.random() < 0.05 else ""
            w.writerow([f"APP-{i}", f"First{k}", f"Last{k}", email, f"+44 20 {k:08d}", job[0], job[1], rnd.choice(STAGES),
                        rnd.choice(["LinkedIn", "Referral", "Careers page"]), applied, str(k % 20), cover])


def raw_copy(url: str, path: Path) -> float:
    cols = ", ".join(f"c{i} text" for i in range(len(HEADER)))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS raw_copy; CREATE UNLOGGED TABLE raw_copy ({cols})")
        t = time.perf_counter()
        with conn.cursor() as cur, open(path, "rb") as f:
            with cur.copy("COPY raw_copy FROM STDIN (FORMAT csv, HEADER true)") as cp:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
        elapsed = time.perf_counter() - t
        conn.execute("DROP TABLE raw_copy")
    return elapsed


def _child(url: str, account: str, path: str, force: bool, batch: int, q: mp.Queue) -> None:
    from connectors.store import RecordStore
    from pipelines.imports.engine import ImportOptions, run_import

    store = RecordStore(url)
    t = time.perf_counter()
    r = run_import(store, uuid.UUID(account), path, ImportOptions(force=force, batch_size=batch),
                   failed_rows_dir=tempfile.gettempdir())
    elapsed = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    q.put({"elapsed": elapsed, "rss_mb": rss_mb, "created": r.created, "updated": r.updated, "skipped": r.skipped,
           "errors": r.errors, "rows": r.rows_read, "details": r.details})


def bulkops_import(url: str, account: uuid.UUID, path: Path, force: bool, batch: int) -> dict:
    q: mp.Queue = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_child, args=(url, str(account), str(path), force, batch, q))
    p.start()
    out = q.get()
    p.join()
    return out


def run_size(url: str, rows: int, batch: int, workdir: Path) -> dict:
    from connectors.store import RecordStore

    path = workdir / f"applications_{rows}.csv"
    if not path.exists():
        generate(path, rows)
    size_mb = path.stat().st_size / 1e6
    copy_s = raw_copy(url.replace("+psycopg", ""), path)
    store = RecordStore(url)
    account = store.ensure_account(f"bench-{uuid.uuid4().hex[:8]}")
    store.dispose()
    first = bulkops_import(url, account, path, False, batch)
    again = bulkops_import(url, account, path, True, batch)
    raw_rps = rows / copy_s
    out = {
        "rows": rows, "file_mb": round(size_mb, 1), "batch_size": batch, "load_avg": [round(x, 1) for x in os.getloadavg()],
        "raw_copy_s": round(copy_s, 2), "raw_copy_rows_s": round(raw_rps),
        "first_s": round(first["elapsed"], 2), "first_rows_s": round(rows / first["elapsed"]),
        "first_ratio": round(rows / first["elapsed"] / raw_rps, 3), "first_rss_mb": round(first["rss_mb"]),
        "first_counts": {k: first[k] for k in ("created", "updated", "skipped", "errors")}, "first_details": first["details"],
        "reimport_s": round(again["elapsed"], 2), "reimport_rows_s": round(rows / again["elapsed"]),
        "reimport_ratio": round(rows / again["elapsed"] / raw_rps, 3), "reimport_rss_mb": round(again["rss_mb"]),
        "reimport_counts": {k: again[k] for k in ("created", "updated", "skipped", "errors")},
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rows-small", type=int, default=250_000, help="second size, to show memory stays flat (0 = skip)")
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    from connectors.store import make_engine, migrate

    name = f"bulkops_importbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN.replace("postgresql://", "postgresql+psycopg://")).set(database=name).render_as_string(hide_password=False)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bulkops-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        for rows in [r for r in (args.rows_small, args.rows) if r]:
            print(json.dumps(run_size(url, rows, args.batch_size, workdir)), flush=True)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
