"""PostgreSQL's one-statement batches record exactly what the operations' Python path records."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, bulk, schema
from connectors.store.dialect import PostgresDialect
from pipelines.bulk import service
from tests.bulk.conftest import Seeder


def _comparable(value: Any) -> Any:
    # a soft delete's after-image holds the moment of its batch
    if isinstance(value, dict) and value.get("deleted_at") is not None:
        return {**value, "deleted_at": "set"}
    return value


def _run(seed: Seeder, operation: str, params: dict, column: str, drift: Any) -> dict[str, list]:
    """A previewed job on four applications and a missing id; the first record drifts after the preview."""
    store, account = seed.store, seed.account_id
    ids = seed.applications(4)
    entity_ids = [*ids, uuid.uuid4()]
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation=operation,
        entity_ids=entity_ids,
        params=params,
        mode="preview",
    )
    with store.begin() as conn:
        conn.execute(schema.applications.update().where(schema.applications.c.id == ids[0]).values({column: drift}))
    service.confirm(store, account, job["id"], plan_id=job["plan_id"])
    done = service.run_job_now(store, account, uuid.UUID(job["id"]), batch_size=2)
    position = {eid: n for n, eid in enumerate(entity_ids)}
    rows = seed.rows(schema.applications, ids)
    return {
        "job": [done[k] for k in ("status", "processed_count", "failed_count", "skipped_count")],
        "items": [(i.status, i.error, i.before, _comparable(i.after)) for i in seed.items(job["id"])],
        "audit": sorted(
            (position[a.entity_id], a.operation, a.actor, a.before, _comparable(a.after)) for a in seed.audit(job["id"])
        ),
        "records": [_comparable({column: bulk.jsonable(getattr(rows[i], column))}) for i in ids],
    }


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("operation", "params", "column", "drift", "first"),
    [
        pytest.param("status_update", {"status": "rejected"}, "status", "drifted", "skipped", id="status"),
        pytest.param("stage_transition", {"stage": "interview"}, "stage", "drifted", "skipped", id="stage"),
        pytest.param("field_update", {"fields": {"source": "referral"}}, "source", "drifted", "skipped", id="field"),
        # a record deleted since the preview is no longer found
        pytest.param("delete", {}, "deleted_at", sa.func.now(), "failed", id="soft-delete"),
    ],
)
def test_set_based_batches_record_what_the_python_path_records(
    pg_url, monkeypatch, operation, params, column, drift, first
) -> None:
    store = RecordStore(pg_url)
    seed = Seeder(store, store.ensure_account(f"s-{uuid.uuid4().hex[:10]}"))
    try:
        set_based = _run(seed, operation, params, column, drift)
        monkeypatch.setattr(PostgresDialect, "set_based_batches", False)
        evaluated = _run(seed, operation, params, column, drift)
    finally:
        store.dispose()
    assert set_based == evaluated
    assert [i[0] for i in set_based["items"]] == [first, "succeeded", "succeeded", "succeeded", "failed"]
    assert len(set_based["audit"]) == 3
