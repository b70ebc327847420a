"""Applications find their jobs by code before their rows are staged, and again under the account's lock."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, imports, schema
from pipelines.imports.engine import ImportOptions, ImportResult, run_import
from tests.imports.helpers import apps_csv, rows


def _jobs(store: RecordStore, account: uuid.UUID) -> dict[str, uuid.UUID]:
    return {j.code: j.id for j in rows(store, "jobs", account, "code")}


def _job_of(store: RecordStore, account: uuid.UUID) -> dict[str, uuid.UUID]:
    return {a.external_id: a.job_id for a in rows(store, "applications", account)}


def _import(
    store: RecordStore, account: uuid.UUID, tmp_path: Path, lines: list[str], name: str = "apps.csv", **options: Any
) -> ImportResult:
    """Import LINES (applications CSV rows) as file NAME with ImportOptions(**OPTIONS); the result."""
    return run_import(
        store, account, apps_csv(tmp_path, lines, name), ImportOptions(**options), failed_rows_dir=tmp_path
    )


def _statements(store: RecordStore) -> list[str]:
    seen: list[str] = []

    def kept(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", kept)
    return seen


def _after_staging(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run CHANGE (another writer, committed) once, after the first batch is staged and before it takes the lock."""
    load = imports.ImportWriter.load
    done: list[bool] = []

    def staged_then_changed(self, table):  # type: ignore[no-untyped-def]
        load(self, table)
        if not done:
            done.append(True)
            change()

    monkeypatch.setattr(imports.ImportWriter, "load", staged_then_changed)


def test_batches_whose_jobs_exist_skip_the_staging_table_pass(store, account, tmp_path) -> None:
    lines = [f"A-{i},F,L,p{i}@x.org,{'ENG' if i % 2 else 'eng'}-{i % 3},Applied,2026-01-01,1" for i in range(12)]
    first = _import(store, account, tmp_path, lines[:6], "a.csv")
    assert first.details["jobs_created"] == 3
    seen = _statements(store)
    r = _import(store, account, tmp_path, lines[6:], "b.csv", batch_size=2)
    assert (r.created, r.errors, r.details["jobs_created"]) == (6, 0, 0)
    assert not [s for s in seen if "found_jobs" in s]
    jobs = _jobs(store, account)
    assert set(jobs) == {"eng-0", "ENG-1", "eng-2"}
    # each application has the job of its code, whatever the case it spells it in
    by_code = {code.lower(): id_ for code, id_ in jobs.items()}
    assert _job_of(store, account) == {f"A-{i}": by_code[f"eng-{i % 3}"] for i in range(12)}


def test_a_batch_with_found_and_missing_codes_refuses_only_the_missing(store, account, tmp_path) -> None:
    _import(store, account, tmp_path, ["A-1,F,L,a@x.org,ENG-1,Applied,2026-01-01,1"], "a.csv")
    r = _import(
        store,
        account,
        tmp_path,
        ["A-2,F,L,b@x.org,eng-1,Applied,2026-01-01,1", "A-3,F,L,c@x.org,NOPE-9,Applied,2026-01-01,1"],
        "b.csv",
        create_missing_jobs=False,
    )
    assert (r.created, r.errors) == (1, 1)
    failed = list(csv.DictReader(Path(r.failed_rows_path).read_text().splitlines()))
    assert [(f["Application ID"], f["_column"], f["_error"]) for f in failed] == [
        ("A-3", "job_code", "unknown job code NOPE-9 (create_missing_jobs is off)")
    ]
    assert _job_of(store, account) == {"A-1": _jobs(store, account)["ENG-1"], "A-2": _jobs(store, account)["ENG-1"]}


def test_a_soft_deleted_job_still_holds_its_code(store, account, tmp_path) -> None:
    _import(store, account, tmp_path, ["A-1,F,L,a@x.org,ENG-1,Applied,2026-01-01,1"], "a.csv")
    with store.engine.begin() as c:
        c.execute(schema.jobs.update().where(schema.jobs.c.account_id == account).values(deleted_at=datetime.now(UTC)))
    r = _import(store, account, tmp_path, ["A-2,F,L,b@x.org,eng-1,Applied,2026-01-01,1"], "b.csv")
    # the code is the job's (unique per account): the application goes to it, no second job is made
    assert (r.created, r.errors, r.details["jobs_created"]) == (1, 0, 0)
    assert _job_of(store, account)["A-2"] == _jobs(store, account)["ENG-1"]


@pytest.mark.postgres
def test_a_job_recoded_after_staging_is_looked_up_again(pg_url, tmp_path, monkeypatch) -> None:
    store = RecordStore(pg_url)
    account = store.ensure_account(f"jobs-{uuid.uuid4().hex[:8]}")
    _import(store, account, tmp_path, ["A-1,F,L,a@x.org,ENG-1,Applied,2026-01-01,1"], "a.csv")
    old = _jobs(store, account)["ENG-1"]

    def recode() -> None:
        # a jobs import of another run gives the job another code while this batch waits
        with store.engine.begin() as c:
            c.execute(schema.jobs.update().where(schema.jobs.c.id == old).values(code="OLD-1"))

    _after_staging(monkeypatch, recode)
    r = _import(store, account, tmp_path, ["A-2,F,L,b@x.org,ENG-1,Applied,2026-01-01,1"], "b.csv")
    # as when the lookup ran under the lock: ENG-1 has no job any more, so it gets a new one
    assert (r.created, r.details["jobs_created"]) == (1, 1)
    jobs = _jobs(store, account)
    assert jobs["OLD-1"] == old and _job_of(store, account)["A-2"] == jobs["ENG-1"] != old
    store.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("create_missing_jobs", [True, False])
def test_a_job_created_after_staging_is_found(pg_url, tmp_path, monkeypatch, create_missing_jobs) -> None:
    store = RecordStore(pg_url)
    account = store.ensure_account(f"jobs-{uuid.uuid4().hex[:8]}")
    made = uuid.uuid4()

    def create() -> None:
        # another import creates the job (and commits) while this batch waits for the lock
        with store.engine.begin() as c:
            c.execute(schema.jobs.insert().values(id=made, account_id=account, code="Eng-2", title="Engineer"))

    _after_staging(monkeypatch, create)
    r = _import(
        store,
        account,
        tmp_path,
        ["A-1,F,L,a@x.org,ENG-2,Applied,2026-01-01,1"],
        create_missing_jobs=create_missing_jobs,
    )
    assert (r.created, r.errors, r.details["jobs_created"]) == (1, 0, 0)
    assert _jobs(store, account) == {"Eng-2": made}
    assert _job_of(store, account) == {"A-1": made}
    store.dispose()
