"""The failed records of any change set, with their reasons: one reader for every capability.

An import keeps its failed rows in its failed-rows CSV (`import_history.failed_rows_path`:
the original row plus `_row`, `_line`, `_column`, `_error`, formula-safe); a bulk job in
`bulk_job_items` (status `failed`, `error`). A capability that keeps failed records elsewhere
(syncs, document imports) plugs in with `register(kind, source)`. Everything reads them through
`preview` (the first few, for a run's metadata) and `csv_chunks` (all of them, streamed: the
CLI's `failed` commands and the API's CSV download).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from connectors.files import csvsafe
from connectors.store import RecordStore, schema
from connectors.store.bulk import jobs
from connectors.store.dialect import dialect_of

BULK_COLUMNS = ("entity_id", "error", "seq", "status")
CHUNK_ROWS = 5000
CHUNK_BYTES = 1 << 16


class NoSuchChangeSet(LookupError):
    """No import, bulk job, sync run or document import of this id in the account."""


class FailedRecordsUnavailable(RuntimeError):
    """The change set has failed records, but where they were kept cannot be read."""


@dataclass(frozen=True)
class FailedRecord:
    """One failed record as a run's metadata shows it: which (record id or row), which field, why."""

    ref: str
    field: str
    reason: str


@dataclass(frozen=True)
class Source:
    """Where one kind of change set keeps its failed records.

    `preview(store, id, limit)` gives the first LIMIT as FailedRecords; `csv(store, id)` gives
    every one of them as CSV text chunks (header first).
    """

    preview: Callable[[RecordStore, uuid.UUID, int], list[FailedRecord]]
    csv: Callable[[RecordStore, uuid.UUID], Iterator[str]]


# -- imports: the failed-rows file


def _import_file(store: RecordStore, id_: uuid.UUID) -> Path | None:
    h = schema.import_history
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(h.c.failed_rows_path, h.c.errors).where(h.c.id == id_)).one()
    if not row.failed_rows_path:
        if row.errors:
            raise FailedRecordsUnavailable(f"import {id_} has {row.errors} failed rows but no failed-rows file yet")
        return None
    path = Path(row.failed_rows_path)
    if not path.is_file():
        raise FailedRecordsUnavailable(f"import {id_}: its failed-rows file {path} is gone")
    return path


def _import_preview(store: RecordStore, id_: uuid.UUID, limit: int) -> list[FailedRecord]:
    path = _import_file(store, id_)
    if path is None:
        return []
    out: list[FailedRecord] = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if len(out) >= limit:
                break
            line = f" (line {row['_line']})" if row.get("_line") else ""
            out.append(
                FailedRecord(f"row {row.get('_row', '')}{line}", row.get("_column") or "", row.get("_error", ""))
            )
    return out


def _import_csv(store: RecordStore, id_: uuid.UUID) -> Iterator[str]:
    path = _import_file(store, id_)

    def chunks() -> Iterator[str]:
        if path is None:
            yield ",".join(["_row", "_line", "_column", "_error", csvsafe.ORIGINAL_COLUMN]) + "\n"
            return
        # the file is formula-safe already: pass it through as it is
        with open(path, encoding="utf-8", newline="") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk

    return chunks()


# -- bulk jobs: bulk_job_items


def _bulk_preview(store: RecordStore, id_: uuid.UUID, limit: int) -> list[FailedRecord]:
    items = schema.bulk_job_items
    bulk = schema.bulk_jobs
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(dialect_of(conn).uuid_text(items.c.entity_id), items.c.error, bulk.c.entity_type)
            .join(bulk, bulk.c.id == items.c.bulk_job_id)
            .where(items.c.bulk_job_id == id_, items.c.status == "failed")
            .order_by(items.c.seq)
            .limit(limit)
        ).all()
    return [FailedRecord(f"{entity_type} {entity_id}", "", error or "") for entity_id, error, entity_type in rows]


def _bulk_csv(store: RecordStore, id_: uuid.UUID) -> Iterator[str]:
    def chunks() -> Iterator[str]:
        buf = io.StringIO()
        writer = csvsafe.SafeCsvWriter(buf, BULK_COLUMNS, lineterminator="\n")
        with store.engine.connect() as conn:
            for part in jobs.failed_items(conn, id_, chunk_rows=CHUNK_ROWS):
                if buf.tell():
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
                writer.writerows((str(r[0]), r[1] or "", r[2], r[3]) for r in part)
        yield buf.getvalue()

    return chunks()


SOURCES: dict[str, Source] = {
    "import": Source(_import_preview, _import_csv),
    "bulk_job": Source(_bulk_preview, _bulk_csv),
}


def register(kind: str, source: Source) -> None:
    """Tell the failed-records reader where change sets of KIND keep theirs (syncs, document imports)."""
    if kind not in schema.CHANGE_SET_KINDS:
        raise ValueError(f"unknown change set kind {kind!r}")
    SOURCES[kind] = source


def _none_preview(store: RecordStore, id_: uuid.UUID, limit: int) -> list[FailedRecord]:
    return []


def _none_csv(store: RecordStore, id_: uuid.UUID) -> Iterator[str]:
    return iter(["ref,field,reason,_original\n"])


NONE = Source(_none_preview, _none_csv)


def kind_of(store: RecordStore, change_set_id: uuid.UUID, account_id: uuid.UUID | None = None) -> str:
    """The kind of change set CHANGE_SET_ID (of ACCOUNT_ID when given); NoSuchChangeSet otherwise."""
    cs = schema.change_sets
    q = sa.select(cs.c.kind).where(cs.c.id == change_set_id)
    if account_id is not None:
        q = q.where(cs.c.account_id == account_id)
    with store.engine.connect() as conn:
        kind = conn.scalar(q)
    if kind is None:
        raise NoSuchChangeSet(f"no import, bulk job, sync run or document import {change_set_id} in this account")
    return kind


def source(kind: str) -> Source:
    """Where change sets of KIND keep their failed records (none kept: an empty source)."""
    return SOURCES.get(kind, NONE)


def preview(
    store: RecordStore, change_set_id: uuid.UUID, *, account_id: uuid.UUID | None = None, limit: int = 100
) -> list[FailedRecord]:
    """The first LIMIT failed records of the change set, with their reasons."""
    return source(kind_of(store, change_set_id, account_id)).preview(store, change_set_id, limit)


def csv_chunks(store: RecordStore, change_set_id: uuid.UUID, *, account_id: uuid.UUID | None = None) -> Iterator[str]:
    """Every failed record of the change set as CSV text chunks, header first (checked at the call)."""
    return source(kind_of(store, change_set_id, account_id)).csv(store, change_set_id)
