"""Operations that write the same column values to every record: status, stage, field update.

Their rollback writes each record's before-image back (`RestoreFields`). On PostgreSQL a batch
runs as one statement (`set_batch_pg.py`).
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa

from connectors.store import registry, schema
from connectors.store.bulk import set_batch_pg
from connectors.store.bulk.base import (
    NOT_FOUND,
    Counts,
    Evaluation,
    Item,
    Operation,
    Outcome,
    ParamsError,
    Undo,
    succeeded,
)
from connectors.store.bulk.dialect import dialect_of
from connectors.store.bulk.params import declared_value, str_param
from connectors.store.bulk.records import from_json, image, jsonable, load_records
from connectors.store.bulk.rollback import changed_since_job


class RestoreFields(Undo):
    """Writes each record's before-image back, unless the record changed since the job."""

    # soft-deleted records are rolled back too (the undo of a soft delete)
    include_deleted: ClassVar[bool] = False
    # whether the record still holds what the job wrote: (now, what the job wrote)
    unchanged: ClassVar[Callable[[Any, Any], bool]] = staticmethod(operator.eq)

    def evaluate(self, items: Sequence[Item], done: Mapping[uuid.UUID, sa.Row]) -> Evaluation:
        b = self.batch
        ids = [i.entity_id for i in items]
        records = load_records(b.conn, b.table, b.account_id, ids, include_deleted=self.include_deleted)
        outcomes: list[Outcome] = []
        # records restored to the same values share one UPDATE
        restores: dict[tuple, list[uuid.UUID]] = {}
        for item in items:
            row, orig = records.get(item.entity_id), done.get(item.entity_id)
            if row is None or orig is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND))
                continue
            now = image(row, orig.after.keys())
            conflict = changed_since_job(orig.after, now, unchanged=self.unchanged)
            if conflict:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", conflict, before=now))
                continue
            key = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in orig.before.items()))
            restores.setdefault(key, []).append(item.entity_id)
            outcomes.append(succeeded(item, now, orig.before, b.entity_type))
        return Evaluation(outcomes, restores)

    def apply(self, evaluation: Evaluation) -> None:
        b = self.batch
        for key, entity_ids in evaluation.changes.items():
            values = {k: from_json(b.table, k, json.loads(v)) for k, v in key}
            b.conn.execute(
                b.table.update()
                .where(b.table.c.id.in_(entity_ids), b.table.c.account_id == b.account_id)
                .values(**values, updated_at=b.now)
            )


class SetFields(Operation):
    """Writes `values()` to every record found; the before-image holds those columns."""

    undo = RestoreFields

    def values(self) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        values = self.values()
        cols = list(values)
        after = jsonable(values)
        records = load_records(b.conn, b.table, b.account_id, [i.entity_id for i in items])
        outcomes: list[Outcome] = []
        ok_ids: list[uuid.UUID] = []
        for item in items:
            row = records.get(item.entity_id)
            if row is None:
                outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
                continue
            before = image(row, cols)
            mismatch = b.planned_mismatch(item, before)
            if mismatch:
                outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
                continue
            outcomes.append(succeeded(item, before, after, b.entity_type))
            ok_ids.append(item.entity_id)
        return Evaluation(outcomes, ok_ids)

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
