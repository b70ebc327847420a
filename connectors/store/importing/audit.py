"""The audit rows an import writes: one per record it creates or updates."""

from __future__ import annotations

import sqlalchemy as sa

from connectors.store import changes
from connectors.store.dialect import inline
from connectors.store.importing.staging import ACCT, ACTOR, IMP, NOW

# the import's change set (its id is the import's), bound per batch like the rest of its statements;
# a sync run writes through the same writer: `:imp` is then the sync run (its change set)
STAMP = changes.AuditStamp(account_id=ACCT, actor=ACTOR, change_set_id=IMP)


def audit_rows(operation: str, entity_type: str, rows: sa.Select, stamp: changes.AuditStamp = STAMP) -> sa.Insert:
    """INSERT ... SELECT of one audit row per row of ROWS, whose columns are (entity_id, before, after).

    Each row carries the account, the import (its change set), its actor and the batch's time
    (`changes.audit_insert`, the one audit writer).
    """
    entity_id, before, after = rows.selected_columns
    labelled = rows.with_only_columns(
        entity_id.label("entity_id"), before.label("before"), after.label("after"), maintain_column_froms=True
    )
    return changes.audit_insert(stamp, inline(operation), inline(entity_type), labelled, now=NOW)
