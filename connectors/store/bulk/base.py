"""What a bulk operation is: the `Operation` protocol, its batch context and what it decides.

An operation is a small class with four parts:

- `validate` (a classmethod): the caller's params -> clean params, or `ParamsError`;
- `evaluate(items)`: load the batch's records and decide each item's outcome with its
  before/after images, writing nothing; what the batch would write goes in `Evaluation.changes`;
- `apply(evaluation)`: write those changes;
- `reversible`: whether a rollback can undo a bulk job of it. There is nothing to write for
  that: a bulk job is a change set, and `changes.rollback` undoes any change set from its audit rows and
  the provenance of what it created (`rollback.py`). An operation that creates rows names
  them (`creates`) so the rollback can report each item's outcome.

A new operation is one module holding its class and an entry in `catalog.py`, plus its name in
the entity's `operations` in the registry.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa

from connectors.store import schema

NOT_FOUND = "not found"

# (succeeded, failed, skipped)
Counts = tuple[int, int, int]


class ParamsError(ValueError):
    """Params that do not fit the operation; `details` names the offending fields."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Item:
    """A pending item of a batch: its position, its record and the before-image of its plan."""

    seq: int
    entity_id: uuid.UUID
    planned: Any


@dataclass
class Outcome:
    seq: int
    entity_id: uuid.UUID
    status: str
    error: str | None = None
    before: Any = None
    after: Any = None
    # audit rows: (entity_type, entity_id, before, after)
    audit: list[tuple[str, uuid.UUID, Any, Any]] = field(default_factory=list)


def succeeded(item: Item, before: Any, after: Any, entity_type: str, entity_id: uuid.UUID | None = None) -> Outcome:
    """A changed record, with its one audit row (on `entity_id`, by default the item's record)."""
    audited = item.entity_id if entity_id is None else entity_id
    return Outcome(item.seq, item.entity_id, "succeeded", None, before, after, [(entity_type, audited, before, after)])


def evaluate_each(
    batch: Batch,
    items: Sequence[Item],
    records: Mapping[uuid.UUID, Any],
    before_of: Callable[[uuid.UUID, Any], Any],
    after_of: Callable[[Any], Any],
    refused: Callable[[uuid.UUID], str | None] = lambda _: None,
) -> tuple[list[Outcome], list[Outcome]]:
    """The shape of an operation's evaluate on records: for each item, its record not in RECORDS
    fails (not found), one REFUSED names fails with that reason, one whose before-image is not
    the previewed one is skipped, and any other succeeds with BEFORE_OF(id, record) →
    AFTER_OF(before) and its audit row. Returns (every outcome, the succeeded ones)."""
    outcomes: list[Outcome] = []
    changed: list[Outcome] = []
    for item in items:
        row = records.get(item.entity_id)
        if row is None:
            outcomes.append(Outcome(item.seq, item.entity_id, "failed", NOT_FOUND, before=item.planned))
            continue
        why = refused(item.entity_id)
        if why:
            outcomes.append(Outcome(item.seq, item.entity_id, "failed", why))
            continue
        before = before_of(item.entity_id, row)
        mismatch = batch.planned_mismatch(item, before)
        if mismatch:
            outcomes.append(Outcome(item.seq, item.entity_id, "skipped", mismatch, before=item.planned))
            continue
        outcome = succeeded(item, before, after_of(before), batch.entity_type)
        outcomes.append(outcome)
        changed.append(outcome)
    return outcomes, changed


@dataclass
class Evaluation:
    """An operation's decision on a batch: one outcome per item and what `apply` writes."""

    outcomes: list[Outcome]
    changes: Any = None


@dataclass(frozen=True)
class Batch:
    """What an operation works in: the open transaction, the job and the batch's clock."""

    conn: sa.Connection
    job: sa.Row
    now: datetime
    # skip records whose before-image is no longer the previewed one
    check_plan: bool = False

    @property
    def account_id(self) -> uuid.UUID:
        return self.job.account_id

    @property
    def entity_type(self) -> str:
        return self.job.entity_type

    @property
    def table(self) -> sa.Table:
        return schema.ENTITY_TABLES[self.job.entity_type]

    @property
    def params(self) -> Mapping[str, Any]:
        return self.job.params or {}

    def planned_mismatch(self, item: Item, before: Any) -> str | None:
        """Why a previewed record is skipped: its before-image is not the one the plan showed."""
        if self.check_plan and item.planned != before:
            return f"changed since preview: planned {json.dumps(item.planned)}, now {json.dumps(before)}"
        return None


class Operation:
    """One bulk operation; an instance works on one batch."""

    name: ClassVar[str]
    # a rollback can undo its bulk jobs (not: a hard delete, messages sent, a rollback)
    reversible: ClassVar[bool] = True
    # an operation that creates one row per item: (the row's table, its column naming the item's record)
    creates: ClassVar[tuple[sa.Table, str] | None] = None

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def variant(cls, params: Mapping[str, Any]) -> type[Operation]:
        """The class that runs a job of this name with these (clean) params."""
        return cls

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        raise NotImplementedError

    def apply(self, evaluation: Evaluation) -> None:
        raise NotImplementedError

    def apply_set_based(self, lo: int, hi: int) -> Counts | None:
        """Evaluate, apply and record the items [lo, hi) in one statement, when the database can."""
        return None
