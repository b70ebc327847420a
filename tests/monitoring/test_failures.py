"""Failed records of any change set: an import's failed-rows file and a bulk job's items, one reader."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest

from connectors.store import RecordStore, changes, failures
from pipelines.bulk import service
from pipelines.imports.engine import ImportOptions, run_import

# real imports, runs and SMTP servers on both databases: each takes about a second
pytestmark = pytest.mark.slow


def _bad_import(store: RecordStore, account: uuid.UUID, tmp_path: Path) -> uuid.UUID:
    path = tmp_path / "people.csv"
    path.write_text("Email,First Name\nok@example.com,Ok\nnot-an-email,Bad\n=1+2,Formula\n")
    result = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path / "f")
    assert result.errors == 2
    return result.import_id


def _bulk_job_with_missing_ids(store: RecordStore, account: uuid.UUID, n: int) -> uuid.UUID:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="delete",
        entity_ids=[uuid.uuid4() for _ in range(n)],
    )
    service.run_job_now(store, account, uuid.UUID(job["id"]))
    return uuid.UUID(job["id"])


def test_an_imports_failed_rows_come_from_its_failed_rows_file(store, account, tmp_path) -> None:
    import_id = _bad_import(store, account, tmp_path)

    shown = failures.preview(store, import_id, account_id=account)
    text = "".join(failures.csv_chunks(store, import_id, account_id=account))

    assert [(r.ref.split(" ")[1], r.field) for r in shown] == [("2", "email"), ("3", "email")]
    assert all(r.reason for r in shown)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["_row"] for r in rows] == ["2", "3"]
    # formula-safe as the file is
    assert rows[1]["Email"] == "'=1+2" and "=1+2" in rows[1]["_original"]


def test_a_bulk_jobs_failed_records_come_from_its_items(store, account) -> None:
    job_id = _bulk_job_with_missing_ids(store, account, 7)

    shown = failures.preview(store, job_id, account_id=account, limit=3)
    rows = list(csv.DictReader(io.StringIO("".join(failures.csv_chunks(store, job_id, account_id=account)))))

    assert [r.reason for r in shown] == ["not found"] * 3
    assert len(rows) == 7 and {r["error"] for r in rows} == {"not found"}


def test_another_accounts_change_set_is_not_found(store, account, tmp_path) -> None:
    import_id = _bad_import(store, account, tmp_path)
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    with pytest.raises(failures.NoSuchChangeSet):
        failures.csv_chunks(store, import_id, account_id=other)


def test_a_kind_that_keeps_no_failed_records_gives_an_empty_table_until_it_registers_a_source(store, account) -> None:
    with store.begin() as conn:
        cs = changes.open_change_set(conn, account_id=account, kind="document_import")
    assert failures.preview(store, cs.id, account_id=account) == []
    assert "".join(failures.csv_chunks(store, cs.id)) == "ref,field,reason,_original\n"
    seen = failures.FailedRecord("doc.pdf", "text", "no text layer")
    failures.register("document_import", failures.Source(lambda s, i, n: [seen], lambda s, i: iter(["x\n"])))
    try:
        assert failures.preview(store, cs.id) == [seen]
    finally:
        failures.SOURCES.pop("document_import")


def test_a_gone_failed_rows_file_is_said_so(store, account, tmp_path) -> None:
    import_id = _bad_import(store, account, tmp_path)
    for f in (tmp_path / "f").glob("*.csv"):
        f.unlink()
    with pytest.raises(failures.FailedRecordsUnavailable, match="is gone"):
        failures.csv_chunks(store, import_id, account_id=account)
