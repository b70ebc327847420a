"""Every bulk operation against real SQLite and PostgreSQL, run without Dagster."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.bulk import service


def _run(store, account, **kwargs) -> dict:
    job = service.create_job(store, account, created_by=None, **kwargs)
    return service.run_job_now(store, account, uuid.UUID(job["id"]), batch_size=2)


@pytest.mark.parametrize(
    ("operation", "params", "column", "expected"),
    [
        pytest.param("status_update", {"status": "rejected"}, "status", "rejected", id="status"),
        pytest.param("stage_transition", {"stage": "interview"}, "stage", "interview", id="stage"),
        pytest.param("field_update", {"fields": {"source": "referral"}}, "source", "referral", id="field"),
    ],
)
def test_application_set_operations_change_rows_and_audit(
    seed, store, account, operation, params, column, expected
) -> None:
    ids = seed.applications(5)
    job = _run(store, account, entity_type="applications", operation=operation, entity_ids=ids, params=params)
    assert (job["status"], job["total_count"], job["processed_count"], job["failed_count"]) == ("completed", 5, 5, 0)
    rows = seed.rows(schema.applications, ids)
    assert {getattr(r, column) for r in rows.values()} == {expected}
    audit = seed.audit(job["id"])
    assert sorted(a.entity_id for a in audit) == sorted(ids)
    assert all(a.after == {column: expected} and a.operation == operation for a in audit)
    items = seed.items(job["id"])
    assert [i.status for i in items] == ["succeeded"] * 5
    assert all(i.before is not None for i in items)


def test_soft_delete_sets_deleted_at_and_keeps_rows(seed, store, account) -> None:
    ids = seed.applications(3)
    job = _run(store, account, entity_type="applications", operation="delete", entity_ids=ids)
    assert job["status"] == "completed" and job["failed_count"] == 0
    rows = seed.rows(schema.applications, ids)
    assert len(rows) == 3 and all(r.deleted_at is not None for r in rows.values())
    assert [a.before for a in seed.audit(job["id"])] == [{"deleted_at": None}] * 3


def test_hard_delete_requires_preview_and_confirm(seed, store, account) -> None:
    ids = seed.contracts(2)
    with pytest.raises(service.InvalidRequest):
        service.create_job(
            store,
            account,
            created_by=None,
            entity_type="contracts",
            operation="delete",
            entity_ids=ids,
            params={"hard": True},
        )
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="contracts",
        operation="delete",
        entity_ids=ids,
        params={"hard": True},
        mode="preview",
    )
    plan = service.preview(store, account, job["id"])
    assert plan["would_change"] == 2
    service.confirm(store, account, job["id"], plan_id=plan["plan_id"])
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert done["status"] == "completed" and done["processed_count"] == 2
    assert seed.rows(schema.contracts, ids) == {}
    audit = seed.audit(job["id"])
    assert sorted(a.entity_id for a in audit) == sorted(ids)
    assert all(a.after is None and a.before["id"] for a in audit)


def test_tags_add_remove_set(seed, store, account) -> None:
    cand = seed.candidate()
    _run(store, account, entity_type="contacts", operation="tags_add", entity_ids=[cand], params={"tags": ["a", "b"]})
    assert seed.tags("candidates", cand) == ["a", "b"]
    _run(store, account, entity_type="candidates", operation="tags_remove", entity_ids=[cand], params={"tags": ["a"]})
    assert seed.tags("candidates", cand) == ["b"]
    job = _run(
        store, account, entity_type="candidates", operation="tags_set", entity_ids=[cand], params={"tags": ["x"]}
    )
    assert seed.tags("candidates", cand) == ["x"]
    assert [(a.before, a.after) for a in seed.audit(job["id"])] == [({"tags": ["b"]}, {"tags": ["x"]})]


@pytest.mark.parametrize(
    ("entity_type", "fields"),
    [
        pytest.param("jobs", {"title": "Staff Engineer", "location": "Remote"}, id="jobs"),
        pytest.param("candidates", {"phone": "+1 555"}, id="candidates"),
        pytest.param("contracts", {"terms": {"salary": 10}}, id="contracts-json"),
    ],
)
def test_field_update_per_entity(seed, store, account, entity_type, fields) -> None:
    entity = {"jobs": seed.job, "candidates": seed.candidate, "contracts": lambda: seed.contracts(1)[0]}[entity_type]()
    job = _run(
        store,
        account,
        entity_type=entity_type,
        operation="field_update",
        entity_ids=[entity],
        params={"fields": fields},
    )
    assert job["status"] == "completed" and job["failed_count"] == 0
    row = seed.rows(schema.ENTITY_TABLES[entity_type], [entity])[entity]
    assert {k: getattr(row, k) for k in fields} == fields


@pytest.mark.parametrize(
    ("entity_type", "params"),
    [
        pytest.param("candidates", {"fields": {"email": "x@y.z"}}, id="not-allowed"),
        pytest.param("jobs", {"fields": {}}, id="empty"),
        pytest.param("jobs", {"fields": {"title": None}}, id="null-required"),
    ],
)
def test_field_update_rejects_fields_outside_allow_list(seed, store, account, entity_type, params) -> None:
    with pytest.raises(service.InvalidRequest):
        service.create_job(
            store,
            account,
            created_by=None,
            entity_type=entity_type,
            operation="field_update",
            entity_ids=[uuid.uuid4()],
            params=params,
        )


def test_per_record_db_failure_does_not_stop_the_job(seed, store, account) -> None:
    # (account_id, code) is unique: only the first job can take the code
    ids = [seed.job() for _ in range(4)]
    job = _run(
        store,
        account,
        entity_type="jobs",
        operation="field_update",
        entity_ids=ids,
        params={"fields": {"code": "ENG-1"}},
    )
    assert (job["status"], job["processed_count"], job["failed_count"]) == ("completed", 4, 3)
    items = seed.items(job["id"])
    assert [i.status for i in items] == ["succeeded", "failed", "failed", "failed"]
    assert all(i.error for i in items[1:])
    assert len(seed.audit(job["id"])) == 1
    rows = seed.rows(schema.jobs, ids)
    assert [rows[i].code for i in ids] == ["ENG-1", None, None, None]


def test_ids_of_another_account_fail_as_not_found_and_stay_untouched(seed, other_seed, store, account) -> None:
    mine = seed.applications(2)
    theirs = other_seed.applications(2)
    job = _run(
        store,
        account,
        entity_type="applications",
        operation="status_update",
        entity_ids=mine + theirs,
        params={"status": "archived"},
    )
    assert (job["processed_count"], job["failed_count"]) == (4, 2)
    assert {i.entity_id: (i.status, i.error) for i in seed.items(job["id"])} == {
        **dict.fromkeys(mine, ("succeeded", None)),
        **dict.fromkeys(theirs, ("failed", "not found")),
    }
    assert {r.status for r in other_seed.rows(schema.applications, theirs).values()} == {"active"}
    assert sorted(a.entity_id for a in seed.audit(job["id"])) == sorted(mine)
    with pytest.raises(service.JobNotFound):
        service.get_job(store, other_seed.account_id, job["id"])


def test_trigger_automations_records_outbox_and_moves_stage(seed, store, account) -> None:
    seed.automation("welcome", "send_email", {"template": "welcome"})
    seed.automation("to-offer", "move_stage", {"stage": "offer"})
    ids = seed.applications(2)
    job = _run(
        store,
        account,
        entity_type="applications",
        operation="trigger_automations",
        entity_ids=ids,
        params={"automations": ["welcome", "to-offer"]},
    )
    assert job["status"] == "completed" and job["failed_count"] == 0
    ev = schema.automation_events
    with store.engine.connect() as conn:
        events = conn.execute(sa.select(ev).where(ev.c.bulk_job_id == uuid.UUID(job["id"]))).all()
    assert sorted((e.automation, e.status) for e in events) == [
        ("to-offer", "delivered"),
        ("to-offer", "delivered"),
        ("welcome", "pending"),
        ("welcome", "pending"),
    ]
    assert {r.stage for r in seed.rows(schema.applications, ids).values()} == {"offer"}
    with pytest.raises(service.InvalidRequest):
        service.create_job(
            store,
            account,
            created_by=None,
            entity_type="applications",
            operation="trigger_automations",
            entity_ids=ids,
            params={"automations": ["nope"]},
        )


def test_recollection_creates_request_and_notification(seed, store, account) -> None:
    ids = seed.applications(2)
    job = _run(
        store,
        account,
        entity_type="applications",
        operation="recollection",
        entity_ids=ids,
        params={"fields": ["resume"], "message": "please update"},
    )
    rr, ev = schema.recollection_requests, schema.automation_events
    with store.engine.connect() as conn:
        reqs = conn.execute(sa.select(rr).where(rr.c.bulk_job_id == uuid.UUID(job["id"]))).all()
        events = conn.execute(sa.select(ev).where(ev.c.bulk_job_id == uuid.UUID(job["id"]))).all()
    assert sorted(r.application_id for r in reqs) == sorted(ids)
    assert all(r.fields == ["resume"] and r.status == "requested" for r in reqs)
    assert len(events) == 2 and {e.payload["template"] for e in events} == {"recollection"}


def test_contracts_created_from_hiring_completions(seed, store, account) -> None:
    hired = seed.applications(2, stage="hired")
    done = seed.applications(1, stage="completed")
    applied = seed.applications(1, stage="applied")
    seed.contracts(1, application_id=done[0])
    # empty entity_ids: every hired/completed application without a contract
    job = _run(
        store,
        account,
        entity_type="contracts",
        operation="create",
        entity_ids=[],
        params={"template": "standard", "terms": {"hours": 40}},
    )
    assert (job["total_count"], job["processed_count"], job["failed_count"]) == (2, 2, 0)
    explicit = _run(
        store,
        account,
        entity_type="contracts",
        operation="create",
        entity_ids=hired + done + applied,
        params={"template": "standard"},
    )
    assert (explicit["processed_count"], explicit["skipped_count"]) == (4, 4)
    c = schema.contracts
    with store.engine.connect() as conn:
        made = conn.execute(sa.select(c).where(c.c.bulk_job_id == uuid.UUID(job["id"]))).all()
    assert sorted(m.application_id for m in made) == sorted(hired)
    assert all(m.template == "standard" and m.terms == {"hours": 40} for m in made)


def test_contract_status_update(seed, store, account) -> None:
    ids = seed.contracts(3)
    job = _run(
        store, account, entity_type="contracts", operation="status_update", entity_ids=ids, params={"status": "sent"}
    )
    assert job["status"] == "completed"
    assert {r.status for r in seed.rows(schema.contracts, ids).values()} == {"sent"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        pytest.param({"entity_type": "planets", "operation": "delete"}, service.InvalidRequest, id="entity-type"),
        pytest.param({"entity_type": "jobs", "operation": "status_update"}, service.InvalidRequest, id="operation"),
        pytest.param(
            {"entity_type": "applications", "operation": "status_update", "params": {}},
            service.InvalidRequest,
            id="missing-param",
        ),
        pytest.param(
            {"entity_type": "applications", "operation": "delete", "mode": "later"}, service.InvalidRequest, id="mode"
        ),
    ],
)
def test_create_rejects_bad_requests(store, account, kwargs, error) -> None:
    with pytest.raises(error) as info:
        service.create_job(store, account, created_by=None, entity_ids=[uuid.uuid4()], **kwargs)
    assert info.value.http_status == 422 and info.value.code == "invalid_request"
