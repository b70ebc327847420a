"""A batch of a set operation (status, stage, field update, soft delete) as one PostgreSQL statement.

The one raw SQL statement of the bulk package, kept because it is faster than evaluating the
batch in Python and writing it with executemany (`SetFields.evaluate` and `apply`, which SQLite
runs): a status_update of 100,000 applications ran in 9.3 s set-based against 64.6 s through
the Core path (`PostgresDialect.set_based_batches = False`), about 7x (PostgreSQL 15, the seed
and job of benchmarks/bench_bulk_ops.py, 20,000 per batch, best of two).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from connectors.store import changes, schema
from connectors.store.bulk.base import NOT_FOUND, Batch, Counts
from connectors.store.bulk.outcomes import actor
from connectors.store.bulk.records import jsonable

# `rec` locks the batch's records in id order (concurrent jobs cannot deadlock) and reads their
# before-images from the locked, latest versions; the record update, the audit rows and the item
# outcomes are all written from that one pass. Tables are reached through `id = ANY(ARRAY(...))`,
# a primary-key lookup per id: a join let the planner hash the whole table per batch, so each
# batch cost grew with the table, not the batch. Items in [lo, hi) are pending by construction:
# no status filter, the primary-key range is the plan. The error of a skipped item is the one
# `Batch.planned_mismatch` words.
_SET_BATCH = """
WITH it AS (
    SELECT seq, entity_id, before AS planned FROM bulk_job_items
    WHERE bulk_job_id = :job AND seq >= :lo AND seq < :hi
),
rec AS (
    SELECT t.id, jsonb_build_object({before_pairs}) AS before FROM {table} t
    WHERE t.id = ANY(ARRAY(SELECT entity_id FROM it)) AND t.account_id = :acct AND t.deleted_at IS NULL
    ORDER BY t.id FOR UPDATE OF t
),
dec AS (
    SELECT it.seq, it.planned, rec.id, rec.before,
           (rec.id IS NOT NULL AND (NOT :check_plan OR rec.before = it.planned)) AS ok
    FROM it LEFT JOIN rec ON rec.id = it.entity_id
),
upd AS (
    UPDATE {table} t SET {set_clause}, updated_at = :now
    WHERE t.id = ANY(ARRAY(SELECT id FROM dec WHERE ok))
),
aud AS (
    {audit}
),
itm AS (
    UPDATE bulk_job_items bi SET
        status = CASE WHEN dec.ok THEN 'succeeded' WHEN dec.id IS NULL THEN 'failed' ELSE 'skipped' END,
        error = CASE WHEN dec.ok THEN NULL WHEN dec.id IS NULL THEN CAST(:not_found AS text)
                ELSE 'changed since preview: planned ' || coalesce(dec.planned::text, 'null') || ', now ' || dec.before::text END,
        before = CASE WHEN dec.ok THEN dec.before ELSE bi.before END,
        after = CASE WHEN dec.ok THEN CAST(:after AS jsonb) END,
        updated_at = :now
    FROM dec WHERE bi.bulk_job_id = :job AND bi.seq >= :lo AND bi.seq < :hi AND bi.seq = dec.seq
    RETURNING bi.status
)
SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'skipped')
FROM itm
"""


def _audit() -> str:
    """The batch's audit rows, from the one audit writer (`changes.audit_insert`), as SQL text.

    Rows of the job's change set (the job id is its id), in item order, bound by name like the
    rest of the statement.
    """
    dec = sa.table(
        "dec",
        sa.column("seq", sa.Integer()),
        sa.column("id", sa.Uuid()),
        sa.column("before", schema.JSON),
        sa.column("ok", sa.Boolean()),
    )
    # untyped: a typed uuid would render `:job::UUID`, which sa.text() does not read as a parameter
    job = sa.bindparam("job")
    stamp = changes.AuditStamp(
        account_id=sa.bindparam("acct"),
        actor=sa.bindparam("actor", type_=sa.String()),
        change_set_id=job,
    )
    rows = (
        sa.select(
            dec.c.id.label("entity_id"),
            dec.c.before.label("before"),
            sa.cast(sa.bindparam("after", type_=sa.Text()), postgresql.JSONB).label("after"),
        )
        .where(dec.c.ok)
        .order_by(dec.c.seq)
    )
    insert = changes.audit_insert(
        stamp,
        sa.bindparam("op", type_=sa.String()),
        sa.bindparam("etype", type_=sa.String()),
        rows,
        now=sa.bindparam("now", type_=schema.TS),
    )
    # named parameters, as sa.text() takes them
    return str(insert.compile(dialect=postgresql.base.PGDialect(paramstyle="named")))


_SET_BATCH = _SET_BATCH.replace("{audit}", _audit().replace("{", "{{").replace("}", "}}"))


def apply(batch: Batch, values: dict[str, object], lo: int, hi: int) -> Counts:
    """Evaluate, apply and record the items [lo, hi) of a job writing `values`; (succeeded, failed, skipped)."""
    job, table = batch.job, batch.table
    quote = batch.conn.dialect.identifier_preparer.quote
    cols = list(values)
    # identifiers quoted by the dialect; every value, column names in the images included, bound
    sql = sa.text(
        _SET_BATCH.format(
            table=quote(table.name),
            before_pairs=", ".join(f"CAST(:k_{n} AS text), t.{quote(c)}" for n, c in enumerate(cols)),
            set_clause=", ".join(f"{quote(c)} = :v_{n}" for n, c in enumerate(cols)),
        )
    ).bindparams(*(sa.bindparam(f"v_{n}", type_=table.c[c].type) for n, c in enumerate(cols)))
    row = batch.conn.execute(
        sql,
        {
            "job": job.id,
            "lo": lo,
            "hi": hi,
            "acct": batch.account_id,
            "check_plan": batch.check_plan,
            "now": batch.now,
            "actor": actor(job),
            "op": job.operation,
            "etype": job.entity_type,
            "after": json.dumps(jsonable(values)),
            "not_found": NOT_FOUND,
            **{f"k_{n}": c for n, c in enumerate(cols)},
            **{f"v_{n}": values[c] for n, c in enumerate(cols)},
        },
    ).one()
    return int(row[0]), int(row[1]), int(row[2])
