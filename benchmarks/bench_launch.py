"""Run launch latency: a 3-record bulk job, created -> completed, and `bulkops import` of a small file.

Both on a fresh SQLite record store and a temporary Dagster home (`pipelines/dagster.local.yaml`),
with no Dagster webserver running (what `make demo` and a plain `bulkops api` see):

- bulk job: `service.create_job` then `launch.launch_bulk_job`, timed until the job reads completed;
- import: the `bulkops import` command on a 10-row CSV, timed from start to exit (it waits for the
  run and prints its history row).

With `--webserver`, the same again through a `dagster dev` it starts on a free port
(`BULKOPS_DAGSTER_GRAPHQL_URL`): the run is submitted over GraphQL and started by its daemon.

    .venv/bin/python benchmarks/bench_launch.py [--rounds 5] [--webserver]
"""

from __future__ import annotations

import argparse
import os
import shutil
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

ROOT = Path(__file__).resolve().parents[1]
CSV_HEADER = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n"


def _seed_job(store, account) -> uuid.UUID:  # type: ignore[no-untyped-def]
    from connectors.store import schema
    from pipelines.bulk import service

    cand, job = uuid.uuid4(), uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(3)]
    with store.begin() as conn:
        conn.execute(
            schema.users.insert().values(
                id=cand,
                account_id=account,
                email=f"{cand.hex[:8]}@example.com",
                email_normalized=f"{cand.hex[:8]}@example.com",
            )
        )
        conn.execute(schema.jobs.insert().values(id=job, account_id=account, title="Engineer"))
        conn.execute(
            schema.applications.insert(),
            [{"id": i, "account_id": account, "candidate_id": cand, "job_id": job} for i in ids],
        )
    created = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "archived"},
    )
    return uuid.UUID(created["id"])


def bulk_round(store, account, database_url: str) -> float:  # type: ignore[no-untyped-def]
    from pipelines.bulk import launch, service

    start = time.perf_counter()
    job_id = _seed_job(store, account)
    launch.launch_bulk_job(job_id, database_url=database_url)
    deadline = time.monotonic() + 600
    while (status := service.get_job(store, account, job_id)["status"]) != "completed":
        if status in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"bulk job {job_id} ended {status}")
        time.sleep(0.05)
    return time.perf_counter() - start


def import_round(var: Path, n: int, env: dict[str, str]) -> float:
    path = var / f"small-{n}-{uuid.uuid4().hex[:6]}.csv"
    path.write_text(
        CSV_HEADER + "".join(f"B{n}-{i},First{i},Last{i},b{n}x{i}@example.com,ENG-1,Engineer\n" for i in range(10))
    )
    start = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("bulkops")), "import", str(path), "--account", "demo"],
        env=env,
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_dagster_dev(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            entries = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()["data"]["workspaceOrError"]
            if any(
                (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
                for e in entries["locationEntries"]
            ):
                return proc, url
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError("dagster dev did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--webserver", action="store_true", help="also measure through a running dagster dev")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    home = var / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "pipelines" / "dagster.local.yaml", home / "dagster.yaml")
    database_url = f"sqlite:///{var / 'bulkops.db'}"
    env = {
        **os.environ,
        "BULKOPS_VAR_DIR": str(var),
        "BULKOPS_DATABASE_URL": database_url,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("BULKOPS_DAGSTER_GRAPHQL_URL", None)
    os.environ.update({k: env[k] for k in ("BULKOPS_VAR_DIR", "BULKOPS_DATABASE_URL", "DAGSTER_HOME")})
    os.environ.pop("BULKOPS_DAGSTER_GRAPHQL_URL", None)

    from connectors.store import RecordStore, make_engine, migrate

    engine = make_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()
    store = RecordStore(database_url)
    account = store.ensure_account("demo")

    routes: list[tuple[str, dict[str, str]]] = [("no webserver", env)]
    dev = None
    try:
        if args.webserver:
            dev, url = _start_dagster_dev(env)
            routes.append(("through dagster dev (GraphQL)", {**env, "BULKOPS_DAGSTER_GRAPHQL_URL": url}))
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        for name, route_env in routes:
            if "BULKOPS_DAGSTER_GRAPHQL_URL" in route_env:
                os.environ["BULKOPS_DAGSTER_GRAPHQL_URL"] = route_env["BULKOPS_DAGSTER_GRAPHQL_URL"]
            bulk = [bulk_round(store, account, database_url) for _ in range(args.rounds)]
            imports = [import_round(var, n, route_env) for n in range(args.rounds)]
            print(
                f"{name}: bulk job create->completed median {statistics.median(bulk):.1f} s "
                f"(min {min(bulk):.1f}, max {max(bulk):.1f}); bulkops import (10 rows) median "
                f"{statistics.median(imports):.1f} s (min {min(imports):.1f}, max {max(imports):.1f})"
            )
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        store.dispose()
        if dev is not None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
