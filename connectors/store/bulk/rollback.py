"""The rollback of a bulk job: a job of its own that reverses another job's succeeded items.

Each operation says how it is reversed (its `undo`: restore before-images, restore tags, retract
what it created); `Rollback` finds the original job's succeeded items and hands them to that
undo. A record changed since the job is skipped and reported (`changed_since_job`).
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from connectors.store import schema
from connectors.store.bulk.base import NOT_FOUND, Evaluation, Item, Operation, Outcome, Undo

ROLLBACK = "rollback"

items_t = schema.bulk_job_items
jobs_t = schema.bulk_jobs


def changed_since_job(wrote: Any, now: Any, *, unchanged: Callable[[Any, Any], bool] = operator.eq) -> str | None:
    """Why a record is not rolled back: it no longer holds what the job wrote; None when it does."""
    if unchanged(now, wrote):
        return None
    return f"changed since the job: expected {json.dumps(wrote)}, now {json.dumps(now)}"


class Rollback(Operation):
    """Reverses the job `params.rollback_of` with that job's operation's `undo`."""

    name = ROLLBACK

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return params

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        # the catalog imports every operation, this one included
        from connectors.store.bulk.catalog import operation_class

        b = self.batch
        original = b.conn.execute(sa.select(jobs_t).where(jobs_t.c.id == uuid.UUID(str(b.params["rollback_of"])))).one()
        undo = operation_class(original.operation, original.params or {}).undo
        if undo is None:
            raise ValueError(f"bulk job {original.id}: {original.operation} cannot be rolled back")
        self._undo = undo(b, original)
        return self._undo.evaluate(items, _succeeded_items(b.conn, original.id, [i.entity_id for i in items]))

    def apply(self, evaluation: Evaluation) -> None:
        self._undo.apply(evaluation)


def _succeeded_items(conn: sa.Connection, job_id: uuid.UUID, ids: list[uuid.UUID]) -> dict[uuid.UUID, sa.Row]:
    # the status inline, not a bind parameter: a generic plan must still match the partial index
    succeeded = sa.bindparam("succeeded", "succeeded", literal_execute=True)
    stmt = sa.select(items_t.c.entity_id, items_t.c.before, items_t.c.after).where(
        items_t.c.bulk_job_id == job_id, items_t.c.entity_id.in_(ids), items_t.c.status == succeeded
    )
    return {r.entity_id: r for r in conn.execute(stmt)}


class RetractCreated(Undo):
    """Retracts the rows a job created (one per item), unless already retracted."""

    table: ClassVar[sa.Table]
    # the key of the item's after-image that holds the created row's id
    key: ClassVar[str]

    def retraction(self, row: sa.Row) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """(before, after, whether the row is still live) of retracting `row`."""
        raise NotImplementedError

    def retracted(self) -> dict[str, Any]:
        """The column values a retracted row gets."""
        raise NotImplementedError

    def audited(self, item: Item, row: sa.Row) -> tuple[str, uuid.UUID]:
        """The (entity type, id) the audit row of a retraction names."""
        raise NotImplementedError

    def evaluate(self, items: Sequence[Item], done: Mapping[uuid.UUID, sa.Row]) -> Evaluation:
        b, t, key = self.batch, self.table, self.key
        created = [uuid.UUID(r.after[key]) for r in done.values()]
        rows = {}
        if created:
            rows = {
                r.id: r for r in b.conn.execute(sa.select(t).where(t.c.id.in_(created), t.c.account_id == b.account_id))
            }
        outcomes: list[Outcome] = []
        retract: list[uuid.UUID] = []
        for item in items:
            orig = done.get(item.entity_id)
            row = rows.get(uuid.UUID(orig.after[key])) if orig else None
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND))
                continue
            before, after, live = self.retraction(row)
            if not live:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", f"already undone: {json.dumps(before)}"))
                continue
            entity_type, entity_id = self.audited(item, row)
            audit = (entity_type, entity_id, {key: str(row.id), **before}, {key: str(row.id), **after})
            outcomes.append(Outcome(item.seq, item.entity_id, "succeeded", None, before, after, [audit]))
            retract.append(row.id)
        return Evaluation(outcomes, retract)

    def apply(self, evaluation: Evaluation) -> None:
        b, t = self.batch, self.table
        if evaluation.changes:
            b.conn.execute(
                t.update().where(t.c.id.in_(evaluation.changes)).values(**self.retracted(), updated_at=b.now)
            )
