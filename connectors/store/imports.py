"""File imports in the record store: the writer (`connectors.store.importing`) and the rollback.

The set-based writer lives in the `importing` package, one module per step; its names are
re-exported here for the code that imports them from this module. The rollback below undoes
one import set-based: updated records get their first before-image back, created ones are
deleted, every change audited.

Provenance: created records carry `import_id`; every created or updated record has an audit
row with the import id, the actor, before and after.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from connectors.store.dialect import dialect_of
from connectors.store.importing import OUTCOMES, BatchOutcome, ImportWriter, WriteFailed
from connectors.store.importing.errors import db_reason as _db_reason
from connectors.store.schema import ENTITY_TABLES, applications, contracts, form_submissions

__all__ = [
    "OUTCOMES",
    "BatchOutcome",
    "ImportRollback",
    "ImportWriter",
    "RollbackBlocked",
    "WriteFailed",
    "finish_run_imports",
    "serialized_batches",
]

# every audit row a rollback writes: INSERT ... SELECT of these columns
AUDIT_INSERT = "INSERT INTO audit_log (account_id, occurred_at, actor, operation, entity_type, entity_id, import_id, before, after) "
# PostgreSQL: held by each import batch and each rollback until it commits, per account (:acct)
ACCOUNT_IMPORT_LOCK = "SELECT pg_advisory_xact_lock(hashtext('bulkops.import'), hashtext(CAST(:acct AS text)))"


@contextlib.contextmanager
def serialized_batches(conn: sa.Connection) -> Iterator[None]:
    """On SQLite, make CONN's transactions start with `BEGIN IMMEDIATE` while the block runs.

    A batch reads the records it matches against, then writes; begun deferred, a batch that read
    before a concurrent import's batch committed cannot write any more ("database is locked",
    which no busy timeout cures). Immediate, it waits (busy_timeout) for the write lock first and
    then reads what the other batch committed. PostgreSQL batches take an advisory lock instead
    (`ImportWriter.write_batch`).
    """
    with dialect_of(conn).serialized_batches(conn):
        yield


def _db_uuid(pg: bool, value: uuid.UUID) -> Any:
    """A uuid bound into raw SQL as each dialect stores it (SQLite: 32 hex digits)."""
    return value if pg else value.hex


def _db_now(pg: bool) -> Any:
    """Now, bound into raw SQL as each dialect stores timestamps."""
    now = datetime.now(UTC)
    return now if pg else now.strftime("%Y-%m-%d %H:%M:%S.%f")


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)] or [[]]


def _json_object(pg: bool, pairs: list[tuple[str, str]]) -> str:
    """SQL for a JSON object from (key, sql expression) pairs (chunks: jsonb_build_object takes 100 args)."""
    if not pairs:
        return "'{}'::jsonb" if pg else "'{}'"
    parts = []
    for chunk in _chunks(pairs, 40):
        args = ", ".join(f"'{k.replace(chr(39), chr(39) * 2)}', {e}" for k, e in chunk)
        parts.append(f"jsonb_build_object({args})" if pg else f"json_object({args})")
    if pg:
        return " || ".join(parts)
    out = parts[0]
    for p in parts[1:]:
        out = f"json_patch({out}, {p})"
    return out


# -- rollback


# the columns a rollback's delete audit row keeps of each record
DELETE_IMAGES = {
    "form_submissions": ("application_id", "form_name", "answers", "submitted_at"),
    "contracts": ("application_id", "status", "template", "terms", "external_id", "data"),
    "applications": ("candidate_id", "job_id", "stage", "status", "source", "applied_at", "external_id", "data"),
    "candidates": ("email", "first_name", "last_name", "phone", "external_id"),
    "jobs": ("code", "title", "status", "external_id"),
}


class ImportRollback:
    """Set-based undo of one import on one connection (inside the caller's transaction).

    Updated records get the before-image of this import's first update of them back; records it
    created are deleted; candidates and jobs it created stay while other records use them. A
    record something else changed after the import (an audit row of another import, a bulk job,
    a sync) is a conflict: left as it is and counted, unless `force`. Every change gets an audit
    row. A few statements per entity whatever the import's size: no record passes through Python.
    """

    def __init__(
        self, conn: sa.Connection, *, account_id: uuid.UUID, import_id: uuid.UUID, actor: str, force: bool = False
    ) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.force = force
        self.ids = f"rollback_ids_{uuid.uuid4().hex[:12]}"
        self.apps = f"rollback_apps_{uuid.uuid4().hex[:12]}"
        self.params: dict[str, Any] = {
            "acct": _db_uuid(self.pg, account_id),
            "imp": _db_uuid(self.pg, import_id),
            "actor": actor,
            "now": _db_now(self.pg),
        }
        self.counts: dict[str, dict[str, int]] = {"deleted": {}, "restored": {}, "kept": {}, "conflicts": {}}

    def run(self, sql: str, **extra: Any) -> sa.CursorResult:
        return self.conn.execute(sa.text(sql), {**self.params, **extra})

    def _changed_since(self, etype: str, alias: str, after: str | None = None) -> str:
        """SQL: the record `alias`.id has an audit row (later than audit id `after`) not of this import."""
        later = f" AND l.id > {after}" if after else ""
        # an import rolled back since undid its changes (or they are the later ones' conflicts)
        return (
            f"EXISTS (SELECT 1 FROM audit_log l WHERE l.account_id = :acct AND l.entity_type = '{etype}' "
            f"AND l.entity_id = {alias}.id{later} AND (l.import_id IS NULL OR (l.import_id <> :imp AND NOT EXISTS "
            "(SELECT 1 FROM import_history h WHERE h.id = l.import_id AND h.status = 'rolled_back'))))"
        )

    def _value(self, column: sa.Column, image: str) -> str:
        """SQL: COLUMN's value in the JSON image `image`, typed for the column."""
        name = column.name
        if self.pg:
            if isinstance(column.type, sa.JSON):
                return f"({image} -> '{name}')"
            if isinstance(column.type, sa.Uuid):
                return f"CAST({image} ->> '{name}' AS uuid)"
            if isinstance(column.type, sa.DateTime):
                return f"CAST({image} ->> '{name}' AS timestamptz)"
            return f"({image} ->> '{name}')"
        if isinstance(column.type, sa.Uuid):
            return f"replace(json_extract({image}, '$.{name}'), '-', '')"
        return f"json_extract({image}, '$.{name}')"

    def _has(self, image: str, key: str) -> str:
        return f"({image} ? '{key}')" if self.pg else f"(json_type({image}, '$.{key}') IS NOT NULL)"

    def _audit(self, operation: str, etype: str, table: sa.Table, cols: list[str], after: str) -> None:
        """One audit row per record in the ids table: before = its current COLS, after = AFTER."""
        # SQLite's json_object() would store a JSON column as a string: json() keeps it an object
        pairs = [(c, f"t.{c}" if self.pg or not isinstance(table.c[c].type, sa.JSON) else f"json(t.{c})") for c in cols]
        self.run(
            f"{AUDIT_INSERT}"
            f"SELECT :acct, :now, :actor, '{operation}', '{etype}', t.id, :imp, {_json_object(self.pg, pairs)}, {after} "
            f"FROM {table.name} t JOIN {self.ids} r ON r.entity_id = t.id"
        )

    def _fill(self, select: str) -> int:
        self.run(f"DELETE FROM {self.ids}")
        return self.run(f"INSERT INTO {self.ids} (entity_id, image) {select}").rowcount

    def execute(self) -> dict[str, dict[str, int]]:
        """Undo the import; raises WriteFailed (in words) when the database refuses a statement."""
        try:
            return self._execute()
        except sa.exc.DBAPIError as exc:
            raise WriteFailed(f"the rollback was not written: {_db_reason(exc)}") from exc

    def _execute(self) -> dict[str, dict[str, int]]:
        if self.pg:
            # the account's imports take turns with this (see write_batch)
            self.run(ACCOUNT_IMPORT_LOCK)
            # hash joins and aggregates over a million audit rows or ids stay in memory
            self.conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        kind, image = ("uuid", "jsonb") if self.pg else ("TEXT", "TEXT")
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE {self.ids} (entity_id {kind} PRIMARY KEY, image {image})")
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE {self.apps} (entity_id {kind} PRIMARY KEY)")
        try:
            for etype, table in ENTITY_TABLES.items():
                self._restore(etype, table)
            self._delete_created()
        finally:
            self.conn.exec_driver_sql(f"DROP TABLE {self.ids}")
            self.conn.exec_driver_sql(f"DROP TABLE {self.apps}")
        return self.counts

    def _restore(self, etype: str, table: sa.Table) -> None:
        """Give the records this import updated their first before-image back."""
        firsts = (
            "SELECT entity_id, min(id) AS first_id, max(id) AS last_id FROM audit_log "
            f"WHERE import_id = :imp AND entity_type = '{etype}' AND operation = 'import.update' GROUP BY entity_id"
        )
        sample = self.run(
            "SELECT before FROM audit_log WHERE import_id = :imp AND entity_type = :e AND operation = 'import.update' "
            "AND before IS NOT NULL LIMIT 1",
            e=etype,
        ).scalar()
        if sample is None:
            return
        # every before-image of one import and entity has the same keys (the writer's audit fields)
        keys = sample if isinstance(sample, dict) else json.loads(sample)
        cols = [table.c[k] for k in keys if k in table.c]
        changed = self._changed_since(etype, "t", "f.last_id")
        restored = self._fill(
            f"SELECT t.id, a.before FROM ({firsts}) f JOIN audit_log a ON a.id = f.first_id "
            f"JOIN {table.name} t ON t.id = f.entity_id AND t.account_id = :acct WHERE a.before IS NOT NULL"
            # what the import created and updated again (in-file duplicates) goes with its creation
            " AND (t.import_id IS NULL OR t.import_id <> :imp)"
            # restored by an earlier pass of this rollback (a forced pass after conflicts)
            f" AND NOT EXISTS (SELECT 1 FROM audit_log x WHERE x.account_id = :acct AND x.entity_type = '{etype}' "
            "AND x.entity_id = t.id AND x.import_id = :imp AND x.operation = 'import.rollback.restore')"
            + ("" if self.force else f" AND NOT {changed}")
        )
        self.counts["restored"][etype] = restored
        if not self.force:
            self.counts["conflicts"][etype] = self.run(
                f"SELECT count(*) FROM ({firsts}) f JOIN {table.name} t ON t.id = f.entity_id AND t.account_id = :acct "
                f"WHERE (t.import_id IS NULL OR t.import_id <> :imp) AND {changed}"
            ).scalar()
        if not restored:
            return
        self._audit("import.rollback.restore", etype, table, [c.name for c in cols], "r.image")
        sets = ", ".join(
            f"{c.name} = CASE WHEN {self._has('r.image', c.name)} THEN {self._value(c, 'r.image')} ELSE t.{c.name} END"
            for c in cols
        )
        self.run(f"UPDATE {table.name} AS t SET {sets}, updated_at = :now FROM {self.ids} r WHERE t.id = r.entity_id")

    def _delete(self, etype: str, table: sa.Table, where: str) -> None:
        """Delete the account's records of TABLE (alias t) matching WHERE, with an audit row holding each."""
        n = self._fill(f"SELECT t.id, NULL FROM {table.name} t WHERE t.account_id = :acct AND {where}")
        self.counts["deleted"][etype] = n
        if n:
            self._audit("import.rollback.delete", etype, table, list(DELETE_IMAGES[etype]), "NULL")
            self.run(f"DELETE FROM {table.name} WHERE id IN (SELECT entity_id FROM {self.ids})")

    def _unused(self, table: sa.Table, alias: str, skip: tuple[str, ...] = ()) -> str:
        """SQL: no row of another table (but those in SKIP) points at `alias`.id."""
        refs = [fk for fk in _referencing(table) if fk.parent.table.name not in skip]
        return (
            " AND ".join(
                f"NOT EXISTS (SELECT 1 FROM {fk.parent.table.name} x WHERE x.{fk.parent.name} = {alias}.id)"
                for fk in refs
            )
            or "1 = 1"
        )

    def _delete_created(self) -> None:
        """Delete what the import created; keep what others changed since or still point at."""
        blocking = self.run(
            "SELECT count(*) FROM contracts c JOIN applications a ON a.id = c.application_id "
            "WHERE a.account_id = :acct AND a.import_id = :imp AND (c.import_id IS NULL OR c.import_id <> :imp)"
        ).scalar()
        if blocking:
            raise RollbackBlocked(f"{blocking} contract(s) created elsewhere reference its applications")
        changed_created = {}
        for etype in ("contracts", "applications"):
            changed_created[etype] = (
                0
                if self.force
                else self.run(
                    f"SELECT count(*) FROM {etype} t WHERE t.account_id = :acct AND t.import_id = :imp AND {self._changed_since(etype, 't')}"
                ).scalar()
            )
            if not self.force:
                self.counts["conflicts"][etype] = self.counts["conflicts"].get(etype, 0) + changed_created[etype]
        untouched = {
            e: "" if self.force else f" AND NOT {self._changed_since(e, 'a')}" for e in ("contracts", "applications")
        }
        self._delete(
            "contracts",
            contracts,
            "t.id IN (SELECT a.id FROM contracts a WHERE a.import_id = :imp" + untouched["contracts"] + ")",
        )
        # the applications to delete: nothing but their form submission points at them (a
        # recollection request keeps one); listed once, for their form submissions and themselves
        self.run(f"DELETE FROM {self.apps}")
        doomed = self.run(
            f"INSERT INTO {self.apps} (entity_id) SELECT a.id FROM applications a WHERE a.account_id = :acct AND a.import_id = :imp"
            + untouched["applications"]
            + f" AND {self._unused(applications, 'a', skip=('form_submissions',))}"
        ).rowcount
        created = self.run(
            "SELECT count(*) FROM applications t WHERE t.account_id = :acct AND t.import_id = :imp"
        ).scalar()
        self.counts["kept"]["applications"] = created - doomed - changed_created["applications"]
        self._delete("form_submissions", form_submissions, f"t.application_id IN (SELECT entity_id FROM {self.apps})")
        self._delete("applications", applications, f"t.id IN (SELECT entity_id FROM {self.apps})")
        for etype in ("candidates", "jobs"):
            table = ENTITY_TABLES[etype]
            unused = self._unused(table, "t")
            self.counts["kept"][etype] = self.run(
                f"SELECT count(*) FROM {table.name} t WHERE t.account_id = :acct AND t.import_id = :imp AND NOT ({unused})"
            ).scalar()
            self._delete(etype, table, f"t.import_id = :imp AND {unused}")


class RollbackBlocked(Exception):
    """Records of other origins depend on what the import created."""


def _referencing(table: sa.Table) -> list[sa.ForeignKey]:
    """Every foreign key of the schema that points at TABLE.id."""
    return [
        fk
        for t in table.metadata.tables.values()
        for fk in t.foreign_keys
        if fk.column.table is table and fk.column.name == "id"
    ]


def finish_run_imports(store: Any, run_id: str, status: str, error: str) -> int:
    """End the unfinished history rows a Dagster run left (pending or processing) as STATUS with ERROR.

    A run that died, gave up after its retries or was cancelled before its import could record
    it never leaves a row `processing`; a later run of the file still resumes after its
    committed batches. Returns the number of rows ended.
    """
    from connectors.store.schema import import_history as h

    with store.begin() as conn:
        return conn.execute(
            h.update()
            .where(h.c.dagster_run_id == run_id, h.c.status.in_(["pending", "processing"]))
            .values(status=status, finished_at=datetime.now(UTC), error_message=error[:1900])
        ).rowcount
