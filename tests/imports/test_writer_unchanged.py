"""A row equal to its record is unchanged: no UPDATE, no audit row, counted as skipped (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.imports.engine import ImportOptions, list_imports, rollback_import, run_import
from tests.imports.helpers import apps_csv, count

APPS = [
    "U-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01 09:30,1",
    "U-2,Bob,Two,bob@x.org,J-1,Interview,2026-01-02 10:00,2",
    "U-3,Cy,Three,cy@x.org,J-2,,,",
]
# per entity: a file, and the same file with one value of one record changed (field, before, after)
FILES = {
    "applications": (
        "\n".join(["Application ID,First Name,Last Name,Email,Job Code,Stage,Applied At,Years Experience", *APPS]),
        ("U-2", "stage", "interview", "offer"),
    ),
    "candidates": (
        "Candidate ID,First Name,Last Name,Email,Phone\nC-1,Ann,One,ann@x.org,\nC-2,Bob,Two,bob@x.org,+44 1\n",
        ("C-2", "phone", "+44 1", "+44 2"),
    ),
    "jobs": (
        "Job Code,Title,Location,Team\nJ-1,Engineer,Leeds,core\nJ-2,Analyst,,data\n",
        ("J-2", "title", "Analyst", "Data Analyst"),
    ),
}


def _audit(store: RecordStore, import_id: uuid.UUID) -> list[sa.Row]:
    a = schema.audit_log
    with store.engine.connect() as c:
        return c.execute(sa.select(a).where(a.c.change_set_id == import_id).order_by(a.c.id)).all()


def _records(store: RecordStore, entity: str, account: uuid.UUID) -> dict:
    t = schema.ENTITY_TABLES[entity]
    with store.engine.connect() as c:
        return {r.external_id or r.code: tuple(r) for r in c.execute(sa.select(t).where(t.c.account_id == account))}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def _change(text: str, key: str, before: str, after: str) -> str:
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.split(",")[0] == key)
    cells = lines[i].split(",")
    cells[[c.lower() for c in cells].index(before.lower())] = after
    lines[i] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("entity", list(FILES))
def test_reimport_of_identical_rows_writes_nothing_and_one_change_writes_one_update(
    store, account, tmp_path, entity
) -> None:
    text, (key, field, before, after) = FILES[entity]
    rows = len(text.strip().splitlines()) - 1
    opts = ImportOptions(entity=entity)
    first = run_import(store, account, _write(tmp_path, "a.csv", text), opts, failed_rows_dir=tmp_path)
    assert (first.created, first.errors) == (rows, 0)
    stored = _records(store, entity, account)

    again = run_import(
        store,
        account,
        _write(tmp_path, "a.csv", text),
        ImportOptions(entity=entity, force=True),
        failed_rows_dir=tmp_path,
    )
    assert (again.status, again.created, again.updated, again.skipped, again.errors) == ("completed", 0, 0, rows, 0)
    assert again.details["unchanged"] == rows
    assert list_imports(store, account)[0]["skipped"] == rows
    assert _audit(store, again.import_id) == []
    # no UPDATE: not even updated_at moved
    assert _records(store, entity, account) == stored

    one = run_import(
        store, account, _write(tmp_path, "b.csv", _change(text, key, before, after)), opts, failed_rows_dir=tmp_path
    )
    assert (one.created, one.updated, one.skipped, one.details["unchanged"]) == (0, 1, rows - 1, rows - 1)
    [audit] = _audit(store, one.import_id)
    assert (audit.operation, audit.before[field], audit.after[field]) == ("import.update", before, after)
    changed = _records(store, entity, account)
    assert {k for k in stored if stored[k] != changed[k]} == {key}

    # rollback of each: the change goes back; the unchanged re-import has nothing to undo
    undo = rollback_import(store, account, one.import_id, actor="tester")
    assert sum(undo["restored"].values()) == 1 and sum(undo["deleted"].values()) == 0
    undo = rollback_import(store, account, again.import_id, actor="tester")
    assert sum(undo["restored"].values()) == 0 and sum(undo["deleted"].values()) == 0
    restored = _records(store, entity, account)
    assert {k: v for k, v in restored.items() if k != key} == {k: v for k, v in stored.items() if k != key}
    assert getattr(_row(store, entity, account, key), field) == before


def _row(store: RecordStore, entity: str, account: uuid.UUID, key: str) -> sa.Row:
    t = schema.ENTITY_TABLES[entity]
    col = t.c.code if entity == "jobs" else t.c.external_id
    with store.engine.connect() as c:
        return c.execute(sa.select(t).where(t.c.account_id == account, col == key)).one()


def test_data_compares_as_json_whatever_the_column_order(store, account, tmp_path) -> None:
    a = _write(
        tmp_path,
        "a.csv",
        "Application ID,Email,Job Code,Team,Level\nU-1,ann@x.org,J-1,core,3\nU-2,bob@x.org,J-1,data,\n",
    )
    b = _write(
        tmp_path,
        "b.csv",
        "Level,Team,Job Code,Email,Application ID\n3,core,J-1,ann@x.org,U-1\n,data,J-1,bob@x.org,U-2\n",
    )
    run_import(store, account, a, ImportOptions(), failed_rows_dir=tmp_path)
    r = run_import(store, account, b, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.updated, r.skipped, r.details["unchanged"]) == (0, 2, 2)
    assert _audit(store, r.import_id) == []


def test_a_new_data_key_or_a_cleared_field_is_a_change_and_a_blank_cell_is_not(store, account, tmp_path) -> None:
    run_import(store, account, apps_csv(tmp_path, APPS, "a.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    rows = [
        "U-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01 09:30,1",
        # a blank cell keeps the stored value (stage, applied_at): unchanged
        "U-2,Bob,Two,bob@x.org,J-1,,,2",
        # a data value where the record had none: changed
        "U-3,Cy,Three,cy@x.org,J-2,,,5",
    ]
    r = run_import(store, account, apps_csv(tmp_path, rows, "b.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.updated, r.details["unchanged"]) == (1, 2)
    [audit] = _audit(store, r.import_id)
    assert audit.after["data"] == {"years_experience": "5"}


def test_values_another_writer_stored_in_another_form_are_unchanged(store, account, tmp_path) -> None:
    run_import(store, account, apps_csv(tmp_path, APPS[:1], "a.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    # another writer stores the same instant and the same JSON (SQLite: other text, with
    # microseconds and with spaces after the separators)
    t = schema.applications
    with store.engine.begin() as c:
        stored = c.execute(sa.select(t.c.applied_at, t.c.data).where(t.c.account_id == account)).one()
        c.execute(
            t.update().where(t.c.account_id == account).values(applied_at=stored.applied_at, data=dict(stored.data))
        )
        if store.engine.dialect.name == "sqlite":
            assert c.execute(
                sa.text("SELECT applied_at, data FROM applications WHERE account_id = :a"), {"a": account.hex}
            ).one() == ("2026-01-01 09:30:00.000000", '{"years_experience": "1"}')
    r = run_import(
        store, account, apps_csv(tmp_path, APPS[:1], "b.csv"), ImportOptions(force=True), failed_rows_dir=tmp_path
    )
    assert (r.updated, r.details["unchanged"]) == (0, 1)


def test_in_file_duplicates_compare_with_what_the_earlier_row_wrote(store, account, tmp_path) -> None:
    rows = [
        "U-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01 09:30,1",
        "U-1,Ann,One,ann@x.org,J-1,Applied,2026-01-01 09:30,1",
        "U-1,Ann,One,ann@x.org,J-1,Offer,2026-01-01 09:30,1",
    ]
    r = run_import(store, account, apps_csv(tmp_path, rows), ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.updated, r.details["unchanged"]) == (1, 1, 1)
    assert count(store, "applications", account) == 1


def test_dry_run_shows_unchanged_rows(store, account, tmp_path) -> None:
    run_import(store, account, apps_csv(tmp_path, APPS, "a.csv"), ImportOptions(), failed_rows_dir=tmp_path)
    r = run_import(
        store,
        account,
        apps_csv(tmp_path, APPS, "a.csv"),
        ImportOptions(force=True, dry_run=True),
        failed_rows_dir=tmp_path,
    )
    assert (r.updated, r.skipped) == (0, 3)
    assert [s["outcome"] for s in r.sample] == ["unchanged"] * 3
