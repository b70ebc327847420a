"""Bulk jobs that choose their records by filter: service, Launchpad job (preview, then execute that plan), API, CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from connectors.store import accounts, schema
from pipelines.api.app import create_app
from pipelines.api.tokens import create_token
from pipelines.bulk import service
from pipelines.cli import main
from pipelines.definitions import defs
from tests.bulk.conftest import Seeder


def _set(store, ids, **values) -> None:
    with store.begin() as conn:
        conn.execute(schema.applications.update().where(schema.applications.c.id.in_(ids)).values(**values))


def _slug(store, account) -> str:
    with store.engine.connect() as conn:
        return accounts.slug_of(conn, account)


def _items(seed: Seeder, job_id) -> list[uuid.UUID]:
    return [r.entity_id for r in seed.items(job_id)]


@pytest.fixture
def create(store, account) -> Callable[..., dict]:
    """service.create_job of a status update (to archived) of the account's applications; keywords override."""

    def create(**kw: Any) -> dict:
        spec = {"entity_type": "applications", "operation": "status_update", "params": {"status": "archived"}, **kw}
        return service.create_job(store, account, created_by=None, **spec)

    return create


@dataclass
class Launchpad:
    """bulk_operation_job as the Launchpad launches it, on the test's store and instance. CONFIG is a status
    update (to rejected) of the account's applications in review; a run's keywords add to it or override it."""

    instance: dg.DagsterInstance
    store_url: str
    config: dict[str, Any]

    def run(self, run_id: str | None = None, **config: Any) -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def("bulk_operation_job").execute_in_process(
            run_id=run_id,
            run_config={
                "ops": {"bulk_operation": {"config": {**self.config, **config}}},
                "resources": {"record_store": {"config": {"database_url": self.store_url}}},
            },
            instance=self.instance,
            raise_on_error=False,
        )

    def preview(self, **config: Any) -> dict:
        """The preview run's output metadata (it must succeed)."""
        result = self.run(mode="preview", **config)
        assert result.success, _failure(result)
        return _output(result)


@pytest.fixture
def launchpad(store, store_url, account, instance) -> Launchpad:
    config = {"account": _slug(store, account), "params": {"status": "rejected"}, "where": ["stage=review"]}
    return Launchpad(instance, store_url, config)


def test_filter_selects_exactly_the_matching_records_of_the_account(store, account, seed, other_seed, create) -> None:
    review = seed.applications(3, stage="review")
    seed.applications(2, stage="interview")
    seed.applications(1, stage="review", deleted_at=datetime.now(UTC))
    other_seed.applications(2, stage="review")
    job = create(
        filter=["stage=review", {"field": "status", "op": "=", "value": "active"}],
        mode="dry_run",
    )
    assert job["total_count"] == 3
    assert sorted(_items(seed, job["id"])) == sorted(review)
    assert job["filter"]["words"] == "applications where stage is review and status is active"
    assert job["filter"]["where"][0] == {"field": "stage", "op": "=", "value": "review"}
    # the filter is kept on the bulk job, as get shows it
    assert service.get_job(store, account, uuid.UUID(job["id"]))["filter"] == job["filter"]


def test_filter_never_selects_another_accounts_records(store, account, seed, other_seed, create) -> None:
    theirs = other_seed.applications(2, stage="review")
    with pytest.raises(service.InvalidRequest, match="no record matches the filter"):
        create(
            filter=["stage=review"],
        )
    with pytest.raises(service.InvalidRequest, match="account_id"):
        create(
            filter=[f"account_id={other_seed.account_id}"],
        )
    assert {r.status for r in other_seed.rows(schema.applications, theirs).values()} == {"active"}
    with store.engine.connect() as conn:
        mine = conn.scalar(
            sa.select(sa.func.count()).select_from(schema.bulk_jobs).where(schema.bulk_jobs.c.account_id == account)
        )
    assert mine == 0, "a refused create stores nothing"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(["colour=red"], "colour", id="unknown-field"),
        pytest.param(["stage>>review"], "stage", id="bad-operator"),
        pytest.param([], "no condition", id="empty"),
    ],
)
def test_bad_filter_is_one_clear_line(seed, create, spec, message) -> None:
    seed.applications(1, stage="review")
    with pytest.raises(service.InvalidRequest, match=message) as exc:
        create(
            filter=spec,
        )
    assert "\n" not in exc.value.message


def test_ids_and_filter_together_are_refused(seed, create) -> None:
    ids = seed.applications(1, stage="review")
    with pytest.raises(service.InvalidRequest, match="not both"):
        create(filter=["stage=review"], entity_ids=ids)


def _output(result) -> dict:
    return next(
        e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "bulk_operation"
    ).step_output_data.metadata


def _failure(result) -> str:
    return next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").step_failure_data.error.message


@pytest.mark.slow
def test_launchpad_preview_then_execute_applies_exactly_the_previewed_records(
    store, account, seed, instance, launchpad
) -> None:
    review = seed.applications(3, stage="review")
    meta = launchpad.preview()
    assert meta["count"].value == 3 and meta["would_change"].value == 3
    assert sorted(r.data["entity_id"] for r in meta["sample (first 20)"].value.records) == sorted(map(str, review))
    plan_id = meta["plan_id"].value
    assert {r.status for r in seed.rows(schema.applications, review).values()} == {"active"}, "a preview writes nothing"

    # between preview and execute: one previewed record leaves the filter, a new one enters it
    _set(store, review[:1], stage="interview")
    newcomer = seed.applications(1, stage="review")

    done = launchpad.run(mode="execute", plan_id=plan_id)
    assert done.success, _failure(done)
    rows = seed.rows(schema.applications, review + newcomer)
    assert {i for i, r in rows.items() if r.status == "rejected"} == set(review)
    assert rows[newcomer[0]].status == "active"
    job = service.get_job(store, account, uuid.UUID(meta["bulk_job_id"].value))
    assert (job["status"], job["mode"], job["processed_count"]) == ("completed", "execute", 3)
    assert job["dagster_run_id"] == done.run_id
    assert instance.get_run_by_id(done.run_id).tags["bulkops/bulk_job_id"] == job["id"]

    # a plan runs once
    again = launchpad.run(mode="execute", plan_id=plan_id)
    assert not again.success and "already used" in _failure(again)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("plan", "change", "message"),
    [
        pytest.param("0" * 32, {}, "no previewed plan", id="unknown"),
        pytest.param("", {}, "needs plan_id", id="missing"),
        pytest.param(None, {"params": {"status": "hired"}}, "params differ", id="changed-params"),
        pytest.param(None, {"where": ["stage=interview"]}, "filter differ", id="changed-filter"),
    ],
)
def test_launchpad_execute_refuses_unknown_or_changed_plans(seed, launchpad, plan, change, message) -> None:
    ids = seed.applications(2, stage="review")
    plan_id = launchpad.preview()["plan_id"].value if plan is None else plan
    result = launchpad.run(**change, mode="execute", plan_id=plan_id)
    assert not result.success
    assert message in _failure(result)
    assert {r.status for r in seed.rows(schema.applications, ids).values()} == {"active"}


@pytest.mark.slow
def test_launchpad_execute_of_a_plan_by_ids_refuses_other_ids(seed, launchpad) -> None:
    planned, other = seed.applications(2, stage="review"), seed.applications(1, stage="review")
    plan_id = launchpad.preview(where=[], ids=[str(i) for i in planned])["plan_id"].value
    for ids in ([planned[0], other[0]], [*planned, other[0]], planned[:1], []):
        result = launchpad.run(where=[], ids=[str(i) for i in ids], mode="execute", plan_id=plan_id)
        assert not result.success, f"execute with ids {ids} ran plan {plan_id}"
        assert "the config's ids differ from plan" in _failure(result)
    assert {r.status for r in seed.rows(schema.applications, planned + other).values()} == {"active"}
    # the same ids in another order, one repeated, are the plan's
    same = [str(planned[1]), str(planned[0]).upper(), str(planned[1])]
    done = launchpad.run(where=[], ids=same, mode="execute", plan_id=plan_id)
    assert done.success, _failure(done)
    rows = seed.rows(schema.applications, planned + other)
    assert {i for i, r in rows.items() if r.status == "rejected"} == set(planned)


@pytest.mark.slow
def test_launchpad_execute_refuses_a_plan_replaced_by_a_new_preview(store, account, seed, launchpad) -> None:
    seed.applications(2, stage="review")
    meta = launchpad.preview()
    # previewing the bulk job again replaces its plan
    service.preview(store, account, uuid.UUID(meta["bulk_job_id"].value))
    with store.begin() as conn:
        conn.execute(
            schema.bulk_jobs.update()
            .where(schema.bulk_jobs.c.id == uuid.UUID(meta["bulk_job_id"].value))
            .values(plan_id=uuid.uuid4().hex)
        )
    result = launchpad.run(mode="execute", plan_id=meta["plan_id"].value)
    assert not result.success and "preview again" in _failure(result)


@pytest.mark.slow
def test_launchpad_dry_run_reports_and_writes_nothing(seed, launchpad) -> None:
    ids = seed.applications(2, stage="review")
    result = launchpad.run(mode="dry_run")
    assert result.success
    assert _output(result)["processed_count"].value == 2
    assert {r.status for r in seed.rows(schema.applications, ids).values()} == {"active"}


@pytest.mark.slow
def test_api_create_with_filter(store, store_url, account, seed, instance) -> None:
    review = seed.applications(2, stage="review")
    seed.applications(1, stage="interview")
    token = create_token(store, account, name="t").token
    client = TestClient(create_app(store_url, instance=instance))
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "entity_type": "applications",
        "operation": "status_update",
        "params": {"status": "rejected"},
        "filter": ["stage=review"],
        "mode": "preview",
    }
    answer = client.post("/api/bulk-jobs-create", json=body, headers=headers).json()
    assert answer["ok"], answer
    job = answer["result"]
    assert job["total_count"] == 2 and job["filter"]["words"] == "applications where stage is review"
    assert sorted(_items(seed, job["id"])) == sorted(review)
    got = client.get("/api/bulk-jobs-get", params={"id": job["id"]}, headers=headers).json()["result"]
    assert got["filter"] == job["filter"]
    bad = client.post(
        "/api/bulk-jobs-create", json={**body, "filter": [{"field": "nope", "op": "=", "value": "x"}]}, headers=headers
    )
    assert bad.status_code == 422 and "nope" in bad.json()["error"]["message"]
    both = client.post("/api/bulk-jobs-create", json={**body, "entity_ids": [str(review[0])]}, headers=headers)
    assert both.status_code == 422 and "not both" in both.json()["error"]["message"]


@pytest.mark.slow
def test_cli_create_with_where(cli_env, store, account, seed) -> None:
    review = seed.applications(2, stage="review")
    seed.applications(1, stage="interview")
    result = CliRunner().invoke(
        main,
        [
            "bulk-jobs",
            "create",
            "applications",
            "status_update",
            "--where",
            "stage=review",
            "--params",
            '{"status": "rejected"}',
            "--mode",
            "preview",
            "--account",
            _slug(store, account),
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output[: result.output.rindex("}") + 1])
    assert plan["total"] == 2
    assert sorted(uuid.UUID(c["entity_id"]) for c in plan["changes"]) == sorted(review)


@pytest.mark.slow
def test_a_crashed_launchpad_execute_leaves_no_bulk_job_processing(
    store, store_url, account, seed, instance, launchpad
) -> None:
    from pipelines.bulk.sensors import bulk_job_failure_sensor
    from resources import RecordStoreResource

    seed.applications(1, stage="review")
    job_id = launchpad.preview()["bulk_job_id"].value
    failed = launchpad.run(mode="execute", plan_id="0" * 32)
    assert not failed.success
    # as if that run had taken the bulk job and then died
    with store.begin() as conn:
        conn.execute(
            schema.bulk_jobs.update()
            .where(schema.bulk_jobs.c.id == uuid.UUID(job_id))
            .values(status="processing", mode="execute", dagster_run_id=failed.run_id)
        )
    context = dg.build_run_status_sensor_context(
        sensor_name=bulk_job_failure_sensor.name,
        dagster_event=failed.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=failed.dagster_run.with_tags({"bulkops/bulk_job_id": job_id}),
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    with context.for_run_failure() as ctx:
        bulk_job_failure_sensor(ctx)
    assert service.get_job(store, account, uuid.UUID(job_id))["status"] == "failed"


@pytest.mark.slow
def test_a_retry_of_the_executing_run_resumes_its_bulk_job(store, account, seed, launchpad) -> None:
    ids = seed.applications(2, stage="review")
    meta = launchpad.preview()
    job_id, plan_id = uuid.UUID(meta["bulk_job_id"].value), meta["plan_id"].value
    # the first attempt of run R confirmed the plan, then a transient fault stopped it
    run_id = str(uuid.uuid4())
    service.confirm(store, account, job_id, plan_id=plan_id, run_id=run_id)
    other = launchpad.run(mode="execute", plan_id=plan_id)
    assert not other.success and "already used" in _failure(other)
    resumed = launchpad.run(run_id=run_id, mode="execute", plan_id=plan_id)
    assert resumed.success, _failure(resumed)
    assert service.get_job(store, account, job_id)["status"] == "completed"
    assert {r.status for r in seed.rows(schema.applications, ids).values()} == {"rejected"}
