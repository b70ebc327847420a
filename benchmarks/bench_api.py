"""HTTP API latency: create -> completed for a 3-record job, against Dagster's own run latency.

In one run, under one `dagster dev` (webserver + daemon + code servers) this script starts in
its own process group with a temporary DAGSTER_HOME:

- baseline: a trivial one-op job (`pipelines.api.baseline`, its own code location) submitted
  through `DagsterGraphQLClient`, timed from submit to SUCCESS;
- bulkops (queued): `POST /api/bulk-jobs-create` of a 3-record soft delete to a `bulkops api`
  that submits through the same GraphQL endpoint (BULKOPS_DAGSTER_GRAPHQL_URL), timed until
  `bulk-jobs-get` says completed;
- bulkops (direct): the same against a `bulkops api` that knows no webserver (the run is launched
  with `dagster job launch` into the same instance, default run coordinator: no queue);
- 20 concurrent creates through the queued API, each checked for exact counts.

    .venv/bin/python benchmarks/bench_api.py [--rounds 5] [--dequeue-interval 1] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import contextlib  # noqa: E402

from connectors.store import RecordStore, make_engine, migrate  # noqa: E402
from connectors.store.schema import applications, users  # noqa: E402
from pipelines.api.tokens import create_token  # noqa: E402

BIN = Path(sys.executable).parent
POLL = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s")
        time.sleep(0.25)


class Group:
    """A child process in its own process group, killed as a group (dagster dev ignores SIGTERM)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()


def graphql(port: int, query: str) -> dict:
    response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def locations_loaded(port: int, names: set[str]) -> bool:
    data = graphql(
        port,
        "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }",
    )
    entries = {e["name"]: e["locationOrLoadError"]["__typename"] for e in data["workspaceOrError"]["locationEntries"]}
    failed = {n for n, t in entries.items() if t == "PythonError"}
    if failed:
        raise RuntimeError(f"code locations failed to load: {failed}")
    return all(entries.get(n) == "RepositoryLocation" for n in names)


def daemon_healthy(port: int) -> bool:
    data = graphql(port, "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
    statuses = {d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]}
    return bool(statuses.get("QUEUED_RUN_COORDINATOR"))


def seed(store: RecordStore, account_id: uuid.UUID, n: int) -> list[str]:
    candidate = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(n)]
    with store.begin() as conn:
        conn.execute(users.insert().values(id=candidate, account_id=account_id, role="candidate"))
        conn.execute(
            applications.insert(), [{"id": i, "account_id": account_id, "candidate_id": candidate} for i in ids]
        )
    return [str(i) for i in ids]


def run_baseline(client: Any, job_name: str) -> float:
    from dagster import DagsterRunStatus

    started = time.perf_counter()
    run_id = client.submit_job_execution(job_name, repository_location_name="bench_baseline")
    while True:
        status = client.get_run_status(run_id)
        if status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            break
        time.sleep(POLL)
    if status != DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"baseline run {run_id} ended {status}")
    return time.perf_counter() - started


def run_bulk(api: httpx.Client, ids: list[str]) -> tuple[float, dict, float]:
    started = time.perf_counter()
    response = api.post(
        "/api/bulk-jobs-create", json={"entity_type": "applications", "operation": "delete", "entity_ids": ids}
    )
    response.raise_for_status()
    answered = time.perf_counter() - started
    job = response.json()["result"]
    while job["status"] not in ("completed", "failed", "cancelled"):
        time.sleep(POLL)
        job = api.get("/api/bulk-jobs-get", params={"id": job["id"]}).json()["result"]
    return time.perf_counter() - started, job, answered


def summary(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument(
        "--dequeue-interval",
        type=int,
        default=None,
        help="run_queue.dequeue_interval_seconds for the instance (Dagster's default is 5)",
    )
    parser.add_argument("--database-url", default=None, help="record store (default: a fresh SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    home = tmp / "dagster_home"
    home.mkdir()
    instance_yaml = yaml.safe_load((ROOT / "pipelines" / "dagster.local.yaml").read_text())
    if args.dequeue_interval is not None:
        instance_yaml["run_queue"] = {"dequeue_interval_seconds": args.dequeue_interval, "dequeue_use_threads": True}
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    workspace = tmp / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "pipelines.definitions",
                            "location_name": "bulkops",
                            "working_directory": str(ROOT),
                        }
                    },
                    {
                        "python_module": {
                            "module_name": "pipelines.api.baseline",
                            "location_name": "bench_baseline",
                            "working_directory": str(ROOT),
                        }
                    },
                ]
            }
        )
    )
    database_url = args.database_url or f"sqlite:///{tmp / 'bulkops.db'}"
    migrate.upgrade(make_engine(database_url))
    store = RecordStore(database_url)
    account = store.ensure_account(f"bench-{uuid.uuid4().hex[:6]}")
    token = create_token(store, account, name="bench").token

    dagit_port, queued_port, direct_port = free_port(), free_port(), free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "BULKOPS_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    env.pop("BULKOPS_DAGSTER_GRAPHQL_URL", None)
    cli = [sys.executable, "-c", "import sys; from pipelines.cli import run; sys.argv[0] = 'bulkops'; run()"]
    groups: list[Group] = []
    figures: dict[str, Any] = {
        "dequeue_interval_seconds": args.dequeue_interval or 5,
        "rounds": args.rounds,
        "database": make_engine(database_url).dialect.name,
        "cores": os.cpu_count(),
    }
    try:
        t0 = time.perf_counter()
        groups.append(
            Group(
                "dagster-dev",
                [str(BIN / "dagster"), "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(dagit_port)],
                env,
                tmp,
            )
        )
        queued_env = {**env, "BULKOPS_DAGSTER_GRAPHQL_URL": f"http://127.0.0.1:{dagit_port}"}
        groups.append(Group("api-queued", [*cli, "api", "--port", str(queued_port)], queued_env, tmp))
        groups.append(Group("api-direct", [*cli, "api", "--port", str(direct_port)], env, tmp))
        wait_until("dagster dev", lambda: locations_loaded(dagit_port, {"bulkops", "bench_baseline"}))
        wait_until("the run queue daemon", lambda: daemon_healthy(dagit_port))
        for port in (queued_port, direct_port):
            wait_until(f"api :{port}", lambda p=port: httpx.get(f"http://127.0.0.1:{p}/api/health").status_code == 200)
        figures["startup_s"] = time.perf_counter() - t0

        from dagster_graphql import DagsterGraphQLClient

        gql = DagsterGraphQLClient("127.0.0.1", port_number=dagit_port)
        headers = {"Authorization": f"Bearer {token}"}
        queued = httpx.Client(base_url=f"http://127.0.0.1:{queued_port}", headers=headers, timeout=120)
        direct = httpx.Client(base_url=f"http://127.0.0.1:{direct_port}", headers=headers, timeout=120)

        # warm-up, not counted: first loads of each path
        run_baseline(gql, "noop_job")
        run_bulk(queued, seed(store, account, 3))
        run_bulk(direct, seed(store, account, 3))

        times: dict[str, list[float]] = {"baseline": [], "baseline_in_process": [], "queued": [], "direct": []}
        answered: dict[str, list[float]] = {"queued": [], "direct": []}
        for r in range(args.rounds):
            times["baseline"].append(run_baseline(gql, "noop_job"))
            times["baseline_in_process"].append(run_baseline(gql, "noop_job_in_process"))
            for name, api in (("queued", queued), ("direct", direct)):
                elapsed, job, first = run_bulk(api, seed(store, account, 3))
                if (job["status"], job["processed_count"], job["failed_count"]) != ("completed", 3, 0):
                    raise RuntimeError(f"{name} job did not complete exactly: {job}")
                times[name].append(elapsed)
                answered[name].append(first)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
        figures["seconds"] = {k: summary(v) for k, v in times.items()}
        figures["create_answered_seconds"] = {k: summary(v) for k, v in answered.items()}
        base = statistics.median(times["baseline"])
        figures["queued_over_baseline"] = statistics.median(times["queued"]) / base
        figures["direct_over_baseline"] = statistics.median(times["direct"]) / base

        batches = [seed(store, account, 3) for _ in range(args.concurrent)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            done = list(pool.map(lambda ids: run_bulk(queued, ids), batches))
        wall = time.perf_counter() - started
        exact = sum((j["status"], j["processed_count"], j["failed_count"]) == ("completed", 3, 0) for _, j, _ in done)
        with store.engine.connect() as conn:
            all_ids = [uuid.UUID(i) for ids in batches for i in ids]
            deleted = conn.scalar(
                sa.select(sa.func.count())
                .select_from(applications)
                .where(applications.c.id.in_(all_ids), applications.c.deleted_at.is_not(None))
            )
        figures["concurrent"] = {
            "jobs": args.concurrent,
            "wall_s": wall,
            "exact": exact,
            "records_deleted": deleted,
            "per_job_s": summary([t for t, _, _ in done]),
        }
        print(json.dumps(figures, indent=2))
        return 0 if exact == args.concurrent and deleted == 3 * args.concurrent else 1
    finally:
        for g in reversed(groups):
            g.kill()
        store.dispose()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
