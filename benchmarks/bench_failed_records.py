"""Failed records as CSV: `bulkops bulk-jobs failed` against `GET /api/bulk-jobs-failed-records`.

Creates a throwaway PostgreSQL database, a job of N ids that all fail ("not found"), runs it,
then times, each `--rounds` times:

- cli: `bulkops bulk-jobs failed BULK_JOB_ID` in a fresh process, stdout to a file (process start included);
- api: the same CSV streamed from a `bulkops api` server in its own process, to a file.

Both outputs are checked to hold N records and to be identical.

    .venv/bin/python benchmarks/bench_failed_records.py [--records 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.store import RecordStore, make_engine, migrate  # noqa: E402
from pipelines.api.tokens import create_token  # noqa: E402
from pipelines.bulk import service  # noqa: E402

BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("BULKOPS_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bulkops_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    server = None
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        store = RecordStore(url)
        account = store.ensure_account("bench")
        ids = [str(uuid.uuid4()) for _ in range(args.records)]
        job = service.create_job(
            store,
            account,
            created_by=None,
            entity_type="applications",
            operation="status_update",
            entity_ids=ids,
            params={"status": "rejected"},
        )
        t = time.perf_counter()
        done = service.run_job_now(store, account, uuid.UUID(job["id"]))
        print(
            f"job of {args.records} ids ran in {time.perf_counter() - t:.1f}s: {done['status']}, "
            f"{done['failed_count']} failed; error_message: {done['error_message']}"
        )
        token = create_token(store, account, name="bench").token
        store.dispose()

        env = {
            **os.environ,
            "BULKOPS_DATABASE_URL": url,
            "BULKOPS_ACCOUNT": "bench",
            "PYTHONPATH": str(ROOT),
            "BULKOPS_VAR_DIR": tempfile.mkdtemp(prefix="bench-var-"),
        }
        port = free_port()
        server = subprocess.Popen(
            [str(BIN / "bulkops"), "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the API server did not start")
            time.sleep(0.2)

        out = Path(tempfile.mkdtemp(prefix="bench-failed-"))
        cli_times, api_times = [], []
        for n in range(args.rounds):
            cli_file, api_file = out / f"cli-{n}.csv", out / f"api-{n}.csv"
            t = time.perf_counter()
            with open(cli_file, "wb") as f:
                subprocess.run([str(BIN / "bulkops"), "bulk-jobs", "failed", job["id"]], env=env, stdout=f, check=True)
            cli_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            with (
                open(api_file, "wb") as f,
                httpx.stream(
                    "GET",
                    f"{base}/api/bulk-jobs-failed-records",
                    params={"id": job["id"]},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=600,
                ) as response,
            ):
                response.raise_for_status()
                for chunk in response.iter_raw():
                    f.write(chunk)
            api_times.append(time.perf_counter() - t)
            cli_bytes, api_bytes = cli_file.read_bytes(), api_file.read_bytes()
            records = cli_bytes.count(b"\n") - 1
            assert records == args.records, f"cli wrote {records} records"
            assert cli_bytes == api_bytes, "the CLI and the API wrote different files"
        load = os.getloadavg()
        print(f"records: {args.records}, rounds: {args.rounds}, load average {load[0]:.1f}")
        print(
            f"cli  (bulkops bulk-jobs failed, process start included): median {statistics.median(cli_times):.2f}s "
            f"{[round(x, 2) for x in cli_times]}"
        )
        print(
            f"api  (GET /api/bulk-jobs-failed-records, streamed):   median {statistics.median(api_times):.2f}s "
            f"{[round(x, 2) for x in api_times]}"
        )
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
