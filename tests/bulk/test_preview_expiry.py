"""A preview nobody executes expires: refused at execute, cancelled in listings and statistics."""

from __future__ import annotations

import uuid
from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import bulk, schema, stats
from pipelines.bulk import service
from pipelines.bulk.sensors import expired_previews_sensor
from resources import RecordStoreResource
from tests.bulk.conftest import Seeder


def _preview(store, account, ids) -> dict:
    return service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        params={"status": "rejected"},
        entity_ids=ids,
        mode="preview",
    )


def _age(store, job: dict, hours: float) -> None:
    """Move the preview's plan (and creation) HOURS into the past."""
    then = bulk.utcnow() - timedelta(hours=hours)
    with store.begin() as conn:
        conn.execute(
            schema.bulk_jobs.update()
            .where(schema.bulk_jobs.c.id == uuid.UUID(job["id"]))
            .values(planned_at=then, created_at=then)
        )


def _expired(store, account, job: dict) -> None:
    got = service.get_job(store, account, uuid.UUID(job["id"]))
    assert got["status"] == "cancelled", got
    assert got["error_message"].startswith("preview expired: not executed within 24 h"), got["error_message"]


@pytest.fixture
def review(seed: Seeder) -> list[uuid.UUID]:
    return seed.applications(2, stage="review")


def test_confirming_an_expired_preview_is_refused_and_cancels_it(store, account, seed, review) -> None:
    job = _preview(store, account, review)
    _age(store, job, 25)
    with pytest.raises(service.InvalidState, match=r"expired: a preview can be executed for 24 h") as exc:
        service.confirm(store, account, uuid.UUID(job["id"]), plan_id=job["plan_id"])
    assert "preview again" in exc.value.message
    _expired(store, account, job)
    assert {r.status for r in seed.rows(schema.applications, review).values()} == {"active"}
    # the Launchpad's execute finds the plan and says it expired, not that it was used
    with pytest.raises(service.InvalidState, match="expired"):
        service.find_plan(store, account, job["plan_id"])


def test_the_launchpad_execute_of_an_expired_plan_is_refused(store, account, review) -> None:
    job = _preview(store, account, review)
    _age(store, job, 24.5)
    with pytest.raises(service.InvalidState, match=f"plan {job['plan_id']} of bulk job {job['id']} expired"):
        service.find_plan(store, account, job["plan_id"])
    _expired(store, account, job)


def test_a_preview_within_its_ttl_executes(store, account, seed, review) -> None:
    job = _preview(store, account, review)
    _age(store, job, 23)
    confirmed = service.confirm(store, account, uuid.UUID(job["id"]), plan_id=job["plan_id"])
    assert (confirmed["status"], confirmed["mode"]) == ("pending", "execute")


def test_the_ttl_comes_from_the_environment(store, account, review, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKOPS_PREVIEW_TTL_HOURS", "1")
    job = _preview(store, account, review)
    _age(store, job, 2)
    with pytest.raises(service.InvalidState, match="for 1 h"):
        service.confirm(store, account, uuid.UUID(job["id"]), plan_id=job["plan_id"])
    # 0: previews never expire
    monkeypatch.setenv("BULKOPS_PREVIEW_TTL_HOURS", "0")
    kept = _preview(store, account, review)
    _age(store, kept, 24 * 365)
    assert service.confirm(store, account, uuid.UUID(kept["id"]), plan_id=kept["plan_id"])["mode"] == "execute"


def test_the_sensor_cancels_stale_previews_only_and_statistics_count_them_cancelled(
    store, store_url, account, seed, review
) -> None:
    stale, fresh = _preview(store, account, review), _preview(store, account, review)
    _age(store, stale, 30)
    pending = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        params={"status": "rejected"},
        entity_ids=review,
    )
    _age(store, pending, 30)
    with store.engine.connect() as conn:
        assert stats.operation_stats(conn, account_id=account).groups["total"]["waiting"] == 2

    resources = {"record_store": RecordStoreResource(database_url=store_url)}
    with dg.build_sensor_context(resources=resources) as context:
        first = expired_previews_sensor(context)
        again = expired_previews_sensor(context)
    assert first.skip_message.startswith("1 preview(s) older than 24 h cancelled"), first
    assert again.skip_message.startswith("0 preview(s)"), again

    _expired(store, account, stale)
    assert service.get_job(store, account, uuid.UUID(fresh["id"]))["status"] == "pending"
    # an execute bulk job waiting for its run is not a preview: it never expires
    assert service.get_job(store, account, uuid.UUID(pending["id"]))["status"] == "pending"
    listed = {j["id"]: j["status"] for j in service.list_jobs(store, account)}
    assert listed[stale["id"]] == "cancelled"
    with store.engine.connect() as conn:
        total = stats.operation_stats(conn, account_id=account, since=timedelta(days=3)).groups["total"]
    assert (total["waiting"], total["cancelled"]) == (1, 1)
    # a preview that never ran has no duration
    assert total["mean_seconds"] is None
    with store.engine.connect() as conn:
        n = conn.scalar(
            sa.select(sa.func.count()).select_from(schema.bulk_jobs).where(schema.bulk_jobs.c.account_id == account)
        )
    assert n == 3
