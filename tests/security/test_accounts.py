"""One account never reads, changes or rolls back another's records, through every way in.

Two accounts hold the same people, jobs and external ids (the way two customers of one platform
do). Account B imports a spreadsheet, imports resumes, syncs from an HR database, runs bulk jobs
by ids and by filter, and tries to roll back, read and cancel account A's change sets: B gets
records of its own, and every row of A stays byte for byte as it was. The API's own endpoints
(bulk jobs, exports, stats, failed records) are covered in tests/api/test_tenancy.py,
test_jobs.py and test_exports.py, exports by the Launchpad in tests/exports/test_dagster.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.bulk import service
from pipelines.documents.engine import import_documents
from pipelines.imports.engine import ImportFailed, get_import, list_imports, rollback_import, run_import
from pipelines.imports.options import ImportOptions
from pipelines.syncs.config import load_connection
from pipelines.syncs.engine import SyncFailed, rollback_sync, run_sync
from tests.documents import pdfgen
from tests.syncs.conftest import Source, write_connection

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "applications.csv"
TABLES = tuple(n for n, t in schema.metadata.tables.items() if "account_id" in t.c)


def _slug(store: RecordStore, account: uuid.UUID) -> str:
    with store.engine.connect() as c:
        return c.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account))


def _snapshot(store: RecordStore, account: uuid.UUID) -> dict[str, list[tuple]]:
    """Every row of ACCOUNT in the tables an operation writes, as plain tuples in a stable order."""
    out = {}
    with store.engine.connect() as c:
        for name in TABLES:
            t = schema.metadata.tables[name]
            rows = c.execute(sa.select(t).where(t.c.account_id == account)).all()
            out[name] = sorted((tuple(map(repr, r)) for r in rows), key=repr)
    return out


def _count(store: RecordStore, table: str, account: uuid.UUID) -> int:
    t = schema.metadata.tables[table]
    with store.engine.connect() as c:
        return c.scalar(sa.select(sa.func.count()).select_from(t).where(t.c.account_id == account))


@pytest.fixture
def two_accounts(store: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Account A with an import, a document import, a sync run and a bulk job; account B empty."""
    a = store.ensure_account(f"a-{uuid.uuid4().hex[:10]}")
    b = store.ensure_account(f"b-{uuid.uuid4().hex[:10]}")
    source = Source(f"sqlite:///{tmp_path / 'hr.db'}")
    source.add(12)
    monkeypatch.setenv("HR_DB_URL", source.url)
    pdfgen.write(tmp_path / "resumes" / "one.pdf", pdfgen.resume_pdf(1, ["Python"]))

    a_import = run_import(store, a, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path / "failed-a")
    a_docs = import_documents(
        store,
        a,
        kind="resume",
        paths=[tmp_path / "resumes"],
        documents_dir=tmp_path / "stored-a",
        failed_rows_dir=tmp_path / "failed-a",
        workers=1,
    )
    a_sync = run_sync(
        store, load_connection(write_connection(tmp_path / "syncs-a", "hr", _slug(store, a), "HR_DB_URL"))
    )
    with store.engine.connect() as c:
        a_apps = list(c.scalars(sa.select(schema.applications.c.id).where(schema.applications.c.account_id == a)))
    a_job = service.create_job(
        store, a, created_by=None, entity_type="applications", operation="tags_add",
        entity_ids=a_apps[:5], params={"tags": ["a-only"]},
    )  # fmt: skip
    service.run_job_now(store, a, uuid.UUID(a_job["id"]))
    assert (a_import.created, a_docs.created, a_sync.counts["created"]) == (20, 1, 12)
    yield {
        "a": a,
        "b": b,
        "source": source,
        "a_import": a_import.import_id,
        "a_docs": a_docs.import_id,
        "a_sync": a_sync.run_id,
        "a_job": uuid.UUID(a_job["id"]),
        "a_apps": a_apps,
    }
    source.dispose()


def test_another_accounts_imports_documents_and_syncs_create_records_of_their_own(
    store: RecordStore, two_accounts: dict, tmp_path: Path
) -> None:
    a, b = two_accounts["a"], two_accounts["b"]
    before = _snapshot(store, a)

    # the same spreadsheet: every applicant, job and application is new in B (same emails, job
    # codes and external ids as A's)
    r = run_import(store, b, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path / "failed-b")
    assert (r.status, r.created, r.updated) == ("completed", 20, 4)
    # the same resume: a new applicant in B, not a new version of A's
    d = import_documents(
        store,
        b,
        kind="resume",
        paths=[tmp_path / "resumes"],
        documents_dir=tmp_path / "stored-b",
        failed_rows_dir=tmp_path / "failed-b",
        workers=1,
    )
    assert (d.created, d.updated, d.errors) == (1, 0, 0)
    # the same HR database and table: B's connection creates B's records
    s = run_sync(store, load_connection(write_connection(tmp_path / "syncs-b", "hr", _slug(store, b), "HR_DB_URL")))
    assert (s.counts["created"], s.counts["updated"]) == (12, 0)

    assert _snapshot(store, a) == before
    assert _count(store, "applications", b) == _count(store, "applications", a) == 20 + 12


def test_bulk_jobs_of_another_account_fail_on_a_records_and_select_only_their_own(
    store: RecordStore, two_accounts: dict, tmp_path: Path
) -> None:
    a, b = two_accounts["a"], two_accounts["b"]
    run_import(store, b, SAMPLE, ImportOptions(), failed_rows_dir=tmp_path / "failed-b")
    before = _snapshot(store, a)

    # by ids: A's ids are not found in B, each item fails, nothing of A changes
    job = service.create_job(
        store, b, created_by=None, entity_type="applications", operation="status_update",
        entity_ids=two_accounts["a_apps"][:4], params={"status": "rejected"},
    )  # fmt: skip
    done = service.run_job_now(store, b, uuid.UUID(job["id"]))
    assert (done["status"], done["processed_count"], done["failed_count"]) == ("failed", 4, 4)
    # by filter: all of B's applications in stage applied, none of A's
    by_filter = service.create_job(
        store, b, created_by=None, entity_type="applications", operation="tags_add",
        filter=["stage=applied"], params={"tags": ["b-only"]},
    )  # fmt: skip
    done = service.run_job_now(store, b, uuid.UUID(by_filter["id"]))
    assert done["status"] == "completed" and done["failed_count"] == 0
    with store.engine.connect() as c:
        applied = c.scalar(
            sa.select(sa.func.count())
            .select_from(schema.applications)
            .where(schema.applications.c.account_id == b, schema.applications.c.stage == "applied")
        )
    assert done["processed_count"] == applied > 0
    with store.engine.connect() as c:
        tagged = c.scalar(sa.select(sa.func.count()).select_from(schema.tags).where(schema.tags.c.account_id == b))
    assert tagged == applied

    assert _snapshot(store, a) == before


def test_another_account_can_neither_read_nor_roll_back_nor_cancel_a_change_sets(
    store: RecordStore, two_accounts: dict
) -> None:
    a, b = two_accounts["a"], two_accounts["b"]
    before = _snapshot(store, a)

    for import_id in (two_accounts["a_import"], two_accounts["a_docs"]):
        assert get_import(store, b, import_id) is None
        with pytest.raises(ImportFailed, match=r"no import .* in this account"):
            rollback_import(store, b, import_id, actor="intruder")
    assert list_imports(store, b) == []
    with pytest.raises(SyncFailed, match=r"no sync run .* in this account"):
        rollback_sync(store, b, two_accounts["a_sync"], actor="intruder")
    job_id = two_accounts["a_job"]
    for call in (
        lambda: service.get_job(store, b, job_id),
        lambda: service.request_cancel(store, b, job_id),
        lambda: service.create_rollback(store, b, job_id, created_by=None),
        lambda: service.preview(store, b, job_id),
        lambda: list(service.iter_failed_items_csv(store, b, job_id)),
    ):
        with pytest.raises(service.JobNotFound):
            call()

    assert _snapshot(store, a) == before
    # and A still can
    assert get_import(store, a, two_accounts["a_import"]) is not None
    assert service.get_job(store, a, job_id)["status"] == "completed"
