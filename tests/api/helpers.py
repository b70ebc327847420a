"""Helpers for the API tests: seeding records, reading envelopes, polling a job."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from connectors.store import RecordStore
from connectors.store.schema import applications, users

TERMINAL = ("completed", "failed", "cancelled")


def seed_applications(store: RecordStore, account_id: uuid.UUID, n: int, *, stage: str = "applied") -> list[str]:
    """n live applications of one candidate in the account; their ids as strings."""
    candidate = uuid.uuid4()
    ids = [uuid.uuid4() for _ in range(n)]
    with store.begin() as conn:
        conn.execute(
            users.insert().values(
                id=candidate, account_id=account_id, role="candidate", email=f"{candidate}@example.test"
            )
        )
        conn.execute(
            applications.insert(),
            [{"id": i, "account_id": account_id, "candidate_id": candidate, "stage": stage} for i in ids],
        )
    return [str(i) for i in ids]


def deleted_flags(store: RecordStore, ids: list[str], table: sa.Table = applications) -> list[bool]:
    """For each id, whether the record is soft-deleted."""
    with store.engine.connect() as conn:
        rows = dict(
            conn.execute(
                sa.select(table.c.id, table.c.deleted_at).where(table.c.id.in_([uuid.UUID(i) for i in ids]))
            ).all()
        )
    return [rows[uuid.UUID(i)] is not None for i in ids]


def result(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is True, body
    return body["result"]


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def wait_for(client: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 180) -> dict:
    """Poll bulk-jobs-get until the job reaches one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        job = result(client.get("/api/bulk-jobs-get", params={"id": job_id}))
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s: {job}")
        time.sleep(0.2)


def seed_candidates(store: RecordStore, account_id: uuid.UUID, n: int) -> list[str]:
    """n live candidates (users) in the account; their ids as strings."""
    ids = [uuid.uuid4() for _ in range(n)]
    with store.begin() as conn:
        conn.execute(
            users.insert(),
            [{"id": i, "account_id": account_id, "role": "candidate", "email": f"{i}@example.test"} for i in ids],
        )
    return [str(i) for i in ids]


def create(client: httpx.Client, **body: Any) -> dict:
    return result(client.post("/api/bulk-jobs-create", json=body))


def wait_for_run(instance: Any, run_id: str, timeout: float = 120) -> Any:
    """Poll the Dagster instance until the run is finished; the run."""
    deadline = time.monotonic() + timeout
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.status if run else 'missing'} after {timeout}s")
        time.sleep(0.2)


def wait_for_job_run(client: httpx.Client, instance: Any, job_id: str, timeout: float = 120) -> Any:
    """Poll until the bulk job's run is finished (the run), or the job names no run (None).

    A job cancelled while its launch waited for a slot never gets a run: its run id is cleared.
    """
    deadline = time.monotonic() + timeout
    while True:
        run_id = result(client.get("/api/bulk-jobs-get", params={"id": job_id}))["dagster_run_id"]
        run = instance.get_run_by_id(run_id) if run_id else None
        if run_id is None or (run is not None and run.is_finished):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} of bulk job {job_id} still {run.status if run else 'missing'}")
        time.sleep(0.2)


def join_launch(run_id: str, timeout: float = 120) -> None:
    """Wait for the API's background launch of RUN_ID (a thread of this process) to end.

    The run can finish before the thread has reaped its `dagster job launch` process: until the
    thread ends, that process may still be an exited child waiting to be reaped.
    """
    for thread in threading.enumerate():
        if thread.name == f"launch-{run_id}":
            thread.join(timeout)
            assert not thread.is_alive(), f"the launch of run {run_id} still going after {timeout}s"
