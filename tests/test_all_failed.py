"""One rule for every change set kind: at least one record attempted and every one failed ends `failed`
(with counted reasons); any success or skip ends `completed`. Imports, document imports, syncs, bulk jobs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, changes, schema, stats
from pipelines.bulk import service
from pipelines.documents.engine import import_documents
from pipelines.imports.engine import ImportOptions, failed_rows_reasons, list_imports, run_import
from pipelines.syncs.config import load_connection
from pipelines.syncs.engine import count_reasons, run_sync
from tests.documents import pdfgen
from tests.imports.helpers import apps_csv
from tests.syncs.conftest import Source, write_connection


@pytest.mark.parametrize(
    ("attempted", "failed", "ends"),
    [(0, 0, "completed"), (3, 3, "failed"), (3, 2, "completed"), (1, 1, "failed"), (5, 0, "completed")],
)
def test_the_rule(attempted: int, failed: int, ends: str) -> None:
    assert ("failed" if changes.ends_failed(attempted=attempted, failed=failed) else "completed") == ends


def test_reasons_are_counted_most_frequent_first_then_other_reasons() -> None:
    reasons = {"a": 1, "b": 5, "c": 2, "d": 2, "e": 1, "f": 1, "g": 1}
    listed = changes.counted_reasons(reasons, 13)
    assert [r["error"] for r in listed] == ["b", "c", "d", "a", "e", "other reasons"]
    assert listed[-1]["count"] == 2 and sum(r["count"] for r in listed) == 13
    assert changes.all_failed_message(2, [{"error": "not found", "count": 2}]) == "all 2 records failed: not found (2)"


def test_a_failed_record_is_counted_under_one_key_for_imports_and_syncs(tmp_path: Path) -> None:
    assert changes.reason_key("email", "not an email address") == "email: not an email address"
    assert changes.reason_key("", "duplicate row") == "duplicate row"
    assert changes.reason_key(None, None) == "unknown error"
    # an import counts its failed-rows file with it; a sync counts each batch's (column, error) pairs with it
    failed_rows = tmp_path / "failed.csv"
    failed_rows.write_text("email,_row,_column,_error\nx,2,email,not an email address\ny,3,,duplicate row\n")
    assert failed_rows_reasons(failed_rows) == {"email: not an email address": 1, "duplicate row": 1}
    counted: dict[str, int] = {}
    count_reasons(counted, [("email", "not an email address"), ("", "duplicate row")])
    assert counted == failed_rows_reasons(failed_rows)


def _stats(store: RecordStore, account: uuid.UUID) -> dict:
    with store.engine.connect() as conn:
        return stats.operation_stats(conn, account_id=account).groups["total"]


def test_an_import_whose_every_row_failed_ends_failed(store: RecordStore, account: uuid.UUID, tmp_path: Path) -> None:
    bad = apps_csv(
        tmp_path, ["A1,Ada,L,not-an-email,ENG-1,applied,2026-01-01,2", "A2,Bo,K,,ENG-1,applied,2026-01-01,3"]
    )
    r = run_import(store, account, bad, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("failed", 0, 2)
    row = list_imports(store, account, limit=1)[0]
    assert row["status"] == "failed"
    assert row["error_message"].startswith("all 2 rows failed: "), row["error_message"]
    assert sum(x["count"] for x in r.details["failed_reasons"]) == 2
    assert r.failed_rows_path and Path(r.failed_rows_path).exists()
    total = _stats(store, account)
    assert (total["failed"], total["succeeded"]) == (1, 0)

    # one good row among bad ones: completed, the bad ones counted as errors
    mixed = apps_csv(
        tmp_path,
        ["A3,Ada,L,not-an-email,ENG-1,applied,2026-01-01,2", "A4,Cy,M,cy@example.com,ENG-1,applied,2026-01-01,3"],
        name="mixed.csv",
    )
    r = run_import(store, account, mixed, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 1, 1)
    assert "failed_reasons" not in r.details


def test_a_dry_run_import_follows_the_same_rule(store: RecordStore, account: uuid.UUID, tmp_path: Path) -> None:
    bad = apps_csv(tmp_path, ["A1,Ada,L,not-an-email,ENG-1,applied,2026-01-01,2"])
    r = run_import(store, account, bad, ImportOptions(dry_run=True), failed_rows_dir=tmp_path)
    assert (r.status, r.errors) == ("failed", 1)


@pytest.mark.slow
def test_a_document_import_whose_every_document_failed_ends_failed(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    d = tmp_path / "bad"
    files = [
        pdfgen.write(d / "page.pdf", b"<!DOCTYPE html><html><body>Sign in</body></html>"),
        pdfgen.write(d / "empty.pdf", b""),
        pdfgen.write(d / "other.pdf", b"<html>also not a pdf</html>"),
    ]
    kw = {"documents_dir": tmp_path / "stored", "failed_rows_dir": tmp_path / "failed", "workers": 1}
    result = import_documents(store, account, kind="resume", paths=files, **kw)
    assert (result.status, result.created, result.errors) == ("failed", 0, 3)
    row = list_imports(store, account, limit=1)[0]
    assert row["status"] == "failed"
    assert row["error_message"] == "all 3 documents failed: not_pdf (2), empty (1)", row["error_message"]

    # one readable resume among them: completed
    good = pdfgen.write(tmp_path / "more" / "good.pdf", pdfgen.resume_pdf(31))
    worse = pdfgen.write(tmp_path / "more" / "worse.pdf", b"<html>not a pdf</html>")
    result = import_documents(store, account, kind="resume", paths=[good, worse], **kw)
    assert (result.status, result.created, result.errors) == ("completed", 1, 1)
    assert "1 of 2 documents failed" in list_imports(store, account, limit=1)[0]["error_message"]
    assert (_stats(store, account)["failed"], _stats(store, account)["succeeded"]) == (1, 1)


@pytest.mark.slow
def test_a_sync_whose_every_record_failed_ends_failed(
    store: RecordStore, account: uuid.UUID, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Source(f"sqlite:///{tmp_path / 'hr.db'}")
    source.add(3)
    with source.engine.begin() as c:
        c.execute(sa.text("UPDATE hr_applications SET email = 'not-an-email'"))
    monkeypatch.setenv("HR_DB_URL", source.url)
    with store.engine.connect() as c:
        slug = c.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account))
    connection = load_connection(write_connection(tmp_path / "syncs", "hr", slug, "HR_DB_URL"))
    try:
        result = run_sync(store, connection)
        assert result.status == "failed"
        assert (result.counts["records_read"], result.counts["errors"]) == (3, 3)
        with store.engine.connect() as c:
            run = c.execute(sa.select(schema.sync_runs).where(schema.sync_runs.c.id == result.run_id)).one()
        assert run.status == "failed"
        assert run.error_message.startswith("all 3 records failed: email: "), run.error_message
        assert run.details["failed_reasons"][0]["count"] == 3
        assert _stats(store, account)["failed"] == 1

        # the failed run's position does not stand: once fixed, the next run reads them again
        with source.engine.begin() as c:
            c.execute(sa.text("UPDATE hr_applications SET email = 'p' || id || '@example.com'"))
        again = run_sync(store, connection)
        assert (again.status, again.counts["created"]) == ("completed", 3), (again.counts, again.resumed, again.details)
    finally:
        source.dispose()


def test_a_bulk_job_whose_every_record_failed_ends_failed(store: RecordStore, account: uuid.UUID) -> None:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="status_update",
        params={"status": "rejected"},
        entity_ids=[uuid.uuid4(), uuid.uuid4()],
    )
    done = service.run_job_now(store, account, uuid.UUID(job["id"]))
    assert (done["status"], done["error_message"]) == ("failed", "all 2 records failed: not found (2)")
    assert _stats(store, account)["failed"] == 1
