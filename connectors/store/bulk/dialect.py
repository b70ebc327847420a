"""What bulk jobs do differently on PostgreSQL and SQLite, in one place.

Every `if postgresql` of the bulk package lives here as a method of a dialect class; the rest of
the package asks `dialect_of(conn)`. (A store-wide dialect object is meant to absorb this one.)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

import sqlalchemy as sa

from connectors.store import schema

S = TypeVar("S", bound=sa.Select)

# fewer, larger transactions where the database takes them well
DEFAULT_BATCH_SIZE = {"postgresql": 20_000, "sqlite": 500}
ANALYZE_THRESHOLD = 10_000

items_t = schema.bulk_job_items


class BulkDialect:
    """SQLite and anything else: no row locks, executemany."""

    name = "sqlite"
    # whether a batch of a set operation runs as one statement (see set_batch_pg.py)
    set_based_batches = False

    def batch_size(self) -> int:
        return DEFAULT_BATCH_SIZE.get(self.name, 1000)

    def for_update(self, stmt: S) -> S:
        """`stmt` locking the rows it reads until the transaction ends."""
        return stmt

    def lock_job(self, conn: sa.Connection, job_id: uuid.UUID) -> None:
        """Take the job's lock before reading its row."""
        # a write first: pysqlite then opens a real transaction (a bare SAVEPOINT would commit on
        # release) and takes the database write lock, sqlite's FOR UPDATE
        jobs_t = schema.bulk_jobs
        conn.execute(jobs_t.update().where(jobs_t.c.id == job_id).values(id=jobs_t.c.id))

    def relax_commit(self, conn: sa.Connection) -> None:
        """Let this transaction commit without waiting for durability (a batch that is redone if lost)."""

    def uuid_text(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """A uuid column as its canonical text, or as the value Python renders."""
        # SQLite stores 32 hex digits, so Python renders the uuid
        return column

    def write_items(self, conn: sa.Connection, job_id: uuid.UUID, entity_ids: Sequence[uuid.UUID | str]) -> None:
        """One pending item per entity id, numbered from 0."""
        chunk = 5000
        for start in range(0, len(entity_ids), chunk):
            conn.execute(
                items_t.insert(),
                [
                    {
                        "bulk_job_id": job_id,
                        "seq": start + n,
                        "entity_id": eid if isinstance(eid, uuid.UUID) else uuid.UUID(eid),
                        "status": "pending",
                    }
                    for n, eid in enumerate(entity_ids[start : start + chunk])
                ],
            )


class PostgresBulk(BulkDialect):
    name = "postgresql"
    set_based_batches = True

    def for_update(self, stmt: S) -> S:
        return stmt.with_for_update()

    def lock_job(self, conn: sa.Connection, job_id: uuid.UUID) -> None:
        # the job's row is read FOR UPDATE
        return None

    def relax_commit(self, conn: sa.Connection) -> None:
        # no wait for the WAL flush: a crash can lose the last batches committed, but each batch
        # commits with its own counters and next_seq, so they are lost whole and the next run
        # redoes them
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))

    def uuid_text(self, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(column, sa.Text)

    def write_items(self, conn: sa.Connection, job_id: uuid.UUID, entity_ids: Sequence[uuid.UUID | str]) -> None:
        # one COPY: a million ids in a few seconds
        job = str(job_id)
        chunk = 100_000
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy("COPY bulk_job_items (bulk_job_id, seq, entity_id, status) FROM STDIN") as copy:
            for start in range(0, len(entity_ids), chunk):
                copy.write(
                    "".join(
                        f"{job}\t{seq}\t{eid}\tpending\n"
                        for seq, eid in enumerate(entity_ids[start : start + chunk], start)
                    )
                )
        cursor.close()
        if len(entity_ids) >= ANALYZE_THRESHOLD:
            # fresh statistics, or the planner takes a million new items for a handful and
            # joins each batch by nested loops over the whole job
            conn.execute(sa.text("ANALYZE bulk_job_items"))


_DIALECTS = {"postgresql": PostgresBulk(), "sqlite": BulkDialect()}


def dialect_named(name: str) -> BulkDialect:
    return _DIALECTS.get(name) or BulkDialect()


def dialect_of(conn: sa.Connection) -> BulkDialect:
    return dialect_named(conn.dialect.name)
