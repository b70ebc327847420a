"""The writer says in words what the database refused, for which rows and at which step; never the SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, imports
from connectors.store.faults import is_transient
from connectors.store.imports import WriteFailed
from pipelines.imports.engine import ImportOptions, list_imports, run_import
from tests.imports.helpers import apps_csv, count


@contextmanager
def refusing(store: RecordStore, table: str, external_id: str) -> Iterator[None]:
    """A trigger that refuses inserting a record with EXTERNAL_ID into TABLE (the database is shared: only that id)."""
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    with store.engine.begin() as c:
        if c.dialect.name == "postgresql":
            c.exec_driver_sql(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION '{table} refuses this record'; END $$"
            )
            c.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW "
                f"WHEN (NEW.external_id = '{external_id}') EXECUTE FUNCTION {name}()"
            )
        else:
            c.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN NEW.external_id = '{external_id}' "
                f"BEGIN SELECT RAISE(ABORT, '{table} refuses this record'); END"
            )
    try:
        yield
    finally:
        with store.engine.begin() as c:
            c.exec_driver_sql(f"DROP TRIGGER {name}" + (f" ON {table}" if c.dialect.name == "postgresql" else ""))
            if c.dialect.name == "postgresql":
                c.exec_driver_sql(f"DROP FUNCTION {name}()")


def test_a_refused_batch_names_its_rows_and_step_in_words(store, account, tmp_path) -> None:
    bad = f"BOOM-{uuid.uuid4().hex[:8]}"
    path = apps_csv(
        tmp_path,
        [
            "E-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1",
            "E-2,Bob,Two,bob@x.org,J-1,Applied,2026-01-01,2",
            f"{bad},Cy,Three,cy@x.org,J-1,Applied,2026-01-01,3",
            "E-4,Di,Four,di@x.org,J-1,Applied,2026-01-01,4",
        ],
    )
    with refusing(store, "applications", bad), pytest.raises(WriteFailed) as failure:
        run_import(store, account, path, ImportOptions(batch_size=2), failed_rows_dir=tmp_path)
    message = str(failure.value)
    assert message.startswith(
        "rows 3-4 were not written: creating applications failed: applications refuses this record"
    ), message
    assert not any(word in message.upper() for word in ("INSERT", "SELECT", "[SQL", "IMPORT_STAG")), message
    assert not is_transient(failure.value)
    # the first batch stays, the refused one is rolled back whole
    assert count(store, "applications", account) == 2
    [row] = list_imports(store, account)
    assert row["status"] == "failed" and row["rows_read"] == 2
    assert not any(word in (row["error_message"] or "").upper() for word in ("INSERT", "SELECT", "[SQL")), row[
        "error_message"
    ]


@pytest.mark.postgres
def test_a_lost_connection_stays_a_transient_failure(pg_url, tmp_path, monkeypatch) -> None:
    # the server ends the import's connection mid-batch: a WriteFailed in words, still transient for the retry rule
    store = RecordStore(pg_url)
    account = store.ensure_account(f"lost-{uuid.uuid4().hex[:8]}")
    create = imports.ImportWriter._create

    def killed(self, r):  # type: ignore[no-untyped-def]
        pid = self.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with store.engine.connect() as other:
            assert other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        return create(self, r)

    monkeypatch.setattr(imports.ImportWriter, "_create", killed)
    with pytest.raises(WriteFailed) as failure:
        run_import(
            store,
            account,
            apps_csv(tmp_path, ["E-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01,1"]),
            ImportOptions(),
            failed_rows_dir=tmp_path,
        )
    message = str(failure.value)
    assert message.startswith("rows 1-1 were not written: creating applications failed: "), message
    assert "terminating connection" in message and "INSERT" not in message.upper()
    assert is_transient(failure.value)
    store.dispose()
