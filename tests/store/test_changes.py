"""The change-set spine on SQLite and PostgreSQL: the audit writer, the conflict check, and the
one rollback undoing real bulk jobs and imports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, schema
from pipelines.bulk import service
from pipelines.imports.engine import ImportOptions, run_import
from tests.bulk.conftest import Seeder
from tests.imports.helpers import apps_csv

a = schema.audit_log


@pytest.fixture
def seed(store: RecordStore, account: uuid.UUID) -> Seeder:
    return Seeder(store, account)


def _job(
    store: RecordStore, account: uuid.UUID, entity_type: str, operation: str, ids: list, params: dict
) -> uuid.UUID:
    job = service.create_job(
        store, account, created_by=None, entity_type=entity_type, operation=operation, entity_ids=ids, params=params
    )
    done = service.run_job_now(store, account, uuid.UUID(job["id"]), batch_size=3)
    assert done["status"] == "completed", done
    return uuid.UUID(job["id"])


def _undo(store: RecordStore, account: uuid.UUID, target: uuid.UUID, force: bool = False) -> changes.RollbackResult:
    with store.begin() as conn:
        return changes.rollback(conn, target, account_id=account, actor="tester", force=force)


def _audit(store: RecordStore, change_set_id: uuid.UUID) -> list[sa.Row]:
    with store.engine.connect() as c:
        return c.execute(sa.select(a).where(a.c.change_set_id == change_set_id).order_by(a.c.id)).all()


def _values(seed: Seeder, table: sa.Table, ids: list, column: str) -> list:
    rows = seed.rows(table, ids)
    return [getattr(rows[i], column) for i in ids]


# -- the audit writer


def test_the_audit_writer_links_rows_to_their_change_set_from_a_select_and_from_a_list(store, account) -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    ids = [uuid.uuid4() for _ in range(3)]
    with store.begin() as conn:
        cs = changes.open_change_set(conn, account_id=account, kind="document_import", actor="alice")
        src = sa.select(
            schema.accounts.c.id.label("entity_id"),
            sa.null().label("before"),
            (
                sa.func.jsonb_build_object("slug", schema.accounts.c.slug)
                if store.dialect == "postgresql"
                else sa.func.json_object("slug", schema.accounts.c.slug)
            ).label("after"),
        ).where(schema.accounts.c.id == account)
        assert conn.execute(changes.audit_insert(cs, "document.create", "accounts", src, now=when)).rowcount == 1
        rows = [("candidates", i, {"phone": None}, {"phone": str(n)}) for n, i in enumerate(ids)]
        assert changes.write_audit_rows(conn, cs, "document.update", rows, now=when) == 3
    got = _audit(store, cs.id)
    assert [(r.operation, r.entity_type, r.actor, r.occurred_at.replace(tzinfo=UTC)) for r in got] == [
        ("document.create", "accounts", "alice", when)
    ] + [("document.update", "candidates", "alice", when)] * 3
    with store.engine.connect() as c:
        slug = c.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account))
    assert (got[0].entity_id, got[0].before, got[0].after) == (account, None, {"slug": slug})
    assert [r.after["phone"] for r in got[1:]] == ["0", "1", "2"]
    # the change set is the rows' one link (migration 0013)
    assert {r.change_set_id for r in got} == {cs.id}
    assert not {"import_id", "bulk_job_id", "sync_run_id"} & set(got[0]._fields)


def test_an_imports_audit_rows_name_the_import_as_their_change_set(store, account) -> None:
    import_id = uuid.uuid4()
    with store.begin() as conn:
        cs = changes.open_change_set(conn, id=import_id, account_id=account, kind="import", actor="bob")
        changes.write_audit_rows(conn, cs, "import.update", [("jobs", uuid.uuid4(), {}, {})], now=datetime.now(UTC))
    [row] = _audit(store, import_id)
    assert (row.change_set_id, row.actor, row.operation) == (import_id, "bob", "import.update")


@pytest.mark.postgres
def test_the_audit_writer_takes_a_data_modifying_cte_on_postgresql(pg_url) -> None:
    # PostgreSQL writes a record and its audit row in one statement (SQLite has no such CTE)
    store = RecordStore(pg_url)
    account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    job = Seeder(store, account).job()
    t = schema.jobs
    with store.begin() as conn:
        cs = changes.open_change_set(conn, account_id=account, kind="document_import")
        moved = (
            t.update()
            .where(t.c.id == job)
            .values(status="closed")
            .returning(
                t.c.id.label("entity_id"),
                sa.func.jsonb_build_object("status", "open").label("before"),
                sa.func.jsonb_build_object("status", t.c.status).label("after"),
            )
            .cte("moved")
        )
        conn.execute(changes.audit_insert(cs, "document.update", "jobs", moved, now=datetime.now(UTC)))
    [row] = _audit(store, cs.id)
    assert (row.entity_id, row.before, row.after) == (job, {"status": "open"}, {"status": "closed"})
    assert Seeder(store, account).rows(t, [job])[job].status == "closed"
    store.dispose()


# -- the conflict check


def _changed(store, account, change_set_id, entity_id) -> bool:
    with store.engine.connect() as conn:
        check = changes.changed_since(
            change_set_id, "applications", sa.literal(entity_id, sa.Uuid()), account_id=account
        )
        return conn.scalar(sa.select(check))


def test_changed_since_sees_later_change_sets_and_not_undone_ones(store, account, seed) -> None:
    ids = seed.applications(2, status="active")
    first = _job(store, account, "applications", "status_update", ids, {"status": "on_hold"})
    assert not _changed(store, account, first, ids[0])
    second = _job(store, account, "applications", "stage_transition", ids[:1], {"stage": "interview"})
    assert _changed(store, account, first, ids[0]) and not _changed(store, account, first, ids[1])
    assert not _changed(store, account, second, ids[0])
    # the bulk job's own rollback undoes the second: its change and the undo net out
    back = service.create_rollback(store, account, second)
    assert service.run_job_now(store, account, uuid.UUID(back["id"]))["status"] == "completed"
    assert not _changed(store, account, first, ids[0])


def test_an_undo_of_another_record_never_counts_as_an_undo_of_this_one(store, account, seed) -> None:
    x, y = seed.applications(2, status="active")
    first = _job(store, account, "applications", "status_update", [x, y], {"status": "on_hold"})
    second = _job(store, account, "applications", "stage_transition", [x, y], {"stage": "interview"})
    third = _job(store, account, "applications", "field_update", [x], {"fields": {"source": "referral"}})
    # the second's rollback restores y only: x changed again since (the third), a conflict left alone
    back = service.create_rollback(store, account, second)
    assert service.run_job_now(store, account, uuid.UUID(back["id"]))["status"] == "completed"
    back = service.create_rollback(store, account, third)
    assert service.run_job_now(store, account, uuid.UUID(back["id"]))["status"] == "completed"
    # x: the third's change is undone, the second's stands; y: the second's change is undone
    assert _changed(store, account, first, x)
    assert not _changed(store, account, first, y)
    # the same check inside a rollback's statement over the records: x is a conflict, y is restored
    back = service.run_job_now(store, account, uuid.UUID(service.create_rollback(store, account, first)["id"]))
    assert (back["succeeded_count"], back["skipped_count"]) == (1, 1)
    rows = seed.rows(schema.applications, [x, y])
    assert (rows[x].status, rows[y].status) == ("on_hold", "active")


# -- one rollback for bulk jobs


def test_rollback_of_a_status_update_restores_every_record_and_is_a_change_set(store, account, seed) -> None:
    ids = seed.applications(5, status="active")
    job = _job(store, account, "applications", "status_update", ids, {"status": "rejected"})
    assert set(_values(seed, schema.applications, ids, "status")) == {"rejected"}

    out = _undo(store, account, job)

    assert out.counts["restored"]["applications"] == 5 and out.conflicts == []
    assert set(_values(seed, schema.applications, ids, "status")) == {"active"}
    audit = _audit(store, out.change_set.id)
    assert {(r.operation, r.before["status"], r.after["status"], r.change_set_id) for r in audit} == {
        ("bulk_job.rollback.restore", "rejected", "active", out.change_set.id)
    }
    with store.engine.connect() as conn:
        shown = changes.describe(conn, out.change_set.id)
    assert (shown["kind"], shown["status"], shown["rollback_of"], shown["actor"]) == (
        "rollback",
        "completed",
        job,
        "tester",
    )
    assert shown["counts"]["restored"]["applications"] == 5


def test_rollback_of_a_soft_delete_brings_the_records_back(store, account, seed) -> None:
    ids = [seed.candidate() for _ in range(3)]
    job = _job(store, account, "candidates", "delete", ids, {})
    assert None not in _values(seed, schema.users, ids, "deleted_at")
    out = _undo(store, account, job)
    assert out.counts["restored"]["candidates"] == 3
    assert _values(seed, schema.users, ids, "deleted_at") == [None, None, None]


def test_rollback_of_tags_gives_each_record_its_tags_back(store, account, seed) -> None:
    ids = seed.applications(3)
    _job(store, account, "applications", "tags_add", ids[:1], {"tags": ["old"]})
    job = _job(store, account, "applications", "tags_set", ids, {"tags": ["x", "y"]})
    assert [seed.tags("applications", i) for i in ids] == [["x", "y"]] * 3
    out = _undo(store, account, job)
    assert out.counts["restored"]["applications"] == 3
    assert [seed.tags("applications", i) for i in ids] == [["old"], [], []]
    restores = _audit(store, out.change_set.id)
    assert sorted((r.before["tags"], r.after["tags"]) for r in restores) == [
        (["x", "y"], []),
        (["x", "y"], []),
        (["x", "y"], ["old"]),
    ]


def test_rollback_of_a_contract_create_soft_deletes_the_contracts_it_created(store, account, seed) -> None:
    hired = seed.applications(2, stage="hired")
    job = _job(
        store, account, "contracts", "create", hired, {"template": "std", "status": "draft", "terms": {"days": 5}}
    )
    with store.engine.connect() as conn:
        made = conn.scalars(sa.select(schema.contracts.c.id).where(schema.contracts.c.bulk_job_id == job)).all()
    assert len(made) == 2
    out = _undo(store, account, job)
    assert out.counts["deleted"]["contracts"] == 2
    # contracts are soft-deleted (the registry's `rollback_created` rule): the rows stay
    rows = seed.rows(schema.contracts, made)
    assert len(rows) == 2 and all(r.deleted_at is not None for r in rows.values())
    deletes = _audit(store, out.change_set.id)
    assert {(r.operation, r.before["deleted_at"], r.after["deleted_at"] is not None) for r in deletes} == {
        ("bulk_job.rollback.delete", None, True)
    }
    # a second pass finds nothing left to undo
    again = _undo(store, account, job, force=True)
    assert again.counts["deleted"]["contracts"] == 0


def test_an_imports_rollback_soft_deletes_the_contracts_it_created_and_deletes_the_rest(
    store, account, tmp_path
) -> None:
    # the registry's rule is per entity, whichever change set created the record
    path = tmp_path / "contracts.csv"
    path.write_text("Contract ID,Status\nK-1,draft\nK-2,sent\n")
    imp = run_import(store, account, path, ImportOptions(entity="contracts"), failed_rows_dir=tmp_path)
    apps = run_import(store, account, apps_csv(tmp_path, ROWS), ImportOptions(), failed_rows_dir=tmp_path)
    c = schema.contracts
    assert _undo(store, account, imp.import_id).counts["deleted"]["contracts"] == 2
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(c.c.external_id, c.c.deleted_at).where(c.c.account_id == account)).all()
    assert sorted(k.external_id for k in kept) == ["K-1", "K-2"] and all(k.deleted_at for k in kept)
    assert _undo(store, account, apps.import_id).counts["deleted"]["applications"] == 2
    with store.engine.connect() as conn:
        left = conn.scalar(sa.select(sa.func.count()).where(schema.applications.c.account_id == account))
    assert left == 0


def test_rollback_of_a_recollection_closes_its_requests(store, account, seed) -> None:
    ids = seed.applications(2)
    job = _job(store, account, "applications", "recollection", ids, {"fields": ["phone"], "message": "please"})
    out = _undo(store, account, job)
    assert out.counts["closed"]["recollection_requests"] == 2
    r = schema.recollection_requests
    with store.engine.connect() as conn:
        assert set(conn.scalars(sa.select(r.c.status).where(r.c.bulk_job_id == job))) == {"cancelled"}
    # the applications themselves were not changed by it
    assert out.counts["restored"]["applications"] == 0 and out.counts["deleted"]["applications"] == 0


def test_records_changed_since_are_listed_conflicts_unless_forced(store, account, seed) -> None:
    ids = seed.applications(4, status="active", stage="applied")
    job = _job(store, account, "applications", "status_update", ids, {"status": "on_hold"})
    _job(store, account, "applications", "stage_transition", ids[:2], {"stage": "interview"})

    out = _undo(store, account, job)

    assert out.counts["conflicts"]["applications"] == 2 and out.counts["restored"]["applications"] == 2
    assert sorted(out.conflicts) == sorted(("applications", i) for i in ids[:2])
    assert _values(seed, schema.applications, ids, "status") == ["on_hold", "on_hold", "active", "active"]

    # a forced pass undoes just what the first left; the later job's stage stays its own
    forced = _undo(store, account, job, force=True)
    assert forced.counts["restored"]["applications"] == 2 and forced.conflicts == []
    assert _values(seed, schema.applications, ids, "status") == ["active"] * 4
    assert _values(seed, schema.applications, ids, "stage") == ["interview", "interview", "applied", "applied"]


def test_a_rollback_is_refused_for_another_account_or_a_rollback(store, account, seed) -> None:
    ids = seed.applications(1)
    job = _job(store, account, "applications", "status_update", ids, {"status": "archived"})
    other = store.ensure_account(f"o-{uuid.uuid4().hex[:10]}")
    with pytest.raises(changes.RollbackRefused, match="no change set"):
        _undo(store, other, job)
    out = _undo(store, account, job)
    with pytest.raises(changes.RollbackRefused, match="is a rollback"):
        _undo(store, account, out.change_set.id)


# -- imports and bulk jobs together


ROWS = ["S-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1", "S-2,Bob,Two,bob@x.org,J-1,Applied,2026-01-02,2"]


def test_every_writer_names_its_change_set_on_its_audit_rows(store, account, tmp_path) -> None:
    # the import's creates and updates, a bulk job set-based on PostgreSQL (Core on SQLite), and
    # a bulk job on the Core path on both
    imp = run_import(store, account, apps_csv(tmp_path, ROWS, "a.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    again = [ROWS[0][:-1] + "3", ROWS[1]]
    re = run_import(store, account, apps_csv(tmp_path, again, "b.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    t = schema.applications
    with store.engine.connect() as conn:
        ids = conn.scalars(sa.select(t.c.id).where(t.c.import_id == imp.import_id)).all()
    moved = _job(store, account, "applications", "status_update", ids, {"status": "rejected"})
    tagged = _job(store, account, "applications", "tags_add", ids, {"tags": ["vip"]})
    with store.engine.connect() as c:
        rows = c.execute(sa.select(a).where(a.c.account_id == account)).all()
    by = {}
    for r in rows:
        assert r.change_set_id in {imp.import_id, re.import_id, moved, tagged}, r
        by.setdefault(r.change_set_id, set()).add(r.operation)
    assert by[imp.import_id] == {"import.create"}
    assert by[re.import_id] == {"import.update"}
    assert (by[moved], by[tagged]) == ({"status_update"}, {"tags_add"})
    assert len(_audit(store, moved)) == len(_audit(store, tagged)) == 2


def test_an_import_and_the_bulk_job_after_it_roll_back_in_either_order(store, account, tmp_path) -> None:
    imp = run_import(store, account, apps_csv(tmp_path, ROWS), ImportOptions(), failed_rows_dir=tmp_path)
    t = schema.applications
    with store.engine.connect() as conn:
        ids = conn.scalars(sa.select(t.c.id).where(t.c.import_id == imp.import_id).order_by(t.c.external_id)).all()
    job = _job(store, account, "applications", "stage_transition", ids, {"stage": "offer"})

    # the bulk job changed what the import created: both records are conflicts, and they stay
    first = _undo(store, account, imp.import_id)
    assert (first.counts["conflicts"]["applications"], first.counts["deleted"]["applications"]) == (2, 0)
    assert first.counts["kept"]["candidates"] == 2  # their applications stay, so do they

    back = _undo(store, account, job)
    assert back.counts["restored"]["applications"] == 2
    with store.engine.connect() as conn:
        assert set(conn.scalars(sa.select(t.c.stage).where(t.c.id.in_(ids)))) == {"applied"}

    # the bulk job's change and its undo net out: the import's creations go without force
    second = _undo(store, account, imp.import_id)
    assert sum(second.counts["conflicts"].values()) == 0
    assert (second.counts["deleted"]["applications"], second.counts["deleted"]["form_submissions"]) == (2, 2)
    assert (second.counts["deleted"]["candidates"], second.counts["deleted"]["jobs"]) == (2, 1)
    with store.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(t).where(t.c.account_id == account)) == 0
