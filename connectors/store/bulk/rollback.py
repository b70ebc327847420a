"""The rollback of a bulk job: a bulk job of its own, whose work is the spine's one rollback.

`create_rollback` (pipelines/bulk/service.py) makes a bulk job of operation `rollback` with one
item per record the original bulk job changed. Its first batch runs `changes.rollback` on the
original's change set, as the rollback's own change set (so its audit rows name the rollback
bulk job, `bulk_job.rollback.restore | delete | close`), and in the same transaction gives every
item its outcome, from what that rollback wrote:

- succeeded: the rollback wrote the record back (the item's before/after are its audit row's);
- skipped, "changed since the bulk job": another change set changed the record since
  (`changes.changed_since`, the conflict the rollback leaves alone);
- skipped, "nothing left to undo": an earlier rollback or a later change already did;
- failed, "not found": the record is gone.

Later batches count their items' outcomes, so the counters move as for any bulk job. Like an
import's rollback it is one transaction and set-based (a few statements per entity and one
UPDATE of the items per outcome): no record passes through Python.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from connectors.store import changes, schema
from connectors.store.bulk import jobs
from connectors.store.bulk.base import NOT_FOUND, Counts, Evaluation, Item, Operation
from connectors.store.bulk.outcomes import change_set, db_error_text
from connectors.store.faults import is_transient

ROLLBACK = "rollback"
CHANGED_SINCE = "changed since the bulk job: another change set changed the record after it"
NOTHING_LEFT = "nothing left to undo: already rolled back or changed back"

items_t = schema.bulk_job_items
_ENTITY_OF_TABLE = {t.name: name for name, t in schema.ENTITY_TABLES.items()}


class Rollback(Operation):
    """Undoes the bulk job `params.rollback_of` with `changes.rollback`."""

    name = ROLLBACK
    # a rollback is not rolled back: run the original bulk job again instead
    reversible = False

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return params

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        raise TypeError("a bulk job's rollback runs as one change set (apply_set_based), not item by item")

    def apply_set_based(self, lo: int, hi: int) -> Counts:
        b = self.batch
        pending = sa.exists().where(
            items_t.c.bulk_job_id == b.job.id, items_t.c.seq >= lo, items_t.c.seq < hi, items_t.c.status == "pending"
        )
        if b.conn.scalar(sa.select(pending)):
            self._roll_back()
        return _counts(b.conn, b.job.id, lo, hi)

    def _roll_back(self) -> None:
        b = self.batch
        from connectors.store.bulk.catalog import operation_class  # the catalog imports this module

        original = jobs.summary_row(b.conn, uuid.UUID(str(b.params["rollback_of"])))
        cs = change_set(b.job)
        try:
            with b.conn.begin_nested():
                changes.rollback(b.conn, original.id, account_id=b.account_id, actor=cs.actor, change_set=cs)
        except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
            # the rollback is one change set: a record it cannot write back fails all of it
            if is_transient(exc):
                raise
            _fail_pending(b.conn, b.job.id, db_error_text(exc), b.now)
            return
        creates = operation_class(original.operation, original.params or {}).creates
        _decide(b.conn, b.job, original, creates, b.now)


def _counts(conn: sa.Connection, job_id: uuid.UUID, lo: int, hi: int) -> Counts:
    rows = conn.execute(
        sa.select(items_t.c.status, sa.func.count())
        .where(items_t.c.bulk_job_id == job_id, items_t.c.seq >= lo, items_t.c.seq < hi)
        .group_by(items_t.c.status)
    )
    n = dict(rows.all())
    return n.get("succeeded", 0), n.get("failed", 0), n.get("skipped", 0)


def _fail_pending(conn: sa.Connection, job_id: uuid.UUID, error: str, now: Any) -> None:
    conn.execute(
        items_t.update()
        .where(items_t.c.bulk_job_id == job_id, items_t.c.status == "pending")
        .values(status="failed", error=error, updated_at=now)
    )


def _decide(conn: sa.Connection, job: sa.Row, original: sa.Row, creates: tuple[sa.Table, str] | None, now: Any) -> None:
    """Every pending item's outcome, from the rollback's audit rows and the conflict check."""
    i, acct = items_t, job.account_id
    if creates is None:
        # the item's record is the record the original bulk job changed
        table, entity_type = schema.ENTITY_TABLES[original.entity_type], original.entity_type
        record: sa.ColumnElement = i.c.entity_id
        exists = sa.exists().where(table.c.id == i.c.entity_id, table.c.account_id == acct)
    else:
        # the row the original bulk job created for the item's record
        table, owner = creates
        entity_type = _ENTITY_OF_TABLE.get(table.name, table.name)
        made = sa.and_(
            table.c[owner] == i.c.entity_id, table.c.account_id == acct, changes.provenance(table) == original.id
        )
        record = sa.select(table.c.id).where(made).limit(1).scalar_subquery()
        exists = sa.exists().where(made)
    a = schema.audit_log.alias("undo")
    wrote = (
        sa.select(sa.func.min(a.c.id))
        .where(
            a.c.account_id == acct,
            a.c.entity_type == entity_type,
            a.c.entity_id == record,
            a.c.change_set_id == job.id,
        )
        .scalar_subquery()
    )
    img = schema.audit_log.alias("img")

    def image(column: str) -> sa.ScalarSelect:
        return sa.select(img.c[column]).where(img.c.id == wrote).scalar_subquery()

    mine = [i.c.bulk_job_id == job.id, i.c.status == "pending"]
    conn.execute(
        i.update()
        .where(*mine, wrote.is_not(None))
        .values(status="succeeded", error=None, before=image("before"), after=image("after"), updated_at=now)
    )
    changed = changes.changed_since(original.id, entity_type, record, account_id=acct)
    for where, status, error in (
        (sa.and_(exists, changed), "skipped", CHANGED_SINCE),
        (sa.not_(exists), "failed", NOT_FOUND),
        (sa.true(), "skipped", NOTHING_LEFT),
    ):
        conn.execute(i.update().where(*mine, where).values(status=status, error=error, updated_at=now))
