"""Run launch latency: a 3-record bulk job, created -> completed, and `bulkops import` of a small file.

Both on a fresh SQLite record store and a temporary Dagster home (`pipelines/dagster.local.yaml`),
with no Dagster webserver running (what `make demo` and a plain `bulkops api` see):

- bulk job: `service.create_job` then `launch.launch_bulk_job`, timed until the job reads completed;
- import: the `bulkops import` command on a 10-row CSV, timed from start to exit (it waits for the
  run and prints its history row).

With `--webserver`, the same again through a `dagster dev` it starts on a free port
(`BULKOPS_DAGSTER_GRAPHQL_URL`): the run is submitted over GraphQL and started by its daemon. That
route also prints where the time of each bulk job goes, from the run's Dagster events and the bulk
job's row, and times a no-op job (`benchmarks/launch_noop`, a code location of its own served beside
bulkops) launched the same way: the floor of any run on this instance. `--webserver-only` skips the
route without a webserver; `--imports` also times the interpreter imports a run worker pays.

    .venv/bin/python benchmarks/bench_launch.py [--rounds 5] [--webserver] [--webserver-only] [--imports]
"""

from __future__ import annotations

import argparse
import functools
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
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
CSV_HEADER = "Application ID,First Name,Last Name,Email,Job Code,Job Title\n"
NOOP_LOCATION = "launch_noop"
# how often the benchmark looks whether the bulk job (or the no-op run) is done
POLL_S = 0.05

_LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { timestamp message }
        ... on StepEvent { stepKey }
      }
    }
  }
}
"""


def _seed(store, account) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    from connectors.store import schema

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
    return ids


def bulk_round(store, account, database_url: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """One 3-record bulk job, created -> completed; its timestamps (epoch seconds) by name."""
    from pipelines.bulk import launch, service

    ids = _seed(store, account)
    marks = {"start": time.time()}
    created = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "archived"},
    )
    job_id = uuid.UUID(created["id"])
    marks["created"] = time.time()
    marks["run_id"] = launch.launch_bulk_job(job_id, database_url=database_url)  # type: ignore[assignment]
    marks["submitted"] = time.time()
    deadline = time.monotonic() + 600
    while (status := service.get_job(store, account, job_id)["status"]) != "completed":
        if status in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"bulk job {job_id} ended {status}")
        time.sleep(POLL_S)
    marks["seen"] = time.time()
    marks.update(_job_times(store, job_id))
    return marks


def _job_times(store, job_id: uuid.UUID) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from connectors.store import schema

    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.bulk_jobs.c.started_at, schema.bulk_jobs.c.finished_at).where(
                schema.bulk_jobs.c.id == job_id
            )
        ).one()

    def epoch(value: datetime) -> float:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()

    return {"job_started": epoch(row.started_at), "job_finished": epoch(row.finished_at)}


def run_status(run_id: str) -> str:
    """The run's status, read from the instance's storage as the bulk job's is from the record store:
    polling the webserver would cost it CPU that the run worker being measured needs."""
    run = _instance().get_run_by_id(run_id)
    return run.status.value if run is not None else "NOT_FOUND"


@functools.cache
def _instance():  # type: ignore[no-untyped-def]
    import dagster as dg

    return dg.DagsterInstance.get()


def wait_run_end(run_id: str) -> str:
    """Wait (untimed) until the run has ended, so that the next measurement does not share the CPU with
    its last step and its worker's exit (a bulk job reads completed before its run ends); its status."""
    deadline = time.monotonic() + 600
    while (status := run_status(run_id)) not in ("SUCCESS", "FAILURE", "CANCELED"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} did not end")
        time.sleep(POLL_S)
    time.sleep(0.5)
    return status


def noop_round(url: str) -> dict[str, float]:
    """One run of the no-op job submitted over GraphQL, polled until it ends; its timestamps."""
    from pipelines.instance import graphql_client

    marks = {"start": time.time()}
    run_id = graphql_client(url).submit_job_execution(
        "noop_job", repository_location_name=NOOP_LOCATION, repository_name="__repository__"
    )
    marks["submitted"] = time.time()
    deadline = time.monotonic() + 600
    while True:
        status = run_status(run_id)
        if status == "SUCCESS":
            break
        if status in ("FAILURE", "CANCELED") or time.monotonic() > deadline:
            raise RuntimeError(f"no-op run {run_id} ended {status}")
        time.sleep(POLL_S)
    marks["seen"] = time.time()
    marks["run_id"] = run_id  # type: ignore[assignment]
    return marks


def _graphql(url: str, query: str, variables: dict) -> dict:
    body = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"][0].get("message"))
    return body["data"]


def run_events(url: str, run_id: str, step: str | None) -> dict[str, float]:
    """The epoch seconds of the run's milestones, from its Dagster event log."""
    events = _graphql(url, _LOGS, {"runId": run_id})["logsForRun"]["events"]
    marks: dict[str, float] = {}
    names = {
        "RunEnqueuedEvent": "enqueued",
        # the daemon reports STARTING as it takes the run off the queue and hands it to the launcher
        "RunStartingEvent": "starting",
        "RunStartEvent": "run_start",
        "RunSuccessEvent": "run_end",
    }
    for event in events:
        kind, ts = event["__typename"], float(event["timestamp"]) / 1000
        if kind in names:
            marks.setdefault(names[kind], ts)
        elif kind == "EngineEvent" and event["message"].startswith("Started process for run"):
            marks.setdefault("process", ts)
        elif kind == "ExecutionStepStartEvent" and (step is None or event["stepKey"] == step):
            marks.setdefault("step_start", ts)
        elif kind == "ExecutionStepSuccessEvent" and (step is None or event["stepKey"] == step):
            marks.setdefault("step_end", ts)
    return marks


# (label, from mark, to mark): the components of create -> completed, in order
BULK_COMPONENTS = [
    ("API create (bulk_jobs row)", "start", "created"),
    ("submit over GraphQL -> run queued", "created", "enqueued"),
    ("queue wait (daemon dequeue)", "enqueued", "starting"),
    ("run worker process start (spawn, Dagster import, instance)", "starting", "process"),
    ("code load (job definition) + run setup", "process", "run_start"),
    ("step setup (resources, executor)", "run_start", "step_start"),
    ("step start -> bulk job started", "step_start", "job_started"),
    ("work (bulk job started -> finished)", "job_started", "job_finished"),
    ("completion seen by the caller (poll)", "job_finished", "seen"),
]
NOOP_COMPONENTS = [
    ("submit over GraphQL -> run queued", "start", "enqueued"),
    ("queue wait (daemon dequeue)", "enqueued", "starting"),
    ("run worker process start", "starting", "process"),
    ("code load + run setup", "process", "run_start"),
    ("step", "run_start", "step_end"),
    ("run end", "step_end", "run_end"),
    ("end seen by the caller (poll)", "run_end", "seen"),
]


def print_components(title: str, rounds: list[dict[str, float]], components: list[tuple[str, str, str]]) -> None:
    total = [r["seen"] - r["start"] for r in rounds]
    print(
        f"  {title}: median {statistics.median(total):.2f} s (min {min(total):.2f}, max {max(total):.2f}; "
        f"{' '.join(f'{t:.2f}' for t in total)})"
    )
    for label, a, b in components:
        values = [r[b] - r[a] for r in rounds if a in r and b in r]
        if values:
            print(f"    {label:<62} median {statistics.median(values):6.2f} s (max {max(values):.2f})")


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


def import_times(env: dict[str, str], rounds: int) -> None:
    """Wall time of a fresh interpreter importing what a run worker imports (median of ROUNDS)."""
    for label, code in (
        ("python -c pass", "pass"),
        ("import dagster", "import dagster"),
        ("import pipelines.definitions", "import pipelines.definitions"),
        ("import benchmarks.launch_noop.definitions", "import benchmarks.launch_noop.definitions"),
    ):
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
            times.append(time.perf_counter() - start)
        print(f"  {label:<45} median {statistics.median(times):.2f} s (min {min(times):.2f})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_dagster_dev(env: dict[str, str], var: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # workspace.yaml's bulkops location, and the no-op job's location beside it
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    for entry in workspace["load_from"]:
        for spec in entry.values():
            spec.setdefault("working_directory", str(ROOT))
    workspace["load_from"].append(
        {
            "python_module": {
                "module_name": "benchmarks.launch_noop.definitions",
                "location_name": NOOP_LOCATION,
                "working_directory": str(ROOT),
            }
        }
    )
    workspace_file = var / "workspace.yaml"
    workspace_file.write_text(yaml.safe_dump(workspace, sort_keys=False))
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(workspace_file), "-p", str(port)],
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
            loaded = [(e["locationOrLoadError"] or {}).get("__typename") for e in entries["locationEntries"]]
            if len(loaded) == 2 and all(t == "RepositoryLocation" for t in loaded):
                return proc, url
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError("dagster dev did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--webserver", action="store_true", help="also measure through a running dagster dev")
    parser.add_argument("--webserver-only", action="store_true", help="only measure through a running dagster dev")
    parser.add_argument("--imports", action="store_true", help="also time the imports a run worker pays")
    parser.add_argument("--no-import", action="store_true", help="skip the `bulkops import` rounds")
    args = parser.parse_args()
    args.webserver = args.webserver or args.webserver_only

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

    routes: list[tuple[str, dict[str, str]]] = [] if args.webserver_only else [("no webserver", env)]
    dev = None
    try:
        print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if args.webserver:
            # as `make dev` (pipelines.devserver) does before starting dagster dev: run workers read cached bytecode
            from pipelines.devserver import compile_bytecode

            compile_bytecode(ROOT)
        if args.imports:
            print("imports in a fresh interpreter:")
            import_times(env, args.rounds)
        if args.webserver:
            dev, url = _start_dagster_dev(env, var)
            routes.append(("through dagster dev (GraphQL)", {**env, "BULKOPS_DAGSTER_GRAPHQL_URL": url}))
        for name, route_env in routes:
            url = route_env.get("BULKOPS_DAGSTER_GRAPHQL_URL")
            if url:
                os.environ["BULKOPS_DAGSTER_GRAPHQL_URL"] = url
            bulk, noop = [], []
            for _ in range(args.rounds):
                bulk.append(bulk_round(store, account, database_url))
                if url:
                    wait_run_end(str(bulk[-1]["run_id"]))
                    # the floor, measured between the bulk jobs under the same load
                    noop.append(noop_round(url))
                    wait_run_end(str(noop[-1]["run_id"]))
            imports = [] if args.no_import else [import_round(var, n, route_env) for n in range(args.rounds)]
            print(f"{name}:")
            if url:
                for r in bulk:
                    r.update(run_events(url, str(r["run_id"]), "apply_bulk_job"))
                for r in noop:
                    r.update(run_events(url, str(r["run_id"]), None))
            print_components("3-record bulk job, create -> completed", bulk, BULK_COMPONENTS if url else [])
            if noop:
                print_components("no-op job, submit -> SUCCESS seen", noop, NOOP_COMPONENTS)
            if imports:
                print(
                    f"  bulkops import (10 rows) median {statistics.median(imports):.1f} s "
                    f"(min {min(imports):.1f}, max {max(imports):.1f})"
                )
        print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        store.dispose()
        if _instance.cache_info().currsize:
            _instance().dispose()
        if dev is not None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
