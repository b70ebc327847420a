"""The audit rows an import writes: one per record it creates or updates."""

from __future__ import annotations

import sqlalchemy as sa

from connectors.store.dialect import inline
from connectors.store.importing.staging import ACCT, ACTOR, IMP, NOW
from connectors.store.schema import audit_log

COLUMNS = (
    "account_id",
    "occurred_at",
    "actor",
    "operation",
    "entity_type",
    "entity_id",
    "import_id",
    "before",
    "after",
)


def audit_rows(operation: str, entity_type: str, rows: sa.Select) -> sa.Insert:
    """INSERT ... SELECT of one audit row per row of ROWS, whose columns are (entity_id, before, after).

    Each row carries the account, the import, its actor and the batch's time.
    """
    entity_id, before, after = rows.selected_columns
    stamped = rows.with_only_columns(
        ACCT,
        NOW,
        ACTOR,
        inline(operation),
        inline(entity_type),
        entity_id,
        IMP,
        before,
        after,
        maintain_column_froms=True,
    )
    return audit_log.insert().from_select(COLUMNS, stamped)
