"""Rolling back an import on SQLite and PostgreSQL: exact before-images, conflicts, what stays."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.bulk import service
from pipelines.imports.engine import ImportFailed, ImportOptions, rollback_import, run_import
from tests.imports.helpers import apps_csv, count

FIRST = [
    "R-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01 09:30,1",
    "R-2,Bob,Two,bob@x.org,J-1,Applied,2026-01-02 10:00,2",
    "R-3,Cy,Three,cy@x.org,J-2,Applied,2026-01-03 11:15,3",
]
# every application field changes: stage, job, applied_at, data; and one new application
SECOND = [
    "R-1,Ann,One,ann@x.org,J-9,Offer,2026-02-01 08:00,7",
    "R-2,Bob,Two,bob@x.org,J-9,Interview,2026-02-02 08:00,8",
    "R-3,Cy,Three,cy@x.org,J-9,Hired,2026-02-03 08:00,9",
    "R-4,Di,Four,di@x.org,J-9,Applied,2026-02-04 08:00,4",
]
COLUMNS = (
    "id",
    "candidate_id",
    "job_id",
    "stage",
    "status",
    "source",
    "applied_at",
    "external_id",
    "data",
    "deleted_at",
    "import_id",
)


def _apps(store, account) -> dict[str, tuple]:
    t = schema.applications
    with store.engine.connect() as c:
        return {
            r.external_id: tuple(getattr(r, k) for k in COLUMNS)
            for r in c.execute(sa.select(t).where(t.c.account_id == account))
        }


def _two_imports(store, account, tmp_path):
    first = run_import(
        store, account, apps_csv(tmp_path, FIRST, "first.csv"), ImportOptions(), failed_rows_dir=tmp_path
    )
    before = _apps(store, account)
    second = run_import(
        store, account, apps_csv(tmp_path, SECOND, "second.csv"), ImportOptions(), failed_rows_dir=tmp_path
    )
    assert (second.created, second.updated) == (1, 3)
    return first, second, before


def _changed_since(store, account, tmp_path):
    """Both imports, then a bulk job moves R-1 (updated by the second import) and R-4 (created by it)."""
    _, second, before = _two_imports(store, account, tmp_path)
    after = _apps(store, account)
    _bulk(store, account, [after["R-1"][0], after["R-4"][0]])
    return second, before


def _bulk(store, account, ids, operation="stage_transition", params=None) -> None:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation=operation,
        entity_ids=ids,
        params=params or {"stage": "withdrawn"},
    )
    assert service.run_job_now(store, account, uuid.UUID(job["id"]), batch_size=10)["status"] == "completed"


def test_rollback_gives_back_every_field_exactly(store, account, tmp_path) -> None:
    _, second, before = _two_imports(store, account, tmp_path)
    out = rollback_import(store, account, second.import_id, actor="tester")
    assert out["restored"]["applications"] == 3 and out["deleted"]["applications"] == 1
    assert out["deleted"]["form_submissions"] == 1 and out["deleted"]["candidates"] == 1 and out["deleted"]["jobs"] == 1
    # uuids, timestamps, JSON and text: the rows are what the first import left
    assert _apps(store, account) == before
    assert (
        count(store, "users", account),
        count(store, "jobs", account),
        count(store, "form_submissions", account),
    ) == (3, 2, 3)


def test_records_changed_since_are_conflicts_left_alone_unless_forced(store, account, tmp_path) -> None:
    second, before = _changed_since(store, account, tmp_path)
    out = rollback_import(store, account, second.import_id, actor="tester")
    assert out["conflicts"]["applications"] == 2
    assert out["restored"]["applications"] == 2 and out["deleted"]["applications"] == 0
    now = _apps(store, account)
    assert now["R-1"][3] == "withdrawn" and now["R-4"][3] == "withdrawn"  # the bulk job's work stays
    assert now["R-2"] == before["R-2"] and now["R-3"] == before["R-3"]
    assert count(store, "users", account) == 4  # R-4's candidate: its application stays


def test_force_rolls_back_records_changed_since(store, account, tmp_path) -> None:
    second, before = _changed_since(store, account, tmp_path)
    out = rollback_import(store, account, second.import_id, actor="tester", force=True)
    assert out["restored"]["applications"] == 3 and out["deleted"]["applications"] == 1
    assert _apps(store, account) == before


def test_changes_of_an_import_rolled_back_since_are_no_conflict(store, account, tmp_path) -> None:
    first, second, _ = _two_imports(store, account, tmp_path)
    rollback_import(store, account, second.import_id, actor="tester")
    out = rollback_import(store, account, first.import_id, actor="tester")
    assert sum(out["conflicts"].values()) == 0
    assert out["deleted"]["applications"] == 3
    assert [count(store, t, account) for t in ("applications", "form_submissions", "users", "jobs")] == [0, 0, 0, 0]


def test_applications_other_records_point_at_stay(store, account, tmp_path) -> None:
    first = run_import(
        store, account, apps_csv(tmp_path, FIRST, "first.csv"), ImportOptions(), failed_rows_dir=tmp_path
    )
    apps = _apps(store, account)
    with store.begin() as c:
        c.execute(
            schema.recollection_requests.insert().values(
                id=uuid.uuid4(), account_id=account, application_id=apps["R-2"][0], candidate_id=apps["R-2"][1]
            )
        )
    out = rollback_import(store, account, first.import_id, actor="tester", force=True)
    assert (out["deleted"]["applications"], out["kept"]["applications"], out["kept"]["candidates"]) == (2, 1, 1)
    assert list(_apps(store, account)) == ["R-2"]
    assert count(store, "form_submissions", account) == 1 and count(store, "users", account) == 1


def test_rollback_is_audited_and_refused_twice(store, account, tmp_path) -> None:
    _, second, _ = _two_imports(store, account, tmp_path)
    rollback_import(store, account, second.import_id, actor="tester")
    a = schema.audit_log
    with store.engine.connect() as c:
        rows = c.execute(
            sa.select(a.c.operation, a.c.entity_type, a.c.before, a.c.after)
            .join(schema.change_sets, schema.change_sets.c.id == a.c.change_set_id)
            .where(schema.change_sets.c.rollback_of == second.import_id, a.c.actor == "tester")
        ).all()
    restores = [r for r in rows if r.operation == "import.rollback.restore"]
    deletes = [r for r in rows if r.operation == "import.rollback.delete"]
    assert len(restores) == 3 and {r.before["stage"] for r in restores} == {"offer", "interview", "hired"}
    assert {r.after["stage"] for r in restores} == {"applied"}
    assert sorted(r.entity_type for r in deletes) == ["applications", "candidates", "form_submissions", "jobs"]
    assert all(r.before and r.after is None for r in deletes)
    with pytest.raises(ImportFailed, match="already rolled back"):
        rollback_import(store, account, second.import_id, actor="tester")


def test_a_forced_second_pass_undoes_only_what_the_first_left(store, account, tmp_path) -> None:
    second, before = _changed_since(store, account, tmp_path)
    first_pass = rollback_import(store, account, second.import_id, actor="tester")
    assert first_pass["conflicts"]["applications"] == 2
    with pytest.raises(ImportFailed, match="--force"):
        rollback_import(store, account, second.import_id, actor="tester")

    out = rollback_import(store, account, second.import_id, actor="tester", force=True)

    assert out["restored"]["applications"] == 1 and out["deleted"]["applications"] == 1  # nothing else
    assert _apps(store, account) == before
    with pytest.raises(ImportFailed, match="already rolled back"):
        rollback_import(store, account, second.import_id, actor="tester", force=True)
