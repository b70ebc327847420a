"""One peer tool loading the applications file into PostgreSQL; prints one JSON line.

Runs in the peers' own environment (benchmarks/peers/.venv, made by setup.sh), never in the
project's: dlt, ADBC and pandas are not bulkops dependencies. `benchmarks/bench_peers.py` starts
one process per tool so that each peak RSS is that tool's own.

    benchmarks/peers/.venv/bin/python benchmarks/peers/run_peer.py dlt-adbc URL FILE

Tools:
- dlt-adbc: dlt merge (delete-insert) on `external_id`, the file read by pyarrow in Arrow
  batches, loaded as parquet through ADBC (adbc-driver-postgresql): dlt's fastest path;
- dlt-csv: the same merge with dlt writing CSV files loaded with COPY;
- pandas: `pandas.read_csv` then `DataFrame.to_sql` (SQLAlchemy + psycopg2) into a new table:
  no merge, an append; `--pandas-method default` (one executemany, which SQLAlchemy 2's
  psycopg2 dialect sends as multi-row INSERTs of 1,000 rows) or `multi` (pandas's own
  multi-row INSERT, chunks of 1,000 rows).

Every column is read as text (no validation or type inference: the file's bad dates would
break pyarrow's inference half way). The time covers reading the file to the load committed;
interpreter start and imports are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time


def _snake(name: str) -> str:
    return "external_id" if name == "Application ID" else re.sub(r"\W+", "_", name.strip().lower())


def dlt_merge(url: str, path: str, file_format: str, workdir: str) -> dict:
    import dlt
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split(",")

    @dlt.resource(
        name="applications",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key="external_id",
    )
    def applications():  # type: ignore[no-untyped-def]
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
        )
        for batch in reader:
            yield batch.rename_columns([_snake(c) for c in header])

    pipeline = dlt.pipeline(
        pipeline_name=f"peers_{file_format}",
        pipelines_dir=workdir,
        destination=dlt.destinations.postgres(credentials=url),
        dataset_name="peers",
    )
    t = time.perf_counter()
    info = pipeline.run(applications(), loader_file_format=file_format)
    elapsed = time.perf_counter() - t
    # the file format each load job actually used (parquet means ADBC)
    formats = sorted(
        {job.job_file_info.file_format for package in info.load_packages for job in package.jobs["completed_jobs"]}
    )
    return {"elapsed": elapsed, "file_formats": formats}


def pandas_to_sql(url: str, path: str, method: str) -> dict:
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    t = time.perf_counter()
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [_snake(c) for c in df.columns]
    df.to_sql(
        "applications",
        engine,
        schema="public",
        if_exists="fail",
        index=False,
        method="multi" if method == "multi" else None,
        chunksize=1000 if method == "multi" else None,
    )
    elapsed = time.perf_counter() - t
    engine.dispose()
    return {"elapsed": elapsed, "method": method}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tool", choices=["dlt-adbc", "dlt-csv", "pandas"])
    ap.add_argument("url", help="postgresql://... of the tool's own database")
    ap.add_argument("file")
    ap.add_argument("--workdir", default=None, help="dlt's pipelines folder (default: a temporary one)")
    ap.add_argument("--pandas-method", choices=["default", "multi"], default="default")
    args = ap.parse_args()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    # the server trusts local connections, but dlt's credentials insist on a password
    os.environ.setdefault("DESTINATION__POSTGRES__CREDENTIALS__PASSWORD", "unused")
    workdir = args.workdir or tempfile.mkdtemp(prefix="bulkops-peers-dlt-")
    if args.tool == "pandas":
        out = pandas_to_sql(args.url, args.file, args.pandas_method)
    else:
        out = dlt_merge(args.url, args.file, "parquet" if args.tool == "dlt-adbc" else "csv", workdir)
    out["tool"] = args.tool
    out["rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
