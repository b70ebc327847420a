"""Twenty bulk jobs through the API at once, overlapping each other and an import of the same records:
every counter exact, every record's final state the sum of what each operation did."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.imports.engine import ImportOptions, run_import
from tests.api.helpers import create, wait_for
from tests.imports.helpers import apps_csv

pytestmark = pytest.mark.slow

RECORDS, JOBS, SPAN = 60, 20, 15


def _file(tmp_path: Path, stage: str, name: str) -> Path:
    return apps_csv(
        tmp_path,
        [f"C-{i},F{i},L{i},c{i}@example.com,JOB-{i % 3},{stage},2026-01-02,{i % 9}" for i in range(RECORDS)],
        name=name,
    )


# PostgreSQL, the production store (SQLite serialises every write: test_jobs.py runs five at once on both)
@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_twenty_overlapping_bulk_jobs_and_an_import_of_the_same_records_all_count_exactly(
    base_url: str, token: str, store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    first = run_import(
        store, account, _file(tmp_path, "Applied", "first.csv"), ImportOptions(), failed_rows_dir=tmp_path
    )
    assert first.created == RECORDS
    a = schema.applications
    with store.engine.connect() as conn:
        ids = dict(conn.execute(sa.select(a.c.external_id, a.c.id).where(a.c.account_id == account)).all())
    ordered = [str(ids[f"C-{i}"]) for i in range(RECORDS)]
    # job i tags records 3i .. 3i+14 (wrapping): every record is in five jobs' ranges
    spans = {f"t{j}": [ordered[(3 * j + k) % RECORDS] for k in range(SPAN)] for j in range(JOBS)}

    reimport: dict[str, object] = {}

    def import_again() -> None:
        try:
            reimport["result"] = run_import(
                store, account, _file(tmp_path, "Interview", "again.csv"), ImportOptions(), failed_rows_dir=tmp_path
            )
        except Exception as exc:  # the assertion below names it
            reimport["result"] = exc

    def bulk(tag: str) -> dict:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=300) as c:
            job = create(
                c, entity_type="applications", operation="tags_add", entity_ids=spans[tag], params={"tags": [tag]}
            )
            return wait_for(c, job["id"], timeout=600)

    importer = threading.Thread(target=import_again)
    importer.start()
    with ThreadPoolExecutor(JOBS) as pool:
        jobs = dict(zip(spans, pool.map(bulk, spans), strict=True))
    importer.join(timeout=600)

    failed = {t: j["error_message"] for t, j in jobs.items() if j["status"] != "completed"}
    assert not failed, failed
    assert {t: (j["status"], j["processed_count"], j["failed_count"]) for t, j in jobs.items()} == dict.fromkeys(
        spans, ("completed", SPAN, 0)
    )
    again = reimport["result"]
    assert not isinstance(again, Exception), again
    assert (again.status, again.updated, again.errors) == ("completed", RECORDS, 0)

    t = schema.tags
    with store.engine.connect() as conn:
        tagged = conn.execute(sa.select(t.c.entity_id, t.c.tag).where(t.c.account_id == account)).all()
        stages = conn.scalars(sa.select(a.c.stage).where(a.c.account_id == account)).all()
    expected = {(uuid.UUID(i), tag) for tag, members in spans.items() for i in members}
    assert len(tagged) == len(expected) == JOBS * SPAN
    assert set(tagged) == expected
    assert set(stages) == {"interview"} and len(stages) == RECORDS
