"""Migration 0013 (audit_log's one link) down and up on a database holding imports, bulk jobs and rollbacks.

The data is written by the product's own paths (`test_migration_0009._fill`: two imports, the second
rolled back, a bulk job and its rollback, another bulk job, a sync run, and an audit row from before
change sets). Down to 0012, every audit row names its import, bulk job or sync run again, as the
writers filled those columns before; up again, the columns are gone, the audit history reads the
same, and the spine's rollback works on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, make_engine, migrate, schema
from pipelines.imports.engine import rollback_import
from tests.store.test_migration_0009 import _fill

LINKS = ("import_id", "bulk_job_id", "sync_run_id")
HISTORY = ("id", "account_id", "actor", "operation", "entity_type", "entity_id", "before", "after", "change_set_id")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    factory: Callable[[], str] = request.getfixturevalue("pg_database_factory")
    return factory()


def _history(engine: sa.Engine) -> list[tuple]:
    a = schema.audit_log
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(*(a.c[n] for n in HISTORY)).order_by(a.c.id))]


def _described(engine: sa.Engine, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict]:
    with engine.connect() as c:
        return {i: changes.describe(c, i) for i in ids}


def _links_at_0012(engine: sa.Engine) -> dict[int, tuple]:
    a = sa.table("audit_log", sa.column("id"), *(sa.column(n, sa.Uuid()) for n in LINKS))
    with engine.connect() as c:
        return {r[0]: tuple(r[1:]) for r in c.execute(sa.select(a.c.id, *(a.c[n] for n in LINKS)))}


def _audit_indexes(engine: sa.Engine) -> set[str]:
    return {i["name"] for i in sa.inspect(engine).get_indexes("audit_log")}


def _append_only(engine: sa.Engine) -> None:
    with engine.begin() as c, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        c.execute(sa.text("UPDATE audit_log SET actor = 'mallory'"))
    with engine.begin() as c, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        c.execute(sa.text("DELETE FROM audit_log"))


@pytest.mark.slow
def test_the_link_columns_come_back_filled_from_the_change_sets_and_go_again(empty_url: str, tmp_path) -> None:
    engine = make_engine(empty_url)
    migrate.upgrade(engine)
    store = RecordStore(empty_url)
    ids = _fill(store, tmp_path)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("audit_log")}
    assert "change_set_id" in columns and not set(LINKS) & columns
    history = _history(engine)
    with engine.connect() as c:
        sets = {r.id: r for r in c.execute(sa.select(schema.change_sets))}
    [import_undo] = [s.id for s in sets.values() if s.kind == "rollback"]
    named = [ids[k] for k in ("first", "second", "moved", "undo", "tagged", "sync")] + [import_undo]
    described = _described(engine, named)
    # each audit row names its change set: the ones of the import's rollback name the rollback
    writers = {row[-1] for row in history}
    assert writers == {*named, None}

    migrate.downgrade(engine, "0012")

    assert migrate.current_revision(engine) == "0012"
    assert {"ix_audit_log_import_id", "ix_audit_log_bulk_job_id"} <= _audit_indexes(engine)
    links = _links_at_0012(engine)
    # what the audit writer filled before 0013: the import (also for its rollback's rows), the bulk
    # job (a bulk job's rollback is a bulk job of its own), the sync run; nothing for the old row
    expected = {
        ids["first"]: (ids["first"], None, None),
        ids["second"]: (ids["second"], None, None),
        import_undo: (ids["second"], None, None),
        ids["moved"]: (None, ids["moved"], None),
        ids["undo"]: (None, ids["undo"], None),
        ids["tagged"]: (None, ids["tagged"], None),
        ids["sync"]: (None, None, ids["sync"]),
        None: (None, None, None),
    }
    assert {row[0]: expected[row[-1]] for row in history} == links
    assert _history(engine) == history
    _append_only(engine)

    migrate.upgrade(engine)

    columns = {c["name"] for c in sa.inspect(engine).get_columns("audit_log")}
    assert not set(LINKS) & columns
    assert not {"ix_audit_log_import_id", "ix_audit_log_bulk_job_id"} & _audit_indexes(engine)
    assert "ix_audit_log_change_set_id" in _audit_indexes(engine)
    assert _history(engine) == history
    assert _described(engine, named) == described
    _append_only(engine)

    # the spine reads the carried history as before: the first import's M-1 and M-2 were changed
    # by the second import and by a bulk job, both undone since (no conflict); M-3, tagged and
    # synced since, is one
    out = rollback_import(store, ids["account"], ids["first"], actor="tester")
    assert {k: v for k, v in out["conflicts"].items() if v} == {"applications": 1}
    assert (out["deleted"]["applications"], out["deleted"]["candidates"], out["deleted"]["jobs"]) == (2, 2, 1)
    assert (out["kept"]["candidates"], out["kept"]["jobs"]) == (1, 1)
    store.dispose()
    engine.dispose()
