"""Failed records as CSV: streamed in chunks, formula payloads neutralised, originals kept."""

from __future__ import annotations

import csv
import io
import uuid

import pytest
import sqlalchemy as sa

from connectors.files import csvsafe
from connectors.store import schema
from pipelines.bulk import service

PAYLOADS = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1:A2)", "\tx", "\rx", "|calc"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_formula_trigger_is_neutralised_and_recoverable(payload: str) -> None:
    buf = io.StringIO()
    csvsafe.SafeCsvWriter(buf, ["id", "error"]).writerow(["1", payload])
    header, row = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert header == ["id", "error", "_original"]
    assert row[1] == "'" + payload
    assert csvsafe.restore_row(header, row) == {"id": "1", "error": payload}


@pytest.mark.parametrize("value", ["-5", "+1.5e3", "-.5", "plain", "a=b", "", "'quoted"])
def test_numbers_and_plain_text_are_written_as_they_are(value: str) -> None:
    buf = io.StringIO()
    csvsafe.SafeCsvWriter(buf, ["v"]).writerow([value])
    assert list(csv.reader(io.StringIO(buf.getvalue(), newline="")))[1] == [value, ""]


def _failed_job(seed, store, account, n: int) -> dict:
    job = service.create_job(
        store,
        account,
        created_by=None,
        entity_type="applications",
        operation="delete",
        entity_ids=[uuid.uuid4() for _ in range(n)],
    )
    return service.run_job_now(store, account, uuid.UUID(job["id"]))


def test_failed_records_stream_in_chunks_in_seq_order(seed, store, account) -> None:
    job = _failed_job(seed, store, account, 23)
    chunks = list(service.iter_failed_items_csv(store, account, uuid.UUID(job["id"]), chunk_rows=5))
    # the header alone first (the API answers 404 or starts the stream on it), then 5 rows per chunk
    assert chunks[0] == "entity_id,error,seq,status,_original\n"
    assert [c.count("\n") for c in chunks[1:]] == [5, 5, 5, 5, 3]
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert [int(r["seq"]) for r in rows] == list(range(23))
    assert {(r["error"], r["status"], r["_original"]) for r in rows} == {("not found", "failed", "")}


def test_a_formula_in_an_error_is_neutralised_in_the_failed_records(seed, store, account) -> None:
    job = _failed_job(seed, store, account, 2)
    items = schema.bulk_job_items
    # an error that echoes a value from the data, as database errors can
    with store.begin() as conn:
        conn.execute(
            items.update()
            .where(items.c.bulk_job_id == uuid.UUID(job["id"]), items.c.seq == 1)
            .values(error='=HYPERLINK("http://x","y")')
        )
    rows = list(csv.reader(io.StringIO("".join(service.iter_failed_items_csv(store, account, job["id"])))))
    assert rows[1][1:] == ["not found", "0", "failed", ""]
    assert rows[2][1] == '\'=HYPERLINK("http://x","y")'
    assert csvsafe.restore_row(rows[0], rows[2])["error"] == '=HYPERLINK("http://x","y")'


def test_an_unknown_job_fails_before_the_first_chunk(store, account) -> None:
    with pytest.raises(service.JobNotFound):
        service.iter_failed_items_csv(store, account, uuid.uuid4())


def test_import_failed_rows_file_neutralises_formula_cells(store, account, tmp_path) -> None:
    from pipelines.imports.engine import ImportOptions, run_import

    path = tmp_path / "apps.csv"
    # no email: the row is rejected and written to the failed-rows file as it came
    path.write_text("Application ID,First Name,Email\nA-1,=cmd|' /C calc'!A0,\nA-2,Ada,ada@example.com\n")
    result = run_import(store, account, path, ImportOptions(), failed_rows_dir=tmp_path / "failed")
    assert result.errors == 1
    with open(result.failed_rows_path, newline="", encoding="utf-8") as f:
        header, row = list(csv.reader(f))
    assert header[-1] == "_original"
    record = dict(zip(header, row, strict=False))
    assert record["First Name"] == "'=cmd|' /C calc'!A0"
    assert csvsafe.restore_row(header, row)["First Name"] == "=cmd|' /C calc'!A0"
    with store.engine.connect() as conn:
        assert (
            conn.scalar(
                sa.select(sa.func.count())
                .select_from(schema.applications)
                .where(schema.applications.c.account_id == account)
            )
            == 1
        )
