"""Migration 0009 (change sets) down and up on databases holding imports, bulk jobs and rollbacks.

The data is written by the product's own paths (imports, an import rollback, bulk jobs and a bulk
job's rollback), the database is taken down to 0008, where it holds exactly what 0008 kept, and
up again: every capability row gets its change set back and every audit row its change set id,
and the spine's rollback then works on what was carried across.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, make_engine, migrate, schema
from pipelines.bulk import service
from pipelines.imports.engine import ImportOptions, rollback_import, run_import
from tests.imports.helpers import apps_csv

FIRST = [
    "M-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1",
    "M-2,Bob,Two,bob@x.org,J-1,Applied,2026-01-02,2",
    "M-3,Cy,Three,cy@x.org,J-2,Applied,2026-01-03,3",
]
SECOND = ["M-1,Ann,One,ann@x.org,J-9,Offer,2026-02-01,7", "M-4,Di,Four,di@x.org,J-9,Applied,2026-02-04,4"]
TABLES = ("import_history", "bulk_jobs", "bulk_job_items", "sync_runs", "audit_log", "applications", "users", "jobs")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return factory()


def _bulk(store: RecordStore, account: uuid.UUID, operation: str, ids: list, params: dict) -> uuid.UUID:
    job = service.create_job(
        store, account, created_by=None, entity_type="applications", operation=operation, entity_ids=ids, params=params
    )
    assert service.run_job_now(store, account, uuid.UUID(job["id"]))["status"] == "completed"
    return uuid.UUID(job["id"])


def _fill(store: RecordStore, tmp_path) -> dict:
    """Two imports (the second rolled back), a bulk job on the first one's records and its rollback,
    another bulk job, a sync run, and an audit row no change set wrote."""
    account = store.ensure_account("legacy")
    first = run_import(store, account, apps_csv(tmp_path, FIRST, "a.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    second = run_import(store, account, apps_csv(tmp_path, SECOND, "b.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    rollback_import(store, account, second.import_id, actor="tester")
    a = schema.applications
    with store.engine.connect() as c:
        apps = c.scalars(sa.select(a.c.id).where(a.c.account_id == account).order_by(a.c.external_id)).all()
    moved = _bulk(store, account, "stage_transition", apps[:2], {"stage": "interview"})
    undo = service.create_rollback(store, account, moved)
    assert service.run_job_now(store, account, uuid.UUID(undo["id"]))["status"] == "completed"
    tagged = _bulk(store, account, "tags_add", apps[2:], {"tags": ["vip"]})
    sync_id = uuid.uuid4()
    with store.begin() as c:
        changes.open_change_set(c, id=sync_id, account_id=account, kind="sync")
        c.execute(schema.sync_runs.insert().values(id=sync_id, account_id=account, sync_name="crm", status="completed"))
        sync = changes.load_change_set(c, sync_id, actor="sync:crm")
        changes.write_audit_rows(
            c,
            sync,
            "sync.update",
            [("applications", apps[2], {"source": None}, {"source": "crm"})],
            now=datetime.now(UTC),
        )
        # a row from before change sets, that none wrote
        c.execute(
            schema.audit_log.insert().values(
                account_id=account, actor="admin", operation="manual", entity_type="jobs", entity_id=uuid.uuid4()
            )
        )
    return {
        "account": account,
        "first": first.import_id,
        "second": second.import_id,
        "moved": moved,
        "undo": uuid.UUID(undo["id"]),
        "tagged": tagged,
        "sync": sync_id,
    }


def _snapshot(engine: sa.Engine) -> dict:
    """Every row of TABLES, as {column: value}, in the columns both the database and head have (a
    database at 0008 compares with one at head, `_project`ed, on what 0008 holds; later revisions
    add columns)."""
    out: dict = {}
    inspector = sa.inspect(engine)
    with engine.connect() as c:
        for name in TABLES:
            t = schema.metadata.tables[name]
            present = {col["name"] for col in inspector.get_columns(name)}
            cols = [col for col in t.c if col.name != "change_set_id" and col.name in present]
            key = list(t.primary_key.columns) or cols
            out[name] = [dict(r._mapping) for r in c.execute(sa.select(*cols).order_by(*key))]
    return out


def _project(snapshot: dict, like: dict) -> dict:
    """SNAPSHOT in the columns LIKE has."""
    out = {}
    for name, rows in snapshot.items():
        keep = set(like[name][0]) if like[name] else set()
        out[name] = [{k: v for k, v in r.items() if k in keep} for r in rows]
    return out


def _audit_links(engine: sa.Engine) -> dict[int, tuple]:
    a = schema.audit_log
    with engine.connect() as c:
        # at head the change set is the row's one link (0013 fills import_id ... back on the way down)
        return {r.id: r for r in c.execute(sa.select(a.c.id, a.c.operation, a.c.change_set_id))}


def _change_sets(engine: sa.Engine) -> dict[uuid.UUID, sa.Row]:
    with engine.connect() as c:
        return {r.id: r for r in c.execute(sa.select(schema.change_sets))}


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def test_change_sets_go_down_to_0008_and_come_back_with_the_data(empty_url: str, tmp_path) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    store = RecordStore(empty_url)
    ids = _fill(store, tmp_path)
    links_at_head = _audit_links(engine)
    sets_at_head = _change_sets(engine)
    data = _snapshot(engine)
    assert {sets_at_head[ids[k]].kind for k in ("first", "second", "moved", "undo", "tagged")} == {"import", "bulk_job"}
    [import_undo] = [s for s in sets_at_head.values() if s.kind == "rollback"]
    assert import_undo.rollback_of == ids["second"] and sets_at_head[ids["undo"]].rollback_of == ids["moved"]

    migrate.downgrade(engine, "0008")

    assert "change_sets" not in sa.inspect(engine).get_table_names()
    assert "change_set_id" not in _columns(engine, "audit_log")
    assert not [
        fk for fk in sa.inspect(engine).get_foreign_keys("import_history") if fk["referred_table"] == "change_sets"
    ]
    at_0008 = _snapshot(engine)
    assert at_0008 == _project(data, at_0008)  # every row of 0008's tables, as it was
    with engine.begin() as c, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        c.execute(sa.text("DELETE FROM audit_log"))

    migrate.upgrade(engine)

    assert _snapshot(engine) == data
    sets = _change_sets(engine)
    links = _audit_links(engine)
    # every capability row has its change set again, of its kind and account
    with engine.connect() as c:
        for table, kind in (("import_history", "import"), ("bulk_jobs", "bulk_job"), ("sync_runs", "sync")):
            t = schema.metadata.tables[table]
            for row_id, account in c.execute(sa.select(t.c.id, t.c.account_id)):
                assert (sets[row_id].kind, sets[row_id].account_id) == (kind, account), table
    assert sets[ids["undo"]].rollback_of == ids["moved"]
    # every audit row names the change set it named before; the import's rollback is a change set again
    [back] = [s for s in sets.values() if s.kind == "rollback"]
    assert (back.rollback_of, back.status, back.actor) == (ids["second"], "completed", "tester")
    with engine.connect() as c:
        details = c.scalar(
            sa.select(schema.import_history.c.details).where(schema.import_history.c.id == ids["second"])
        )
    assert back.counts == details["rollback"]
    assert set(links) == set(links_at_head)
    for audit_id, row in links.items():
        expected = links_at_head[audit_id].change_set_id
        assert row.change_set_id == (back.id if expected == import_undo.id else expected), row
    assert sum(1 for r in links.values() if r.change_set_id is None) == 1  # the row no change set wrote
    with engine.begin() as c, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        c.execute(sa.text("UPDATE audit_log SET actor = 'mallory'"))

    # the spine works on what was carried across: the first import's M-1 and M-2 were changed by
    # the second import and by a bulk job, both undone since: no conflict; M-3, tagged and synced
    # since, is one
    out = rollback_import(store, ids["account"], ids["first"], actor="tester")
    assert {k: v for k, v in out["conflicts"].items() if v} == {"applications": 1}
    assert (out["deleted"]["applications"], out["deleted"]["candidates"], out["deleted"]["jobs"]) == (2, 2, 1)
    assert (out["kept"]["candidates"], out["kept"]["jobs"]) == (1, 1)
    store.dispose()
    engine.dispose()


def test_a_capability_row_needs_its_change_set(store: RecordStore, account: uuid.UUID) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.begin() as c:
        c.execute(
            schema.import_history.insert().values(
                id=uuid.uuid4(), account_id=account, type="jobs", started_at=datetime.now(UTC)
            )
        )
