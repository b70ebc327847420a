"""Operations that write the same column values to every record: status, stage, field update.

A rollback gives each record its before-image back (`changes.rollback`). On PostgreSQL a batch
runs as one statement (`set_batch_pg.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from connectors.store import registry, schema
from connectors.store.bulk import set_batch_pg
from connectors.store.bulk.base import Counts, Evaluation, Item, Operation, ParamsError, evaluate_each
from connectors.store.bulk.params import declared_value, str_param
from connectors.store.bulk.records import image, jsonable, load_records
from connectors.store.dialect import dialect_of


class SetFields(Operation):
    """Writes `values()` to every record found; the before-image holds those columns."""

    def values(self) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        values = self.values()
        after = jsonable(values)
        records = load_records(b.conn, b.table, b.account_id, [i.entity_id for i in items])
        outcomes, changed = evaluate_each(b, items, records, lambda _, row: image(row, values), lambda _: after)
        return Evaluation(outcomes, [o.entity_id for o in changed])

    def apply(self, evaluation: Evaluation) -> None:
        b = self.batch
        if evaluation.changes:
            b.conn.execute(
                b.table.update()
                .where(b.table.c.id.in_(evaluation.changes), b.table.c.account_id == b.account_id)
                .values(**self.values(), updated_at=b.now)
            )

    def apply_set_based(self, lo: int, hi: int) -> Counts | None:
        if not dialect_of(self.batch.conn).set_based_batches:
            return None
        return set_batch_pg.apply(self.batch, self.values(), lo, hi)


class StatusUpdate(SetFields):
    name = "status_update"

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"status": declared_value(entity_type, "status", str_param(params, "status", 32), settings)}

    def values(self) -> dict[str, Any]:
        return {"status": self.batch.params["status"]}


class StageTransition(SetFields):
    name = "stage_transition"

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"stage": declared_value(entity_type, "stage", str_param(params, "stage", 64), settings)}

    def values(self) -> dict[str, Any]:
        return {"stage": self.batch.params["stage"]}


class FieldUpdate(SetFields):
    name = "field_update"

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        fields = params.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ParamsError("params.fields must be a non-empty object of field: value", field="fields")
        allowed = registry.ENTITIES[entity_type].field_update_fields
        unknown = sorted(set(fields) - set(allowed))
        if unknown:
            raise ParamsError(
                f"fields not updatable on {entity_type}: {', '.join(unknown)} (allowed: {', '.join(allowed)})",
                field="fields",
                unknown=unknown,
                allowed=list(allowed),
            )
        table = schema.ENTITY_TABLES[entity_type]
        for name, value in fields.items():
            _check_field(table.c[name], name, value)
        return {
            "fields": {
                name: declared_value(entity_type, name, value, settings, param=f"fields.{name}")
                if isinstance(value, str)
                else value
                for name, value in fields.items()
            }
        }

    def values(self) -> dict[str, Any]:
        return dict(self.batch.params["fields"])


def _check_field(col: sa.Column, name: str, value: Any) -> None:
    if isinstance(col.type, sa.JSON):
        if not isinstance(value, dict):
            raise ParamsError(f"params.fields.{name} must be an object", field=name)
    elif value is not None:
        length = getattr(col.type, "length", None)
        if not isinstance(value, str) or (length and len(value) > length):
            raise ParamsError(f"params.fields.{name} must be a string of at most {length} characters", field=name)
        if not col.nullable and not value.strip():
            raise ParamsError(f"params.fields.{name} must not be empty", field=name)
    elif not col.nullable:
        raise ParamsError(f"params.fields.{name} cannot be null", field=name)
