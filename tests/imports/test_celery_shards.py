"""The production profile's scale-out: the shards of one import run on two Celery workers through RabbitMQ.

Real broker (RabbitMQ on 127.0.0.1:5672), real workers (`dagster-celery worker start`, each in a
process group of its own), the production dagster.yaml (PostgreSQL run and event storage) and a
PostgreSQL record store. Each test has a queue of its own, so parallel runs never take each
other's tasks.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from connectors.store import history, schema
from pipelines.imports.celery_jobs import celery_sharded_import_job
from pipelines.imports.engine import ImportOptions, run_import
from tests.imports.helpers import apps_csv
from tests.imports.test_shards import OUTCOME, audit_counts, records

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    # dagster-celery registers its step task again for each step it submits (its own code, harmless)
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BROKER = os.environ.get("BULKOPS_TEST_BROKER_URL", "pyamqp://guest:guest@127.0.0.1:5672//")
WAIT_S = 180.0
# a run whose task was lost would wait for it for ever: past this it is terminated and the test fails
RUN_S = 600.0


def wait_for(what: str, ready: Callable[[], object], timeout: float = WAIT_S) -> object:
    """Poll READY until it returns something true; fail naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the main thread (a run executing there: Dagster's termination) when the block outlasts SECONDS."""
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def rows(n: int) -> list[str]:
    """N applications of N // 3 candidates (each candidate's rows meet in one shard), 7 jobs, 2 bad rows."""
    lines = []
    for i in range(n):
        who = i % (n // 3)
        lines.append(f"A-{i},F{who},L{who},person{who}@example.org,J-{i % 7},Applied,2026-01-{1 + i % 28:02d},{i % 9}")
    lines[17] = "A-17,F,L,not-an-email,J-1,Applied,2026-01-01,1"
    lines[n - 12] = f"A-{n - 12},F,L,p@x.org,J-1,Applied,not-a-date,1"
    return lines


@dataclass
class Celery:
    """Two workers on a queue of the test's own, and what a run needs to reach them."""

    home: Path
    env: dict[str, str]
    config: Path
    queue: str
    store_url: str
    logs: Path
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def execution(self) -> dict:
        return yaml.safe_load(self.config.read_text())["execution"]

    def app(self):  # type: ignore[no-untyped-def]
        from dagster_celery.make_app import make_app

        config = self.execution()["config"]
        return make_app(
            {"broker": BROKER, "backend": "rpc://", "include": [], "config_source": config["config_source"]}
        )

    def node(self, name: str) -> str:
        """The Celery node name of worker NAME: NAME-<this test's queue id>. A worker killed by an
        earlier test leaves its exclusive control queue (`NODE.celery.pidbox`) on the broker until
        the broker sees the connection dead; a later worker of the same node name would be refused."""
        return f"{name}-{self.queue.rsplit('-', 1)[-1]}"

    def start(self, name: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (the worker writes to it until it ends)
        self.workers[name] = subprocess.Popen(
            [
                str(BIN / "dagster-celery"),
                *("worker", "start", "-A", "dagster_celery.app", "-y", str(self.config), "-q", self.queue),
                *("-n", self.node(name), "--", "--concurrency", "1", "--without-gossip", "--without-mingle"),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the worker and its pool process
        )
        log.close()

    def wait_ready(self, app) -> None:  # type: ignore[no-untyped-def]
        def consuming() -> bool:
            for name, proc in self.workers.items():
                assert proc.poll() is None, f"worker {name} exited: {(self.logs / f'{name}.log').read_text()[-3000:]}"
            queues = app.control.inspect(timeout=1.0).active_queues() or {}
            on_mine = {w.split("@")[0] for w, qs in queues.items() if any(q["name"] == self.queue for q in qs)}
            return on_mine >= {self.node(name) for name in self.workers}

        wait_for(f"workers {sorted(self.workers)} consuming {self.queue}", consuming)

    def kill(self, name: str) -> None:
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def run_config(self, path: Path, account: str, **options) -> dict:
        return {
            "ops": {"plan_import_shards": {"config": {"path": str(path), "account": account, **options}}},
            "resources": {"record_store": {"config": {"database_url": self.store_url}}},
            "execution": self.execution(),
        }


@pytest.fixture
def celery(pg_database_factory, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    # the production instance: deploy/dagster.yaml on a fresh PostgreSQL database
    url = sa.make_url(pg_database_factory())
    pg = {
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
    }
    for k, v in pg.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", BROKER)
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    # the production executor config, on a queue of this test's own
    queue = f"bulkops-test-{uuid.uuid4().hex[:12]}"
    config = yaml.safe_load((ROOT / "deploy" / "celery" / "celery.yaml").read_text())
    config["execution"]["config"]["config_source"]["task_default_queue"] = queue
    config["execution"]["config"]["broker"] = BROKER
    config_path = tmp_path / "celery.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        **pg,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "BULKOPS_DATABASE_URL": pg_url,
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    c = Celery(home, env, config_path, queue, pg_url, logs)
    try:
        yield c
    finally:
        c.stop()
        app = c.app()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


def shard_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Step key -> the Celery workers that took it, in order (the workers' own 'Executing steps' engine events)."""
    taken: dict[str, list[str]] = {}
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records:
        event = record.event_log_entry.dagster_event
        metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
        if "Celery worker" in metadata:
            # the node name NAME-<queue id>@host, as the test named the worker: NAME
            worker = metadata["Celery worker"].value.split("@")[0].split("-")[0]
            taken.setdefault(event.step_key, []).append(worker)
    return taken


def import_row(store, account_id: uuid.UUID):  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(schema.import_history).where(schema.import_history.c.account_id == account_id)
        ).one()


def no_duplicates(store, account_id: uuid.UUID) -> None:
    a, u = schema.applications, schema.users
    with store.engine.connect() as conn:
        for table, key in ((a, a.c.external_id), (u, u.c.email_normalized)):
            dupes = conn.execute(
                sa.select(key, sa.func.count())
                .where(table.c.account_id == account_id)
                .group_by(key)
                .having(sa.func.count() > 1)
            ).all()
            assert dupes == [], f"duplicate {table.name}: {dupes[:5]}"


@pytest.fixture
def production(celery: Celery, pg_url: str) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(celery.home)) as instance:
        yield instance


def reference(store, tmp_path: Path, path: Path, batch_size: int):  # type: ignore[no-untyped-def]
    """The same file imported unsharded into an account of its own: what the shards must add up to."""
    account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    result = run_import(store, account, path, ImportOptions(batch_size=batch_size), failed_rows_dir=tmp_path / "ref")
    return account, result


@pytest.fixture
def pg_store(pg_url: str):  # type: ignore[no-untyped-def]
    from connectors.store import RecordStore

    s = RecordStore(pg_url)
    yield s
    s.dispose()


def test_the_shards_of_one_import_run_on_both_workers_with_exact_counts(
    celery: Celery, production: dg.DagsterInstance, pg_store, tmp_path: Path
) -> None:
    path = apps_csv(tmp_path, rows(1200), name="big.csv")
    ref_account, ref = reference(pg_store, tmp_path, path, 100)
    account = f"t-{uuid.uuid4().hex[:10]}"
    account_id = pg_store.ensure_account(account)
    for name in ("w1", "w2"):
        celery.start(name)
    celery.wait_ready(celery.app())

    with deadline(RUN_S):
        result = dg.execute_job(
            dg.reconstructable(celery_sharded_import_job),
            instance=production,
            run_config=celery.run_config(path, account, batch_size=100, shards=2),
        )

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    taken = shard_workers(production, result.run_id)
    # both shards were Celery tasks, one on each worker
    assert sorted(w for k, ws in taken.items() if k.startswith("write_import_shard") for w in ws) == ["w1", "w2"]
    h = import_row(pg_store, account_id)
    assert [getattr(h, k) for k in OUTCOME] == [getattr(ref, k) for k in OUTCOME]
    assert (h.status, h.rows_read, h.errors, h.created) == ("completed", 1200, 2, 1198)
    assert records(pg_store, account_id) == records(pg_store, ref_account)
    assert audit_counts(pg_store, h.id) == audit_counts(pg_store, ref.import_id)
    no_duplicates(pg_store, account_id)


def test_a_worker_killed_mid_shard_hands_its_shard_to_the_other_worker(
    celery: Celery, production: dg.DagsterInstance, pg_store, tmp_path: Path
) -> None:
    # 80 batches per shard: the kill lands within a poll (0.2 s) of the shard's first commit, long before its last
    n, batch = 4000, 50
    path = apps_csv(tmp_path, rows(n), name="big.csv")
    ref_account, ref = reference(pg_store, tmp_path, path, batch)
    account = f"t-{uuid.uuid4().hex[:10]}"
    account_id = pg_store.ensure_account(account)
    for name in ("w1", "w2"):
        celery.start(name)
    celery.wait_ready(celery.app())
    killed: dict[str, object] = {}

    def kill_w1_mid_shard() -> None:
        try:
            run = wait_for("the run", lambda: production.get_runs(limit=1))[0]
            # the shard w1 took, once it has committed a batch of its own and is not done
            step = wait_for(
                "w1 to take a shard",
                lambda: next(
                    (
                        k
                        for k, ws in shard_workers(production, run.run_id).items()
                        if k.startswith("write_") and ws == ["w1"]
                    ),
                    None,
                ),
            )
            k = step.split("shard_")[1].rstrip("]")

            def position() -> int:
                with pg_store.begin() as conn:
                    state = (history.row(conn, import_row(pg_store, account_id).id).details or {}).get("shards") or {}
                return int((state.get("committed") or {}).get(k, 0))

            at = wait_for(f"shard {k} to commit a batch", lambda: position() or None)
            celery.kill("w1")
            killed.update(step=step, shard=k, at=at, after_kill=position())
        except BaseException as exc:  # the main thread reports it
            killed["error"] = exc

    killer = threading.Thread(target=kill_w1_mid_shard, daemon=True)
    killer.start()
    with deadline(RUN_S):
        result = dg.execute_job(
            dg.reconstructable(celery_sharded_import_job),
            instance=production,
            run_config=celery.run_config(path, account, batch_size=batch, shards=2),
        )
    killer.join(timeout=WAIT_S)
    assert "error" not in killed, killed.get("error")

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    # killed mid-shard: batches committed, the shard not finished
    assert 0 < int(killed["after_kill"]) < n
    # the killed worker's task went back to the queue and the other worker wrote the rest of the shard
    taken = shard_workers(production, result.run_id)
    assert taken[killed["step"]] == ["w1", "w2"]
    h = import_row(pg_store, account_id)
    assert (h.status, h.rows_read, h.errors) == ("completed", n, 2)
    assert [getattr(h, k) for k in OUTCOME] == [getattr(ref, k) for k in OUTCOME]
    assert set(h.details["shards"]["committed"].values()) == {n}
    assert records(pg_store, account_id) == records(pg_store, ref_account)
    assert audit_counts(pg_store, h.id) == audit_counts(pg_store, ref.import_id)
    no_duplicates(pg_store, account_id)
