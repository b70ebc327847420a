"""change sets: one spine under imports, bulk jobs, syncs and rollbacks (docs/change-sets.md)

- `change_sets`: one row per import, bulk job, sync run, document import or rollback. A row of
  `import_history`, `bulk_jobs` or `sync_runs` shares its change set's id and now references it
  (foreign key), so none exists without one. Their user-visible columns do not change.
- `audit_log.change_set_id`: the change set that wrote the row (partial index, like the others).

Existing data is carried across: every history, bulk-job and sync-run row gets its change set
(a bulk job's rollback keeps `rollback_of`), and every audit row its change set id. The audit rows
of an import's rollback (`import.rollback.*`, which carried the import's id) get a change set of
kind `rollback` per rollback pass (one pass wrote all its rows at one instant), with the counts
the history row kept for that pass. The append-only triggers are set aside for the backfill only.

The downgrade drops the column, the foreign keys and the table; every audit row still carries
the import, bulk-job or sync-run id the previous schema links by (the spine's writer keeps
filling them), so nothing the previous schema could hold is lost.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# capability table -> the kind of its change sets, the column that says when it began
BACKED = (
    ("import_history", "import", "started_at"),
    ("bulk_jobs", "bulk_job", "created_at"),
    ("sync_runs", "sync", "started_at"),
)
_SQLITE_APPEND_ONLY = [
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (UPDATE refused)'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only (DELETE refused)'); END",
]
_KINDS = "'import', 'bulk_job', 'sync', 'document_import', 'rollback'"


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _append_only(on: bool) -> None:
    if _pg():
        op.execute(f"ALTER TABLE audit_log {'ENABLE' if on else 'DISABLE'} TRIGGER audit_log_append_only")
        return
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    if on:
        for statement in _SQLITE_APPEND_ONLY:
            op.execute(statement)


def _foreign_keys(add: bool) -> None:
    if not _pg():
        # the tables are rebuilt; import_flags points at import_history while it is: check at commit
        op.execute("PRAGMA defer_foreign_keys = ON")
    for table, _, _ in BACKED:
        name = f"fk_{table}_id_change_sets"
        if _pg():
            if add:
                op.create_foreign_key(name, table, "change_sets", ["id"], ["id"])
            else:
                op.drop_constraint(name, table, type_="foreignkey")
            continue
        with op.batch_alter_table(table, recreate="always") as batch_op:
            if add:
                batch_op.create_foreign_key(name, "change_sets", ["id"], ["id"])
            else:
                batch_op.drop_constraint(name, type_="foreignkey")


def _import_rollbacks(conn: sa.Connection) -> None:
    """A change set per pass of each import rollback, its audit rows pointed at it."""
    audit = sa.table(
        "audit_log",
        sa.column("account_id", sa.Uuid()),
        sa.column("occurred_at", sa.DateTime(timezone=True)),
        sa.column("actor", sa.String()),
        sa.column("operation", sa.String()),
        sa.column("import_id", sa.Uuid()),
        sa.column("change_set_id", sa.Uuid()),
    )
    history = sa.table("import_history", sa.column("id", sa.Uuid()), sa.column("details", _json()))
    change_sets = _change_sets_table()
    passes = conn.execute(
        sa.select(audit.c.import_id, audit.c.account_id, audit.c.occurred_at, sa.func.min(audit.c.actor))
        .where(audit.c.import_id.is_not(None), audit.c.operation.like("import.rollback.%"))
        .group_by(audit.c.import_id, audit.c.account_id, audit.c.occurred_at)
        .order_by(audit.c.import_id, audit.c.occurred_at)
    ).all()
    by_import: dict[uuid.UUID, list] = {}
    for row in passes:
        by_import.setdefault(row[0], []).append(row)
    for import_id, rows in by_import.items():
        details = conn.execute(sa.select(history.c.details).where(history.c.id == import_id)).scalar()
        if isinstance(details, str):
            details = json.loads(details)
        details = details or {}
        kept = details.get("rollback_passes") or ([details["rollback"]] if "rollback" in details else [])
        # passes that wrote nothing left no audit row: the last passes are the ones that did
        counts = kept[len(kept) - len(rows) :] if len(kept) >= len(rows) else [None] * len(rows)
        for (_, account_id, occurred_at, actor), n in zip(rows, counts, strict=True):
            change_set_id = uuid.uuid4()
            conn.execute(
                change_sets.insert().values(
                    id=change_set_id,
                    account_id=account_id,
                    kind="rollback",
                    opened_at=occurred_at,
                    rollback_of=import_id,
                    actor=actor,
                    status="completed",
                    counts=n or {},
                    finished_at=occurred_at,
                )
            )
            conn.execute(
                audit.update()
                .where(
                    audit.c.import_id == import_id,
                    audit.c.occurred_at == occurred_at,
                    audit.c.operation.like("import.rollback.%"),
                )
                .values(change_set_id=change_set_id)
            )


def _change_sets_table() -> sa.TableClause:
    return sa.table(
        "change_sets",
        sa.column("id", sa.Uuid()),
        sa.column("account_id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("opened_at", sa.DateTime(timezone=True)),
        sa.column("rollback_of", sa.Uuid()),
        sa.column("actor", sa.String()),
        sa.column("status", sa.String()),
        sa.column("counts", _json()),
        sa.column("finished_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    op.create_table(
        "change_sets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.Column("rollback_of", sa.Uuid(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("dagster_run_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("counts", _json(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name="ck_change_sets_kind_values"),
        sa.CheckConstraint(
            "kind NOT IN ('import', 'bulk_job', 'sync') OR (actor IS NULL AND dagster_run_id IS NULL "
            "AND status IS NULL AND counts IS NULL AND finished_at IS NULL)",
            name="ck_change_sets_backed_fields_once",
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_change_sets_account_id_accounts"),
        sa.ForeignKeyConstraint(["rollback_of"], ["change_sets.id"], name="fk_change_sets_rollback_of_change_sets"),
        sa.PrimaryKeyConstraint("id", name="pk_change_sets"),
    )
    op.create_index("ix_change_sets_account_id_opened_at", "change_sets", ["account_id", "opened_at"])
    op.create_index("ix_change_sets_rollback_of", "change_sets", ["rollback_of"])
    for table, kind, began in BACKED:
        rollback_of = "rollback_of" if table == "bulk_jobs" else "NULL"
        op.execute(
            f"INSERT INTO change_sets (id, account_id, kind, opened_at, rollback_of) "
            f"SELECT id, account_id, '{kind}', {began}, {rollback_of} FROM {table}"
        )

    op.add_column("audit_log", sa.Column("change_set_id", sa.Uuid(), nullable=True))
    _append_only(False)
    conn = op.get_bind()
    _import_rollbacks(conn)
    # one pass over the log: a row's change set is the import, bulk job or sync run it names
    op.execute(
        "UPDATE audit_log SET change_set_id = coalesce(import_id, bulk_job_id, sync_run_id) "
        "WHERE change_set_id IS NULL AND (import_id IS NOT NULL OR bulk_job_id IS NOT NULL OR sync_run_id IS NOT NULL)"
    )
    _append_only(True)
    where = sa.text("change_set_id IS NOT NULL")
    op.create_index(
        "ix_audit_log_change_set_id", "audit_log", ["change_set_id"], postgresql_where=where, sqlite_where=where
    )
    _foreign_keys(add=True)


def downgrade() -> None:
    _foreign_keys(add=False)
    op.drop_index("ix_audit_log_change_set_id", table_name="audit_log")
    if _pg():
        op.drop_column("audit_log", "change_set_id")
    else:
        # SQLite drops a column in place (3.35+); the append-only triggers stay as they are
        op.execute("ALTER TABLE audit_log DROP COLUMN change_set_id")
    op.drop_index("ix_change_sets_rollback_of", table_name="change_sets")
    op.drop_index("ix_change_sets_account_id_opened_at", table_name="change_sets")
    op.drop_table("change_sets")
