"""Preview/confirm, dry run, rollback and cancel requests, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.bulk import service


def _counts(store) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        return tuple(
            conn.scalar(sa.select(sa.func.count()).select_from(t))
            for t in (schema.audit_log, schema.tags, schema.automation_events)
        )


def test_preview_then_confirm_skips_records_changed_in_between(seed, store, account) -> None:
    ids = seed.applications(4)
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        entity_ids=ids,
        params={"status": "rejected"},
        mode="preview",
    )
    assert job["status"] == "pending" and job["awaiting_confirmation"] and job["plan_id"]
    plan = service.preview(store, account, job["id"])
    assert plan["total"] == 4 and plan["would_change"] == 4
    assert plan["changes"][0] == {
        "entity_id": str(ids[0]),
        "before": {"status": "active"},
        "after": {"status": "rejected"},
    }
    # nothing ran yet
    assert {r.status for r in seed.rows(schema.applications, ids).values()} == {"active"}
    with store.begin() as conn:
        conn.execute(schema.applications.update().where(schema.applications.c.id == ids[2]).values(status="hired"))
    with pytest.raises(service.InvalidState):
        service.confirm(store, account, job["id"], plan_id="stale")
    confirmed = service.confirm(store, account, job["id"], plan_id=plan["plan_id"])
    assert confirmed["mode"] == "execute" and not confirmed["awaiting_confirmation"]
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert (done["processed_count"], done["skipped_count"], done["failed_count"]) == (4, 1, 0)
    rows = seed.rows(schema.applications, ids)
    assert [rows[i].status for i in ids] == ["rejected", "rejected", "hired", "rejected"]
    skipped = [i for i in seed.items(job["id"]) if i.status == "skipped"]
    assert [s.entity_id for s in skipped] == [ids[2]] and "changed since preview" in skipped[0].error
    assert sorted(a.entity_id for a in seed.audit(job["id"])) == sorted([ids[0], ids[1], ids[3]])
    with pytest.raises(service.InvalidState):
        service.confirm(store, account, job["id"], plan_id=plan["plan_id"])


def test_preview_job_does_not_run_before_confirm(seed, store, account) -> None:
    ids = seed.applications(2)
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation="delete", entity_ids=ids, mode="preview"
    )
    assert service.run_job_now(store, account, uuid.UUID(job["id"]))["status"] == "pending"
    assert all(r.deleted_at is None for r in seed.rows(schema.applications, ids).values())


@pytest.mark.parametrize(
    ("entity_type", "operation", "params"),
    [
        pytest.param("applications", "status_update", {"status": "on_hold"}, id="status"),
        pytest.param("applications", "delete", {}, id="soft-delete"),
        pytest.param("applications", "tags_add", {"tags": ["t"]}, id="tags"),
        pytest.param("applications", "recollection", {}, id="recollection"),
    ],
)
def test_dry_run_writes_nothing_but_reports(seed, other_seed, store, account, entity_type, operation, params) -> None:
    ids = seed.applications(3) + other_seed.applications(1)
    before_rows = seed.rows(schema.applications, ids)
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type=entity_type,
        operation=operation,
        entity_ids=ids,
        params=params,
        mode="dry_run",
    )
    counts = _counts(store)
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("completed", 4, 1)
    assert seed.rows(schema.applications, ids) == before_rows
    assert _counts(store) == counts
    report = service.preview(store, account, job["id"])
    assert report["would_change"] == 3 and report["not_found"] == 1
    assert len(report["changes"]) == 3 and report["problems"][0]["error"] == "not found"


@pytest.mark.parametrize(
    ("operation", "params", "check"),
    [
        pytest.param("status_update", {"status": "rejected"}, lambda r, t: r.status == "active", id="status"),
        pytest.param("delete", {}, lambda r, t: r.deleted_at is None, id="soft-delete"),
        pytest.param("tags_set", {"tags": ["new"]}, lambda r, t: t == ["old"], id="tags"),
    ],
)
def test_rollback_round_trip(seed, store, account, operation, params, check) -> None:
    ids = seed.applications(3)
    for i in ids:
        with store.begin() as conn:
            conn.execute(
                schema.tags.insert().values(account_id=account, entity_type="applications", entity_id=i, tag="old")
            )
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation=operation, entity_ids=ids, params=params
    )
    with pytest.raises(service.InvalidState):
        service.create_rollback(store, account, job["id"])
    service.run_job_now(store, account, uuid.UUID(job["id"]))
    actor = uuid.uuid4()
    rollback = service.create_rollback(store, account, job["id"], created_by=actor)
    assert rollback["operation"] == "rollback" and rollback["rollback_of"] == job["id"] and rollback["total_count"] == 3
    with pytest.raises(service.InvalidState):
        service.create_rollback(store, account, job["id"])
    done = service.run_job_now(store, account, uuid.UUID(rollback["id"]))
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("completed", 3, 0)
    rows = seed.rows(schema.applications, ids)
    assert all(check(rows[i], seed.tags("applications", i)) for i in ids)
    audit = seed.audit(rollback["id"])
    # the spine's rollback writes them: one operation name for every change set's rollback
    assert len(audit) == 3 and {a.actor for a in audit} == {str(actor)}
    assert {a.operation for a in audit} == {"bulk_job.rollback.restore"}
    items = seed.items(rollback["id"])
    assert {i.status for i in items} == {"succeeded"} and all(i.before and i.after for i in items)


def test_rollback_skips_records_changed_after_the_job(seed, store, account) -> None:
    ids = seed.applications(2)
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="stage_transition",
        entity_ids=ids,
        params={"stage": "offer"},
    )
    service.run_job_now(store, account, uuid.UUID(job["id"]))
    # a later change is a change set's (every write to records is audited): here another bulk job
    later = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="stage_transition",
        entity_ids=ids[1:],
        params={"stage": "hired"},
    )
    service.run_job_now(store, account, uuid.UUID(later["id"]))
    rollback = service.create_rollback(store, account, job["id"])
    done = service.run_job_now(store, account, uuid.UUID(rollback["id"]))
    assert (done["processed_count"], done["skipped_count"]) == (2, 1)
    rows = seed.rows(schema.applications, ids)
    assert (rows[ids[0]].stage, rows[ids[1]].stage) == ("applied", "hired")
    skipped = [i for i in seed.items(rollback["id"]) if i.status == "skipped"]
    assert [s.entity_id for s in skipped] == [ids[1]] and "changed since the bulk job" in skipped[0].error


def test_rollback_undoes_a_record_changed_since_and_changed_back_by_a_rolled_back_job(seed, store, account) -> None:
    # the conflict check reads the audit log: a later change undone by its own rollback is no conflict
    ids = seed.applications(1)

    def run(operation, params, of=None):
        made = (
            service.create_rollback(store, account, of)
            if of
            else service.create_job(
                store,
                account,
                created_by=None,
                entity_type="applications",
                operation=operation,
                entity_ids=ids,
                params=params,
            )
        )
        return service.run_job_now(store, account, uuid.UUID(made["id"]))

    first = run("status_update", {"status": "on_hold"})
    later = run("stage_transition", {"stage": "interview"})
    assert run(None, None, of=later["id"])["succeeded_count"] == 1
    back = run(None, None, of=first["id"])
    assert (back["succeeded_count"], back["skipped_count"]) == (1, 0)
    row = seed.rows(schema.applications, ids)[ids[0]]
    assert (row.status, row.stage) == ("active", "applied")


def test_rollback_of_created_contracts_and_recollection(seed, store, account) -> None:
    apps = seed.applications(2, stage="hired")
    made = service.run_job_now(
        store,
        account,
        uuid.UUID(
            service.create_job(
                store,
                account,
                created_by=None,
                entity_type="contracts",
                operation="create",
                entity_ids=apps,
                params={"template": "t"},
            )["id"]
        ),
    )
    back = service.create_rollback(store, account, made["id"])
    done = service.run_job_now(store, account, uuid.UUID(back["id"]))
    assert (done["processed_count"], done["succeeded_count"]) == (2, 2)
    c = schema.contracts
    with store.engine.connect() as conn:
        contracts = conn.execute(sa.select(c).where(c.c.bulk_job_id == uuid.UUID(made["id"]))).all()
    # the registry's rule for contracts: a rollback soft-deletes what it created
    assert sorted(r.application_id for r in contracts) == sorted(apps)
    assert all(r.deleted_at is not None for r in contracts)
    assert {(i.status, i.after["deleted_at"] is not None) for i in seed.items(back["id"])} == {("succeeded", True)}
    rec = service.run_job_now(
        store,
        account,
        uuid.UUID(
            service.create_job(
                store, account, created_by=None, entity_type="applications", operation="recollection", entity_ids=apps
            )["id"]
        ),
    )
    back = service.create_rollback(store, account, rec["id"])
    assert service.run_job_now(store, account, uuid.UUID(back["id"]))["succeeded_count"] == 2
    assert {i.after["status"] for i in seed.items(back["id"])} == {"cancelled"}
    rr = schema.recollection_requests
    with store.engine.connect() as conn:
        assert {r.status for r in conn.execute(sa.select(rr).where(rr.c.bulk_job_id == uuid.UUID(rec["id"])))} == {
            "cancelled"
        }


def test_cancel_pending_job_and_refuse_finished(seed, store, account) -> None:
    ids = seed.applications(2)
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation="delete", entity_ids=ids
    )
    cancelled = service.request_cancel(store, account, job["id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"]
    assert service.run_job_now(store, account, uuid.UUID(job["id"]))["status"] == "cancelled"
    assert all(r.deleted_at is None for r in seed.rows(schema.applications, ids).values())
    with pytest.raises(service.InvalidState):
        service.request_cancel(store, account, job["id"])


def test_list_jobs_and_failed_items_csv(seed, other_seed, store, account) -> None:
    ids = seed.applications(1) + other_seed.applications(2)
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation="delete", entity_ids=ids
    )
    service.run_job_now(store, account, uuid.UUID(job["id"]))
    text = "".join(service.iter_failed_items_csv(store, account, job["id"]))
    assert text == (
        f"entity_id,error,seq,status,_original\n{ids[1]},not found,1,failed,\n{ids[2]},not found,2,failed,\n"
    )
    listed = service.list_jobs(store, account)
    assert [j["id"] for j in listed] == [job["id"]] and "entity_ids" not in listed[0]
    assert service.list_jobs(store, account, status="pending") == []
    assert service.get_job(store, account, job["id"], include_entity_ids=True)["entity_ids"] == [str(i) for i in ids]
    with pytest.raises(service.JobNotFound):
        list(service.iter_failed_items_csv(store, other_seed.account_id, job["id"]))
    with pytest.raises(service.JobNotFound):
        service.get_job(store, account, "not-a-uuid")
