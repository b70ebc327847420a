"""`delete`: a soft delete (sets `deleted_at`; a rollback clears it) or, with `hard`, a hard delete."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from connectors.store import registry, schema
from connectors.store.bulk.base import Evaluation, Item, Operation, ParamsError, evaluate_each
from connectors.store.bulk.records import jsonable, load_records
from connectors.store.bulk.set_fields import SetFields

# dependents that block a hard delete (table, column), from the schema's foreign keys
_BLOCKERS: dict[str, tuple[tuple[sa.Table, str], ...]] = {n: e.delete_blockers for n, e in registry.ENTITIES.items()}


def _validate(params: Mapping[str, Any]) -> dict[str, Any]:
    hard = params.get("hard", False)
    if not isinstance(hard, bool):
        raise ParamsError("params.hard must be a boolean", field="hard")
    return {"hard": hard}


class SoftDelete(SetFields):
    name = "delete"

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return _validate(params)

    @classmethod
    def variant(cls, params: Mapping[str, Any]) -> type[Operation]:
        return HardDelete if params.get("hard") else cls

    def values(self) -> dict[str, Any]:
        return {"deleted_at": self.batch.now}


class HardDelete(Operation):
    """Removes records and their tags; a record other rows point at fails, naming them."""

    name = "delete"
    # the rows are gone (their audit rows hold them)
    reversible = False

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return _validate(params)

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        records = load_records(b.conn, b.table, b.account_id, [i.entity_id for i in items], include_deleted=True)
        blocked = self._blocked(list(records))
        outcomes, changed = evaluate_each(
            b,
            items,
            records,
            lambda _, row: {k: jsonable(v) for k, v in row._mapping.items()},
            lambda _: None,
            refused=lambda i: f"cannot hard delete: {blocked[i]}" if i in blocked else None,
        )
        return Evaluation(outcomes, [o.entity_id for o in changed])

    def _blocked(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Why each referenced record cannot go: the first table found pointing at it."""
        blocked: dict[uuid.UUID, str] = {}
        if not ids:
            return blocked
        for table, column in _BLOCKERS[self.batch.entity_type]:
            refs = self.batch.conn.scalars(sa.select(table.c[column]).where(table.c[column].in_(ids)).distinct())
            for ref in refs:
                blocked.setdefault(ref, f"referenced by {table.name}")
        return blocked

    def apply(self, evaluation: Evaluation) -> None:
        b, ok = self.batch, evaluation.changes
        if not ok:
            return
        t = schema.tags
        b.conn.execute(
            t.delete().where(t.c.account_id == b.account_id, t.c.entity_type == b.entity_type, t.c.entity_id.in_(ok))
        )
        b.conn.execute(b.table.delete().where(b.table.c.id.in_(ok), b.table.c.account_id == b.account_id))
