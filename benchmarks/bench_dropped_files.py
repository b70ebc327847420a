"""Many small files dropped at once: shared import runs vs one run per file.

    .venv/bin/python benchmarks/bench_dropped_files.py --files 100

Drops FILES small CSVs (ROWS rows each) into a throwaway drop folder, ticks the real applications
drop-folder sensor until it has taken them all and executes every run it requests in this process
(`execute_in_process` / `materialize`), on a throwaway SQLite record store and Dagster instance;
once with shared runs (`--files-per-run`, default 50) and once with one run per file. In-process
runs leave out what a launched run costs on top (a run worker's process start and code load):
`--launch-seconds` (measured: BENCHMARKS.md, "Run launch") is added per run in the extrapolation to
1,000 files, which assumes runs one after another.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HEADER = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n"


def run(files: int, rows: int, per_run: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dropped-"))
    os.environ["BULKOPS_DROPZONE"] = str(tmp / "dropzone")
    os.environ["BULKOPS_VAR_DIR"] = str(tmp / "var")
    import dagster as dg

    from connectors.store import make_engine, migrate
    from pipelines.imports.assets import imported_file
    from pipelines.imports.sensors import build_dropzone_sensor
    from pipelines.imports.shared import shared_import_job
    from resources import RecordStoreResource

    url = f"sqlite:///{tmp / 'store.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    resource = RecordStoreResource(database_url=url)
    account = f"bench-{uuid.uuid4().hex[:8]}"
    resource.store.ensure_account(account)
    folder = tmp / "dropzone" / "applications"
    folder.mkdir(parents=True)
    (folder / "bulkops.yaml").write_text(f"account: {account}\n")
    for i in range(files):
        body = "".join(f"APP-{j},F{j},L{j},p{j}@example.com,ENG-1,Engineer\n" for j in range(i * rows, (i + 1) * rows))
        (folder / f"part-{i:05d}.csv").write_text(HEADER + body)
    sensor = build_dropzone_sensor(
        "applications", clock=lambda: time.time() + 60, files_per_run=per_run, root=tmp / "dropzone"
    )
    (tmp / "dagster").mkdir()
    ticks: list[float] = []
    runs = failed = 0
    started = time.perf_counter()
    with dg.instance_for_test(temp_dir=str(tmp / "dagster")) as instance:
        cursor = None
        while True:
            t = time.perf_counter()
            result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
            ticks.append(time.perf_counter() - t)
            if not result.run_requests:
                break
            cursor = result.cursor
            for add in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
            for request in result.run_requests:
                resources = {"record_store": resource}
                if request.job_name == shared_import_job.name:
                    out = shared_import_job.execute_in_process(
                        run_config=request.run_config,
                        instance=instance,
                        resources=resources,
                        tags=request.tags,
                        raise_on_error=False,
                    )
                else:
                    out = dg.materialize(
                        [imported_file],
                        instance=instance,
                        partition_key=request.partition_key,
                        resources=resources,
                        run_config=request.run_config,
                        tags=request.tags,
                        raise_on_error=False,
                    )
                runs += 1
                failed += not out.success
    elapsed = time.perf_counter() - started
    processed = len(list((folder / "processed").iterdir()))
    return {"seconds": elapsed, "runs": runs, "failed_runs": failed, "processed": processed, "max_tick": max(ticks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--files-per-run", type=int, default=50)
    parser.add_argument("--launch-seconds", type=float, default=10.0, help="a launched run's start-up cost")
    parser.add_argument("--only", choices=["shared", "per-file"], help="measure one mode (in this process)")
    args = parser.parse_args()
    if args.only:
        per_run = args.files_per_run if args.only == "shared" else 1
        print(repr(run(args.files, args.rows, per_run)))
        return
    load = os.getloadavg()[0]
    print(f"{args.files} files of {args.rows} rows; load average {load:.1f}")
    for mode in ("shared", "per-file"):
        # each mode in a fresh interpreter: neither warms the other's caches
        out = (
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--only",
                    mode,
                    "--files",
                    str(args.files),
                    "--rows",
                    str(args.rows),
                    "--files-per-run",
                    str(args.files_per_run),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        r = eval(out)  # our own child prints a dict of numbers
        per_file = r["seconds"] / args.files
        runs_1000 = r["runs"] * 1000 / args.files
        extrapolated = per_file * 1000 + runs_1000 * args.launch_seconds
        print(
            f"{mode:8}: {r['seconds']:.1f} s in process ({per_file * 1000:.0f} ms/file), {r['runs']} runs, "
            f"{r['failed_runs']} failed, {r['processed']} processed, slowest tick {r['max_tick']:.2f} s; "
            f"1,000 files extrapolated with {args.launch_seconds:.0f} s per launched run: {extrapolated / 60:.1f} min"
        )
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
