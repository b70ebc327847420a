"""Every bulk operation by name, and the checks that pick one: the place a new operation is registered.

Which entity offers which operation is the registry's `Entity.operations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.store import registry
from connectors.store.bulk.automations import TriggerAutomations
from connectors.store.bulk.base import Batch, Operation, ParamsError
from connectors.store.bulk.contracts import ContractCreate
from connectors.store.bulk.delete import SoftDelete
from connectors.store.bulk.recollection import Recollection
from connectors.store.bulk.rollback import Rollback
from connectors.store.bulk.set_fields import FieldUpdate, StageTransition, StatusUpdate
from connectors.store.bulk.tags import TagsAdd, TagsRemove, TagsSet

CATALOG: dict[str, type[Operation]] = {
    op.name: op
    for op in (
        StatusUpdate,
        StageTransition,
        FieldUpdate,
        SoftDelete,
        TagsAdd,
        TagsRemove,
        TagsSet,
        TriggerAutomations,
        Recollection,
        ContractCreate,
        Rollback,
    )
}

# entity type -> the operations a caller may create on it
OPERATIONS: dict[str, tuple[str, ...]] = {n: e.operations for n, e in registry.ENTITIES.items()}
FIELD_ALLOW_LIST: dict[str, tuple[str, ...]] = {n: e.field_update_fields for n, e in registry.ENTITIES.items()}
# operations whose jobs a rollback can undo (a hard `delete` cannot)
ROLLBACKABLE = frozenset(name for name, op in CATALOG.items() if op.reversible)


def operation_class(name: str, params: Mapping[str, Any]) -> type[Operation]:
    """The class that runs a job of operation `name` with clean `params`."""
    return CATALOG[name].variant(params)


def operation_for(batch: Batch) -> Operation:
    """The operation of the batch's job, working on that batch."""
    return operation_class(batch.job.operation, batch.params)(batch)


def can_roll_back(name: str, params: Mapping[str, Any]) -> bool:
    return name in CATALOG and operation_class(name, params).reversible


def validate_params(
    entity_type: str,
    operation: str,
    params: Mapping[str, Any] | None,
    account_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check and normalise the params of an operation; raises `ParamsError`.

    Status and stage values must be in the entity's value set: `account_settings` (the
    account's `accounts.settings`) overrides the registry's defaults.
    """
    op = CATALOG.get(operation)
    if op is None:
        raise ParamsError(f"unknown operation {operation!r}", field="operation")
    return op.validate(entity_type, dict(params or {}), account_settings)
