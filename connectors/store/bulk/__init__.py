"""Bulk operations on account records: operations, plans, and batched, audited writes.

| module | what it holds |
|---|---|
| `base.py` | the `Operation` protocol (validate, evaluate, apply; reversible, creates), `Batch`, `Outcome` |
| `catalog.py` | every operation by name; `validate_params` |
| `set_fields.py`, `delete.py`, `tags.py`, `automations.py`, `recollection.py`, `contracts.py` | one operation family each |
| `rollback.py` | the rollback job: `changes.rollback` on the original job's change set, and each item's outcome |
| `set_batch_pg.py` | a set operation's batch as one PostgreSQL statement |
| `runner.py` | start, batch loop, plan, finish |
| `outcomes.py` | item outcomes, audit rows, failure summaries |
| `jobs.py` | the job and item rows the service reads and writes |
| `selection.py` | records chosen by filter (the export filter language): one INSERT ... SELECT of their ids into the items |
| `records.py`, `params.py` | shared record access, param checks (PostgreSQL vs SQLite: `connectors/store/dialect.py`) |
"""

from connectors.store import registry
from connectors.store.bulk.automations import AUTOMATION_ACTIONS, check_automations
from connectors.store.bulk.base import NOT_FOUND, Outcome, ParamsError, utcnow
from connectors.store.bulk.catalog import (
    CATALOG,
    FIELD_ALLOW_LIST,
    OPERATIONS,
    ROLLBACKABLE,
    can_roll_back,
    validate_params,
)
from connectors.store.bulk.contracts import HIRED_STAGES, hiring_completions
from connectors.store.bulk.jobs import load_items
from connectors.store.bulk.outcomes import failure_reasons
from connectors.store.bulk.params import declared_value
from connectors.store.bulk.records import jsonable
from connectors.store.bulk.rollback import ROLLBACK
from connectors.store.bulk.runner import (
    PREVIEW_EXPIRED,
    BatchResult,
    JobGone,
    SplitInRanges,
    expire_previews,
    finish_job,
    plan_job,
    process_next_batch,
    run_job,
    start_job,
)

# the one transient rule of every write path, which the batch loop retries on
from connectors.store.dialect import DIALECTS
from connectors.store.faults import is_transient as _is_transient

# records per batch by database
DEFAULT_BATCH_SIZE = {name: d.bulk_batch_size for name, d in DIALECTS.items()}

ENTITY_ALIASES = registry.ALIASES
GENERIC_OPERATIONS = registry.GENERIC_OPERATIONS


def canonical_entity_type(entity_type: str) -> str:
    return ENTITY_ALIASES.get(entity_type, entity_type)


__all__ = [
    "AUTOMATION_ACTIONS",
    "CATALOG",
    "DEFAULT_BATCH_SIZE",
    "ENTITY_ALIASES",
    "FIELD_ALLOW_LIST",
    "GENERIC_OPERATIONS",
    "HIRED_STAGES",
    "NOT_FOUND",
    "OPERATIONS",
    "PREVIEW_EXPIRED",
    "ROLLBACK",
    "ROLLBACKABLE",
    "BatchResult",
    "JobGone",
    "Outcome",
    "ParamsError",
    "SplitInRanges",
    "_is_transient",
    "can_roll_back",
    "canonical_entity_type",
    "check_automations",
    "declared_value",
    "expire_previews",
    "failure_reasons",
    "finish_job",
    "hiring_completions",
    "jsonable",
    "load_items",
    "plan_job",
    "process_next_batch",
    "run_job",
    "start_job",
    "utcnow",
    "validate_params",
]
