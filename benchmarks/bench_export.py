"""Export benchmark on PostgreSQL: bulkops CSV (escaping on), Parquet and xlsx vs `COPY (SELECT ...) TO STDOUT`.

    .venv/bin/python benchmarks/bench_export.py --rows 1000000

On a throwaway database with N applications (each with its own candidate; 50 jobs; stages and
applied_at spread; one source in 50 a formula payload), exports the applications filtered on
stage and date with the candidate's email and the job code joined in. Each measurement runs in its
own process, so its peak RSS is its own:
- copy: `COPY (the export's SELECT) TO STDOUT WITH (FORMAT csv)` into a file (psycopg);
- csv, parquet, xlsx: `connectors.store.export.export` (server-side cursor, batches of 10,000).
Each format runs --repeat times (xlsx once), interleaved; prints per format the median time, rows/s,
the client's CPU time, the size and the peak RSS, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

from connectors.store import make_engine, migrate
from connectors.store.export import ExportSpec, build_query, export, make_filter, parse_columns
from connectors.store.export.copy import CopyStream

ADMIN = os.environ.get("BULKOPS_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WHERE = ["stage in review,interview,offer", "applied_at>=2025-03-01"]
COLUMNS = "id,external_id,stage,status,source,applied_at,candidate_email,job_code"


def _seed(url: str, rows: int) -> uuid.UUID:
    engine = make_engine(url)
    migrate.upgrade(engine)
    account = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO accounts (id, slug, name) VALUES (:a, 'bench', 'bench')"), {"a": account})
        conn.execute(
            sa.text(
                "INSERT INTO jobs (id, account_id, code, title) "
                "SELECT gen_random_uuid(), :a, 'ENG-' || i, 'Engineer ' || i FROM generate_series(1, 50) i"
            ),
            {"a": account},
        )
        conn.execute(
            sa.text(
                "INSERT INTO users (id, account_id, email, email_normalized, first_name, last_name) "
                "SELECT gen_random_uuid(), :a, 'c' || i || '@example.com', 'c' || i || '@example.com', "
                "'First' || i, 'Last' || i FROM generate_series(1, :n) i"
            ),
            {"a": account, "n": rows},
        )
        conn.execute(
            sa.text(
                "WITH u AS (SELECT id, row_number() OVER () AS i FROM users WHERE account_id = :a), "
                "j AS (SELECT id, row_number() OVER () - 1 AS k FROM jobs WHERE account_id = :a) "
                "INSERT INTO applications (id, account_id, candidate_id, job_id, stage, status, source, applied_at, "
                "external_id) "
                "SELECT gen_random_uuid(), :a, u.id, j.id, "
                "(ARRAY['applied','screening','review','interview','offer','rejected'])[1 + u.i % 6], "
                "'active', CASE WHEN u.i % 50 = 0 THEN '=cmd|'' /C calc''!A0' ELSE 'LinkedIn' END, "
                "timestamptz '2025-01-01' + (u.i % 600) * interval '1 day' + (u.i % 86400) * interval '1 second', "
                "'A' || u.i FROM u JOIN j ON j.k = u.i % 50"
            ),
            {"a": account},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    return account


def _child(args: argparse.Namespace) -> None:
    engine = make_engine(args.url)
    account = uuid.UUID(args.account)
    out = Path(args.out)
    spec = ExportSpec("applications", account, make_filter(WHERE), tuple(parse_columns(COLUMNS)), format=args.child)
    t0 = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage0.ru_utime + usage0.ru_stime
    if args.child == "copy":
        # the reference: the export's own SELECT, as the database writes it, straight to a file
        query = build_query("applications", "postgresql", account, spec.filter, spec.columns)
        path = out / "copy.csv"
        stream = CopyStream(engine, query.statement)
        with open(path, "wb") as f:
            f.write((",".join(c.header for c in query.columns) + "\n").encode())
            for chunk in stream:
                f.write(chunk)
        rows = stream.rows
    else:
        result = export(engine, spec, out / f"export.{args.child}")
        rows, path = result.rows, result.path
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0
    figures = {
        "rows": rows,
        "seconds": seconds,
        "cpu": cpu,
        "size": path.stat().st_size,
        "peak_mb": usage.ru_maxrss / 1024,
    }
    print(json.dumps(figures))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="copy,csv,parquet,xlsx")
    parser.add_argument("--repeat", type=int, default=3, help="runs per format, medians reported (xlsx runs once)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--account", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"bulkops_bench_export_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN).set(database=name).render_as_string(hide_password=False)
    try:
        t0 = time.perf_counter()
        account = _seed(url, args.rows)
        print(f"seeded {args.rows:,} applications in {time.perf_counter() - t0:.1f} s; load {os.getloadavg()}")
        print(f"filter: {' and '.join(WHERE)}; columns: {COLUMNS}")
        runs: dict[str, list[dict]] = {}
        with tempfile.TemporaryDirectory(prefix="bench-export-") as out:
            formats = args.formats.split(",")
            # interleaved, so a load spike on a shared machine hits every format alike; xlsx (slow) once
            for round_ in range(args.repeat):
                for fmt in formats:
                    if fmt == "xlsx" and round_ > 0:
                        continue
                    done = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            fmt,
                            "--url",
                            url,
                            "--account",
                            str(account),
                            "--out",
                            out,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    runs.setdefault(fmt, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
        figures = {}
        for fmt, results in runs.items():
            fig = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
            figures[fmt] = fig
            times = ", ".join(f"{r['seconds']:.2f}" for r in results)
            print(
                f"{fmt:8} {fig['rows']:>10,} rows {fig['seconds']:7.2f} s (median of {times}) "
                f"{fig['rows'] / fig['seconds']:>10,.0f} rows/s  client CPU {fig['cpu']:6.2f} s  "
                f"{fig['size'] / 1e6:8.1f} MB  peak RSS {max(r['peak_mb'] for r in results):6.0f} MB"
            )
        if "copy" in figures:
            rate = {k: v["rows"] / v["seconds"] for k, v in figures.items()}
            print("vs COPY: " + ", ".join(f"{k} {rate[k] / rate['copy']:.2f}x" for k in rate if k != "copy"))
        if "csv" in figures and "parquet" in figures:
            print(f"parquet vs csv: {figures['csv']['seconds'] / figures['parquet']['seconds']:.2f}x")
        print(f"load average after: {os.getloadavg()}")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
