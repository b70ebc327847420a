"""Change sets: the one spine under every write to records (docs/change-sets.md).

Every write to records happens inside a change set: an import, a bulk job, a sync run, a
document import or a rollback. This module is its API, and the only place that knows how:

- `open_change_set` / `finish_change_set`: a change set, opened in the transaction that inserts
  the import-history, bulk-job or sync-run row it backs (same id);
- `audit_insert` / `write_audit_rows`: the one audit writer, set-based (INSERT ... SELECT) or from
  a list of rows;
- `changed_since`: the one "changed since" check, a SQL expression a statement evaluates per
  record;
- `rollback`: the one rollback, for a change set of any kind, from the audit log's
  before-images and the records' provenance.

SQLAlchemy Core throughout, values bound; identifiers come from the schema and the registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from connectors.store import registry, schema
from connectors.store.dialect import ACCOUNT_WRITES, dialect_of

audit_log = schema.audit_log
change_sets = schema.change_sets
TS = schema.TS
# columns of a record a rollback never writes back: identity, bookkeeping and provenance
NOT_RESTORED = frozenset({"id", "account_id", "created_at", "updated_at", "import_id", "bulk_job_id"})
PROVENANCE = ("import_id", "bulk_job_id")
# held by each import batch and each rollback until it commits, per account (same key as imports.py)
# at most this many conflicting records are listed by a rollback (all are counted)
CONFLICTS_LISTED = 100
# the audit operation of a record deleted for good with its whole image (a sync's mirror delete)
HARD_DELETE = "sync.delete"
OUTCOMES = ("deleted", "restored", "kept", "conflicts", "closed")


@dataclass(frozen=True)
class Part:
    """Rows of a table that is not an entity but belongs to an entity's record (its owner).

    A rollback removes such a row with its owner when the change set created both, and keeps it
    while the owner stays. A row the change set created under an owner it did not create is
    undone on its own: deleted, or closed (`close` = (column, open value, closed value)), for rows
    whose effects cannot be taken back (a recollection request whose email went out).
    """

    table: sa.Table
    owner: str
    close: tuple[str, str, str] | None = None

    @property
    def owner_table(self) -> sa.Table:
        (fk,) = self.table.c[self.owner].foreign_keys
        return fk.column.table


PARTS: tuple[Part, ...] = (
    Part(schema.form_submissions, "application_id"),
    Part(schema.recollection_requests, "application_id", close=("status", "requested", "cancelled")),
    # a document import's skills, then its documents (the skills point at them)
    Part(schema.candidate_skills, "candidate_id"),
    Part(schema.job_skills, "job_id"),
    Part(schema.documents, "candidate_id"),
    Part(schema.documents, "job_id"),
)


class RollbackRefused(Exception):
    """The change set cannot be rolled back (unknown here, or itself a rollback)."""


@dataclass(frozen=True)
class ChangeSet:
    """An open change set: what its audit rows carry."""

    id: uuid.UUID
    account_id: uuid.UUID
    kind: str
    actor: str
    rollback_of: uuid.UUID | None = None


# -- opening and finishing


def open_change_set(
    conn: sa.Connection,
    *,
    account_id: uuid.UUID,
    kind: str,
    id: uuid.UUID | None = None,
    actor: str = "bulkops",
    rollback_of: uuid.UUID | None = None,
    dagster_run_id: str | None = None,
) -> ChangeSet:
    """Open a change set in CONN's transaction and return it.

    For an import, a bulk job or a sync run, call it in the transaction that inserts the
    capability row, with that row's id (the row references its change set): the capability row
    keeps the status, counts, actor and run id users see. Any other kind keeps them here
    (`finish_change_set`).
    """
    if kind not in schema.CHANGE_SET_KINDS:
        raise ValueError(f"unknown change set kind {kind!r}: one of {', '.join(schema.CHANGE_SET_KINDS)}")
    id_ = id or uuid.uuid4()
    values: dict[str, Any] = {"id": id_, "account_id": account_id, "kind": kind, "rollback_of": rollback_of}
    if kind not in schema.BACKED_KINDS:
        values.update(actor=actor, dagster_run_id=dagster_run_id, status="processing", counts={})
    conn.execute(change_sets.insert().values(**values, opened_at=datetime.now(UTC)))
    return ChangeSet(id_, account_id, kind, actor, rollback_of)


def finish_change_set(conn: sa.Connection, cs: ChangeSet, *, status: str, counts: Mapping[str, Any]) -> None:
    """End a change set that no capability row backs (a backed one ends in its own row)."""
    if cs.kind in schema.BACKED_KINDS:
        raise ValueError(f"a {cs.kind} change set ends in its {schema.BACKED_KINDS[cs.kind]} row")
    conn.execute(
        change_sets.update()
        .where(change_sets.c.id == cs.id)
        .values(status=status, counts=dict(counts), finished_at=datetime.now(UTC))
    )


# -- how a change set that ran to its end finishes, whatever its kind

REASONS_LISTED = 5
OTHER_REASONS = "other reasons"


def ends_failed(*, attempted: int, failed: int) -> bool:
    """The one rule of every kind: a change set in which at least one record was attempted and every
    one failed ends `failed`; one in which any record succeeded or was skipped ends `completed`."""
    return attempted > 0 and failed >= attempted


def reason_key(column: str | None, error: str | None) -> str:
    """What a failed record is counted under: `column: error`, or the error alone when no column is to blame
    (imports count their failed-rows file's `_column`/`_error` this way, syncs each batch's errors)."""
    error = error or "unknown error"
    return f"{column}: {error}" if column else error


def counted_reasons(reasons: Mapping[str, int] | Iterable[tuple[str, int]], failed: int) -> list[dict[str, Any]]:
    """The most frequent reasons of FAILED failed records, most frequent first, at most REASONS_LISTED,
    then `other reasons` for the records the listed ones do not cover: [{"error", "count"}]."""
    pairs = reasons.items() if isinstance(reasons, Mapping) else reasons
    top = sorted(((str(e or "unknown error"), int(n)) for e, n in pairs if n), key=lambda p: (-p[1], p[0]))
    listed = [{"error": e, "count": n} for e, n in top[:REASONS_LISTED] if e != OTHER_REASONS]
    other = failed - sum(r["count"] for r in listed)
    if other > 0:
        listed.append({"error": OTHER_REASONS, "count": other})
    return listed


def all_failed_message(failed: int, reasons: list[dict[str, Any]], what: str = "records") -> str:
    """`all 3 records failed: not found (2), other reasons (1)`: a failed change set's error_message."""
    listed = ", ".join(f"{_short(r['error'])} ({r['count']})" for r in reasons)
    return f"all {failed} {what} failed" + (f": {listed}" if listed else "")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_change_set(conn: sa.Connection, id_: uuid.UUID, *, actor: str = "bulkops") -> ChangeSet | None:
    """The change set ID as the audit writer needs it (None when there is none)."""
    row = conn.execute(sa.select(change_sets).where(change_sets.c.id == id_)).first()
    if row is None:
        return None
    return ChangeSet(row.id, row.account_id, row.kind, row.actor or actor, row.rollback_of)


def backed_change_set(
    id_: uuid.UUID, account_id: uuid.UUID, kind: str, actor: str, rollback_of: uuid.UUID | None = None
) -> ChangeSet:
    """The change set a capability row backs (import, bulk job, sync run), from that row's own
    fields, without reading `change_sets` (a bulk batch has its job row at hand)."""
    if kind not in schema.BACKED_KINDS:
        raise ValueError(f"no capability row backs a {kind} change set")
    return ChangeSet(id_, account_id, kind, actor, rollback_of)


def describe(conn: sa.Connection, id_: uuid.UUID) -> dict[str, Any] | None:
    """One change set as users see it, whatever backs it: kind, status, counts, actor, run, times."""
    cs = conn.execute(sa.select(change_sets).where(change_sets.c.id == id_)).first()
    if cs is None:
        return None
    out: dict[str, Any] = {"id": cs.id, "account_id": cs.account_id, "kind": cs.kind, "rollback_of": cs.rollback_of}
    if cs.kind == "import":
        h = schema.import_history
        r = conn.execute(sa.select(h).where(h.c.id == id_)).one()
        counts = {k: getattr(r, k) for k in ("created", "updated", "skipped", "errors")}
        out.update(
            actor=r.created_by,
            dagster_run_id=r.dagster_run_id,
            status=r.status,
            counts=counts,
            started_at=r.started_at,
            finished_at=r.finished_at,
        )
    elif cs.kind == "bulk_job":
        b = schema.bulk_jobs
        r = conn.execute(sa.select(b).where(b.c.id == id_)).one()
        counts = {k: getattr(r, k) for k in ("total_count", "processed_count", "failed_count", "skipped_count")}
        out.update(
            actor=str(r.created_by) if r.created_by else None,
            dagster_run_id=r.dagster_run_id,
            status=r.status,
            counts=counts,
            started_at=r.started_at or r.created_at,
            finished_at=r.finished_at,
        )
    elif cs.kind == "sync":
        s = schema.sync_runs
        r = conn.execute(sa.select(s).where(s.c.id == id_)).one()
        counts = {k: getattr(r, k) for k in ("records_read", "created", "updated", "skipped", "conflicts", "errors")}
        out.update(
            actor=r.sync_name,
            dagster_run_id=r.dagster_run_id,
            status=r.status,
            counts=counts,
            started_at=r.started_at,
            finished_at=r.finished_at,
        )
    else:
        out.update(
            actor=cs.actor,
            dagster_run_id=cs.dagster_run_id,
            status=cs.status,
            counts=cs.counts or {},
            started_at=cs.opened_at,
            finished_at=cs.finished_at,
        )
    return out


# -- the audit writer


class _Image(sa.sql.functions.FunctionElement):
    """An audit image column of a SELECT: PostgreSQL is told it is jsonb (a bare NULL or a text
    literal in a subquery reads as text there); SQLite takes it as it is."""

    inherit_cache = True
    type = schema.JSON
    name = "image"


@compiles(_Image)
def _image_plain(element: _Image, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Image, "postgresql")
def _image_pg(element: _Image, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS JSONB)"


AUDIT_COLUMNS = (
    "account_id",
    "occurred_at",
    "actor",
    "operation",
    "entity_type",
    "entity_id",
    "change_set_id",
    "before",
    "after",
)


@dataclass(frozen=True)
class AuditStamp:
    """What each audit row of a change set carries, as SQL.

    `stamp(cs)` binds a change set's values; a writer that runs one compiled statement for many
    batches (the import, PostgreSQL's set-based bulk batch) passes bind parameters it fills per
    execution instead.
    """

    account_id: sa.ColumnElement
    actor: sa.ColumnElement
    change_set_id: sa.ColumnElement


def stamp(cs: ChangeSet) -> AuditStamp:
    """CS's audit stamp, its values bound."""
    return AuditStamp(
        sa.literal(cs.account_id, sa.Uuid()),
        sa.literal(cs.actor, sa.String()),
        sa.literal(cs.id, sa.Uuid()),
    )


def _sql(value: Any, type_: sa.types.TypeEngine) -> sa.ColumnElement:
    return value if isinstance(value, sa.ColumnElement) else sa.literal(value, type_)


def audit_insert(
    cs: ChangeSet | AuditStamp,
    operation: str | sa.ColumnElement,
    entity_type: str | sa.ColumnElement,
    source: sa.Select | sa.FromClause,
    *,
    now: datetime | sa.ColumnElement,
    where: sa.ColumnElement[bool] | None = None,
) -> sa.Insert:
    """INSERT INTO audit_log ... SELECT: one audit row of CS per row of SOURCE.

    SOURCE (a SELECT, a table, a subquery, or a CTE such as `insert(...).returning(...).cte()`)
    has the columns `entity_id`, `before` and `after` (JSON, or NULL: a creation need not keep
    its record, its provenance says who made it). A SELECT gets the audit columns in place of its
    own, so the statement stays one flat INSERT ... SELECT (the import's hot path): pass one with
    GROUP BY, DISTINCT or LIMIT as `.subquery()`. A data-modifying CTE is put at the top of the statement, where PostgreSQL wants it. CS is a
    change set, or an `AuditStamp` of bind parameters; OPERATION, ENTITY_TYPE and NOW may be SQL
    too. Execute the result in the transaction of the change.
    """
    st = cs if isinstance(cs, AuditStamp) else stamp(cs)
    if isinstance(source, sa.Select):
        c = source.selected_columns
        entity_id, before, after = c.entity_id, c.before, c.after
    else:
        src = source
        entity_id, before, after = src.c.entity_id, src.c.before, src.c.after
    columns = (
        st.account_id,
        _sql(now, TS),
        st.actor,
        _sql(operation, sa.String()),
        _sql(entity_type, sa.String()),
        entity_id,
        st.change_set_id,
        _Image(before),
        _Image(after),
    )
    if isinstance(source, sa.Select):
        select = source.with_only_columns(*columns, maintain_column_froms=True)
    else:
        select = sa.select(*columns).select_from(src)
    if where is not None:
        select = select.where(where)
    stmt = audit_log.insert().from_select(AUDIT_COLUMNS, select)
    if isinstance(source, sa.CTE):
        stmt = stmt.add_cte(source)
    # the result's rowcount is the number of audit rows
    return stmt.execution_options(preserve_rowcount=True)


def write_audit_rows(
    conn: sa.Connection,
    cs: ChangeSet,
    operation: str,
    rows: Iterable[tuple[str, uuid.UUID, Any, Any]],
    *,
    now: datetime,
) -> int:
    """The same rows from a list of (entity_type, entity_id, before, after); returns how many."""
    values = [
        {
            "account_id": cs.account_id,
            "occurred_at": now,
            "actor": cs.actor,
            "operation": operation,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "change_set_id": cs.id,
            "before": before,
            "after": after,
        }
        for entity_type, entity_id, before, after in rows
    ]
    if values:
        conn.execute(audit_log.insert(), values)
    return len(values)


# -- which change set wrote an audit row


def writer_of(a: sa.FromClause) -> sa.ColumnElement:
    """The change set that wrote audit row `a`: its `change_set_id`, the row's one link (NULL only
    for a row from before change sets that named nothing; migration 0013)."""
    return a.c.change_set_id


def written_by(a: sa.FromClause, change_set_id: Any) -> sa.ColumnElement[bool]:
    """Audit row `a` was written by CHANGE_SET_ID (the partial index on change_set_id serves it)."""
    return a.c.change_set_id == change_set_id


def provenance(table: sa.FromClause) -> sa.ColumnElement:
    """SQL: the change set that created a row of TABLE (its `import_id` or `bulk_job_id`)."""
    cols = [table.c[c] for c in PROVENANCE if c in table.c]
    return cols[0] if len(cols) == 1 else sa.func.coalesce(*cols)


# -- the conflict check


def changed_since(
    change_set_id: Any,
    entity_type: str,
    entity_id: sa.ColumnElement,
    *,
    account_id: Any,
    after: sa.ColumnElement | int | None = None,
) -> sa.ColumnElement[bool]:
    """SQL: the record ENTITY_ID of ENTITY_TYPE was changed by another change set after CHANGE_SET_ID.

    "After" is after the audit row id AFTER: by default the change set's first row on the record
    (0 when it has none); pass it when the statement has it at hand, or 0 for records the change
    set created (nothing can precede their creation). Not a change since:
    - rows of the change set itself and of its rollbacks;
    - a change that was undone: a rollback of its change set wrote a later row on the record;
    - that undo itself, when the change it undid came after the change set's.
    Usable in any statement over records (WHERE, CASE); each record costs index probes of the
    audit log by (account_id, entity_type, entity_id).
    """
    later, s = audit_log.alias("cs_l"), change_sets.alias("cs_s")
    # The subqueries below name the record by `later`'s entity_id (equal to ENTITY_ID by the outer
    # WHERE), never by ENTITY_ID itself: SQLAlchemy correlates a subquery with the SELECT it is in,
    # not with the statement two levels up, so ENTITY_ID's table would join them uncorrelated
    # (every record of the table in each probe: slow, and an undo of any record would count).
    if after is None:
        own = audit_log.alias("cs_own")
        after = sa.func.coalesce(
            sa.select(sa.func.min(own.c.id))
            .where(
                own.c.account_id == account_id,
                own.c.entity_type == entity_type,
                own.c.entity_id == later.c.entity_id,
                writer_of(own) == change_set_id,
            )
            .scalar_subquery(),
            0,
        )
    u, r = audit_log.alias("cs_u"), change_sets.alias("cs_r")
    d = audit_log.alias("cs_d")

    def on_record(a: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        record = entity_id if a is later else later.c.entity_id
        return [a.c.account_id == account_id, a.c.entity_type == entity_type, a.c.entity_id == record]

    undone = sa.exists(
        sa.select(1)
        .select_from(u.join(r, r.c.id == writer_of(u)))
        .where(*on_record(u), u.c.id > later.c.id, r.c.rollback_of == writer_of(later))
    )
    undid_later = sa.and_(
        s.c.rollback_of.is_not(None),
        sa.exists(
            sa.select(1)
            .select_from(d)
            .where(
                *on_record(d),
                writer_of(d) == s.c.rollback_of,
                d.c.id < later.c.id,
                d.c.id > after,
            )
        ),
    )
    return sa.exists(
        sa.select(1)
        .select_from(later.outerjoin(s, s.c.id == writer_of(later)))
        .where(
            *on_record(later),
            later.c.id > after,
            sa.or_(writer_of(later).is_(None), writer_of(later) != change_set_id),
            sa.or_(s.c.rollback_of.is_(None), s.c.rollback_of != change_set_id),
            sa.not_(undone),
            sa.not_(undid_later),
        )
    )


def undone_by_rollback(
    change_set_id: Any, entity_type: str, entity_id: sa.ColumnElement, *, account_id: Any
) -> sa.ColumnElement[bool]:
    """SQL: an earlier rollback of CHANGE_SET_ID already wrote the record back."""
    x, r = audit_log.alias("cs_x"), change_sets.alias("cs_xr")
    return sa.exists(
        sa.select(1)
        .select_from(x.join(r, r.c.id == writer_of(x)))
        .where(
            x.c.account_id == account_id,
            x.c.entity_type == entity_type,
            x.c.entity_id == entity_id,
            r.c.rollback_of == change_set_id,
        )
    )


# -- the rollback


@dataclass
class RollbackResult:
    """What a rollback did: counts per outcome and entity, and the first records left as conflicts."""

    change_set: ChangeSet
    counts: dict[str, dict[str, int]]
    conflicts: list[tuple[str, uuid.UUID]] = field(default_factory=list)


def rollback(
    conn: sa.Connection,
    target_id: uuid.UUID,
    *,
    account_id: uuid.UUID,
    actor: str,
    force: bool = False,
    change_set: ChangeSet | None = None,
    dagster_run_id: str | None = None,
) -> RollbackResult:
    """Undo change set TARGET_ID of the account, in CONN's transaction, as a change set of its own.

    - records it updated (or soft-deleted) get the before-image of its first change of them back,
      every imaged field with its type; an image of tags gives the record its tags back;
    - records it created (provenance) are deleted, dependants first, with the parts it created
      with them (`PARTS`); a record that other rows still point at stays (`kept`), and so do the
      records it points at; parts it created under records it did not create are deleted or
      closed on their own;
    - records it deleted for good (a sync's mirror delete, `HARD_DELETE` rows holding the whole
      record) are inserted again from their image, with their tags, unless what they pointed at
      is gone or a live record holds their key (a conflict);
    - a record another change set changed since (`changed_since`) is a conflict: left as it is,
      counted and listed, unless FORCE. Records an earlier rollback of it already wrote back are
      not written again, so a forced pass after one with conflicts undoes only what was left.
    Every change gets an audit row of the rollback's change set (`<kind>.rollback.restore |
    delete | close`). CHANGE_SET is the rollback's own when a capability row backs it (a bulk
    job of operation rollback); otherwise one of kind `rollback` is opened and finished here.
    A few statements per entity, whatever the size: no record passes through Python.

    Raises:
        RollbackRefused: no such change set in the account, or it is a rollback itself.
    """
    return _Rollback(conn, target_id, account_id, actor, force, change_set, dagster_run_id).run()


class _Rollback:
    def __init__(
        self,
        conn: sa.Connection,
        target_id: uuid.UUID,
        account_id: uuid.UUID,
        actor: str,
        force: bool,
        change_set: ChangeSet | None,
        dagster_run_id: str | None,
    ) -> None:
        self.conn = conn
        self.d = dialect_of(conn)
        self.target_id = target_id
        self.acct = account_id
        self.actor = actor
        self.force = force
        self.cs = change_set
        self.run_id = dagster_run_id
        self.now = datetime.now(UTC)
        self.tables: dict[str, sa.Table] = {**schema.ENTITY_TABLES, **{p.table.name: p.table for p in PARTS}}
        # entity tables, dependants first: the order records it created are removed in
        entity_of = {t.name: name for name, t in schema.ENTITY_TABLES.items()}
        self.removal = [(entity_of[t.name], t) for t in reversed(schema.metadata.sorted_tables) if t.name in entity_of]
        # counts keep the order the work is done in (parts go just before their owner)
        removed = [n for name, t in self.removal for n in (*(p.table.name for p in PARTS if p.owner_table is t), name)]
        self.counts: dict[str, dict[str, int]] = {
            "deleted": dict.fromkeys([*removed, *(n for n in self.tables if n not in removed)], 0),
            "restored": dict.fromkeys(self.tables, 0),
            "kept": dict.fromkeys(name for name, _ in self.removal) | dict.fromkeys(self.tables, 0),
            "conflicts": dict.fromkeys(self.tables, 0),
            "closed": {p.table.name: 0 for p in PARTS if p.close},
        }
        self.listed: list[tuple[str, uuid.UUID]] = []
        self.tmp = sa.Table(
            f"cs_rollback_{uuid.uuid4().hex[:12]}",
            sa.MetaData(),
            sa.Column("entity_id", sa.Uuid(), primary_key=True),
            sa.Column("image", schema.JSON, nullable=True),
            sa.Column("first_id", sa.BigInteger(), nullable=True),
            # 0 undo, 1 changed since (conflict), 2 kept (other rows point at it)
            sa.Column("flag", sa.Integer(), nullable=False),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )

    def run(self) -> RollbackResult:
        target = self.conn.execute(
            sa.select(change_sets.c.kind, change_sets.c.account_id).where(change_sets.c.id == self.target_id)
        ).first()
        if target is None or target.account_id != self.acct:
            raise RollbackRefused(f"no change set {self.target_id} in this account")
        if target.kind == "rollback":
            raise RollbackRefused(f"{self.target_id} is a rollback: it cannot be rolled back")
        self.kind = target.kind
        # the account's import batches take turns with this (imports.write_batch takes the same lock)
        self.d.lock(self.conn, ACCOUNT_WRITES, str(self.acct))
        # hash joins and aggregates over a million audit rows or ids stay in memory
        self.d.set_local(self.conn, work_mem="64MB")
        if self.cs is None:
            self.cs = open_change_set(
                self.conn,
                account_id=self.acct,
                kind="rollback",
                actor=self.actor,
                rollback_of=self.target_id,
                dagster_run_id=self.run_id,
            )
        self.d.create_temp_table(self.conn, self.tmp)
        try:
            for entity_type, table in self.tables.items():
                self._restore(entity_type, table)
            self._remove_created()
            self._undo_parts()
            if self._deleted_for_good():
                for table in schema.metadata.sorted_tables:
                    # parents before their parts: an application before its form submissions
                    entity_type = next((e for e, t in self.tables.items() if t is table), None)
                    if entity_type is not None:
                        self._recreate(entity_type, table)
        finally:
            self.d.release_temp_table(self.conn, self.tmp)
        if self.cs.kind not in schema.BACKED_KINDS:
            finish_change_set(self.conn, self.cs, status="completed", counts=self.counts)
        return RollbackResult(self.cs, self.counts, self.listed)

    # -- helpers

    def _op(self, what: str) -> str:
        return f"{self.kind}.rollback.{what}"

    def _prov(self, table: sa.FromClause) -> sa.ColumnElement:
        return provenance(table)

    def _restorable(self, table: sa.Table) -> list[sa.Column]:
        return [c for c in table.c if c.name not in NOT_RESTORED]

    def _refill(self, select: sa.Select) -> int:
        self.conn.execute(self.tmp.delete())
        fill = self.tmp.insert().from_select(["entity_id", "image", "first_id", "flag"], select)
        return self.conn.execute(fill.execution_options(preserve_rowcount=True)).rowcount

    def _flagged(self, flag: int) -> int:
        return self.conn.scalar(sa.select(sa.func.count()).select_from(self.tmp).where(self.tmp.c.flag == flag))

    def _count_conflicts(self, entity_type: str) -> None:
        if self.force:
            return
        n = self._flagged(1)
        self.counts["conflicts"][entity_type] += n
        room = CONFLICTS_LISTED - len(self.listed)
        if n and room > 0:
            ids = self.conn.scalars(sa.select(self.tmp.c.entity_id).where(self.tmp.c.flag == 1).limit(room))
            self.listed += [(entity_type, i) for i in ids]

    def _conflict_flag(self, entity_type: str, table: sa.FromClause, after: Any) -> sa.ColumnElement:
        if self.force:
            return sa.literal(0, sa.Integer())
        changed = changed_since(self.cs_target, entity_type, table.c.id, account_id=self.acct, after=after)
        return sa.case((changed, 1), else_=0)

    @property
    def cs_target(self) -> sa.BindParameter:
        return sa.literal(self.target_id, sa.Uuid())

    def _undo_ids(self) -> sa.Select:
        return sa.select(self.tmp.c.entity_id).where(self.tmp.c.flag == 0)

    def _audit_delete(self, entity_type: str, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
        """Audit rows holding the records of TABLE matching WHERE as they are, then delete them."""
        src = sa.select(
            table.c.id.label("entity_id"),
            self.d.image_of(self._restorable(table)).label("before"),
            self.d.image_null().label("after"),
        ).where(where)
        n = self.conn.execute(audit_insert(self.cs, self._op("delete"), entity_type, src, now=self.now)).rowcount
        if n:
            t = schema.tags
            self.conn.execute(
                t.delete().where(
                    t.c.account_id == self.acct,
                    t.c.entity_type == entity_type,
                    t.c.entity_id.in_(sa.select(table.c.id).where(where)),
                )
            )
            self.conn.execute(table.delete().where(where))
        return n

    # -- records it updated

    def _restore(self, entity_type: str, table: sa.Table) -> None:
        """Give the records the change set changed the before-image of its first change back."""
        a = audit_log.alias("ra")
        mine = [written_by(a, self.cs_target), a.c.entity_type == entity_type, self.d.image_is_object(a.c.before)]
        if self.conn.execute(sa.select(1).select_from(a).where(*mine).limit(1)).first() is None:
            return
        f = (
            sa.select(a.c.entity_id, sa.func.min(a.c.id).label("first_id"))
            .where(*mine)
            .group_by(a.c.entity_id)
            .subquery("f")
        )
        b = audit_log.alias("rb")
        prov = self._prov(table)
        select = (
            sa.select(table.c.id, b.c.before, f.c.first_id, self._conflict_flag(entity_type, table, f.c.first_id))
            .select_from(
                f.join(b, b.c.id == f.c.first_id).join(
                    table, sa.and_(table.c.id == f.c.entity_id, table.c.account_id == self.acct)
                )
            )
            .where(
                # what it created goes with its creation
                sa.or_(prov.is_(None), prov != self.cs_target),
                sa.not_(undone_by_rollback(self.cs_target, entity_type, table.c.id, account_id=self.acct)),
            )
        )
        if not self._refill(select):
            return
        self._count_conflicts(entity_type)
        tmp, d = self.tmp, self.d
        tagged = d.image_has(tmp.c.image, "tags")
        cols = self._restorable(table)
        fields = sa.and_(tmp.c.flag == 0, sa.not_(tagged))
        src = (
            sa.select(
                table.c.id.label("entity_id"),
                d.image_like(tmp.c.image, cols).label("before"),
                tmp.c.image.label("after"),
            )
            .select_from(table.join(tmp, tmp.c.entity_id == table.c.id))
            .where(fields)
        )
        n = self.conn.execute(audit_insert(self.cs, self._op("restore"), entity_type, src, now=self.now)).rowcount
        if n:
            values = {
                c.name: sa.case(
                    (d.image_has(tmp.c.image, c.name), d.image_value(tmp.c.image, c)), else_=table.c[c.name]
                )
                for c in cols
            }
            self.conn.execute(
                table.update().where(table.c.id == tmp.c.entity_id, fields).values(**values, updated_at=self.now)
            )
        self.counts["restored"][entity_type] += n + self._restore_tags(entity_type)

    def _restore_tags(self, entity_type: str) -> int:
        """Records whose image is their tags get exactly those tags back."""
        tmp, d, t = self.tmp, self.d, schema.tags
        todo = sa.and_(tmp.c.flag == 0, d.image_has(tmp.c.image, "tags"))
        mine = [t.c.account_id == self.acct, t.c.entity_type == entity_type]
        held = sa.select(t.c.tag).where(*mine, t.c.entity_id == tmp.c.entity_id)
        current = d.tags_image(held, t.c.tag)
        src = sa.select(tmp.c.entity_id.label("entity_id"), current.label("before"), tmp.c.image.label("after")).where(
            todo
        )
        n = self.conn.execute(audit_insert(self.cs, self._op("restore"), entity_type, src, now=self.now)).rowcount
        if not n:
            return 0
        r = tmp.alias("r")
        tg = d.image_tags(r.c.image)
        wanted = (
            sa.select(1).select_from(r).join(tg, sa.true()).where(r.c.entity_id == t.c.entity_id, tg.c.value == t.c.tag)
        )
        self.conn.execute(
            t.delete().where(
                *mine,
                t.c.entity_id.in_(sa.select(tmp.c.entity_id).where(todo)),
                sa.not_(sa.exists(wanted)),
            )
        )
        r2 = tmp.alias("r2")
        tg2 = d.image_tags(r2.c.image)
        x = t.alias("x")
        new = (
            sa.select(
                sa.literal(self.acct, sa.Uuid()),
                sa.literal(entity_type, sa.String()),
                r2.c.entity_id,
                tg2.c.value,
                sa.literal(self.now, TS),
            )
            .select_from(r2)
            .join(tg2, sa.true())
            .where(
                r2.c.flag == 0,
                d.image_has(r2.c.image, "tags"),
                sa.not_(
                    sa.exists(
                        sa.select(1).where(
                            x.c.account_id == self.acct,
                            x.c.entity_type == entity_type,
                            x.c.entity_id == r2.c.entity_id,
                            x.c.tag == tg2.c.value,
                        )
                    )
                ),
            )
        )
        self.conn.execute(t.insert().from_select(["account_id", "entity_type", "entity_id", "tag", "created_at"], new))
        return n

    # -- records it created

    def _remove_created(self) -> None:
        """Delete what it created, dependants first; keep what others changed since or point at.

        An entity whose registry rule is `rollback_created="soft_delete"` keeps its rows,
        soft-deleted (`_soft_delete_created`)."""
        for entity_type, table in self.removal:
            soft = registry.get(entity_type).rollback_created == "soft_delete"
            mine = [table.c.account_id == self.acct, self._prov(table) == self.cs_target]
            if soft:
                # one soft-deleted already (by an earlier pass) has nothing left to undo
                mine.append(table.c.deleted_at.is_(None))
            created = self._refill(
                sa.select(table.c.id, sa.null(), sa.null(), self._conflict_flag(entity_type, table, 0)).where(*mine)
            )
            if not created:
                continue
            self._count_conflicts(entity_type)
            if soft:
                self.counts["deleted"][entity_type] += self._soft_delete_created(entity_type, table)
                continue
            tmp = self.tmp
            blocked = []
            for other, column in registry.get(entity_type).delete_blockers:
                x = other.alias("bx")
                refers = [x.c[column] == tmp.c.entity_id]
                if any(p.table is other and p.owner == column for p in PARTS):
                    # parts it created with the record go with it
                    refers.append(sa.or_(self._prov(x).is_(None), self._prov(x) != self.cs_target))
                blocked.append(sa.exists(sa.select(1).select_from(x).where(*refers)))
            if blocked:
                self.conn.execute(tmp.update().where(tmp.c.flag == 0, sa.or_(*blocked)).values(flag=2))
            self.counts["kept"][entity_type] += self._flagged(2)
            for part in PARTS:
                if part.owner_table is table:
                    p = part.table
                    self.counts["deleted"][p.name] += self._audit_delete(
                        p.name,
                        p,
                        sa.and_(
                            p.c[part.owner].in_(self._undo_ids()),
                            p.c.account_id == self.acct,
                            self._prov(p) == self.cs_target,
                        ),
                    )
            self.counts["deleted"][entity_type] += self._audit_delete(
                entity_type, table, sa.and_(table.c.id.in_(self._undo_ids()), table.c.account_id == self.acct)
            )

    def _soft_delete_created(self, entity_type: str, table: sa.Table) -> int:
        """Soft-delete the records in the work table: the row stays (nothing that points at it
        breaks), with `deleted_at` set; its audit row's images are that field."""
        tmp, d = self.tmp, self.d
        todo = sa.and_(table.c.id == tmp.c.entity_id, tmp.c.flag == 0)
        src = (
            sa.select(
                table.c.id.label("entity_id"),
                d.image_of([table.c.deleted_at]).label("before"),
                d.json_object([("deleted_at", sa.cast(sa.literal(self.now.isoformat()), sa.Text()))]).label("after"),
            )
            .select_from(table.join(tmp, tmp.c.entity_id == table.c.id))
            .where(tmp.c.flag == 0)
        )
        n = self.conn.execute(audit_insert(self.cs, self._op("delete"), entity_type, src, now=self.now)).rowcount
        if n:
            self.conn.execute(table.update().where(todo).values(deleted_at=self.now, updated_at=self.now))
        return n

    # -- records it deleted for good

    def _deleted_for_good(self) -> bool:
        """Whether the change set deleted records for good: only a sync's `mirror` deletes do."""
        if self.kind != "sync":
            return False
        a = audit_log
        q = sa.select(1).where(written_by(a, self.cs_target), a.c.operation == HARD_DELETE).limit(1)
        return self.conn.execute(q).first() is not None

    def _recreate(self, entity_type: str, table: sa.Table) -> None:
        """Insert again the records of TABLE the change set deleted (an audit row whose before-image
        is the whole record and whose after-image is empty: a sync's `mirror` delete), from that
        image, with the tags it holds. A record that cannot come back as it was is a conflict, left out: what it pointed
        at is gone, or a live record holds its key (its external id, a unique value)."""
        a, d = audit_log.alias("rc"), self.d
        deleted = [
            written_by(a, self.cs_target),
            a.c.operation == HARD_DELETE,
            a.c.account_id == self.acct,
            a.c.entity_type == entity_type,
            d.image_is_object(a.c.before),
            sa.not_(sa.func.coalesce(d.image_is_object(a.c.after), sa.false())),
            ~sa.exists(sa.select(1).where(table.c.id == a.c.entity_id)),
        ]
        if self.conn.execute(sa.select(1).select_from(a).where(*deleted).limit(1)).first() is None:
            return
        columns = [c for c in table.c if c.computed is None]

        def value(c: sa.Column) -> sa.ColumnElement:
            v = d.image_value(a.c.before, c)
            return sa.cast(v, c.type) if isinstance(c.type, (sa.Integer, sa.Numeric, sa.Boolean)) else v

        clashes = []
        for fk in table.foreign_keys:
            if fk.parent.name != "account_id":
                parent = fk.column.table
                gone = ~sa.exists(sa.select(1).where(fk.column == value(fk.parent)))
                clashes.append(sa.and_(value(fk.parent).is_not(None), gone) if parent is not table else sa.false())
        unique = [list(u.columns) for u in table.constraints if isinstance(u, sa.UniqueConstraint)]
        if "external_id" in table.c:
            unique.append([table.c.account_id, table.c.external_id])
        for cols in unique:
            same = [
                sa.func.lower(c) == sa.func.lower(value(c)) if c.name == "external_id" else c == value(c) for c in cols
            ]
            # a unique constraint counts every row; an external id only the live records
            live = [table.c.deleted_at.is_(None)] if "deleted_at" in table.c else []
            keyed = any(c.name == "external_id" for c in cols)
            clashes.append(sa.exists(sa.select(1).where(*same, *(live if keyed else []))))
        flag = sa.case((sa.or_(sa.false(), *clashes), 1), else_=0)
        if not self._refill(sa.select(a.c.entity_id, a.c.before, a.c.id, flag).where(*deleted)):
            return
        self.counts["conflicts"][entity_type] += self._flagged(1)
        room = CONFLICTS_LISTED - len(self.listed)
        if room > 0:
            ids = self.conn.scalars(sa.select(self.tmp.c.entity_id).where(self.tmp.c.flag == 1).limit(room))
            self.listed += [(entity_type, i) for i in ids]
        todo = sa.select(self.tmp).where(self.tmp.c.flag == 0).subquery("todo")
        image = todo.c.image
        values = []
        for c in columns:
            v = d.image_value(image, c)
            values.append(sa.cast(v, c.type) if isinstance(c.type, (sa.Integer, sa.Numeric, sa.Boolean)) else v)
        self.conn.execute(table.insert().from_select([c.name for c in columns], sa.select(*values)))
        if table.name in {t.name for t in schema.ENTITY_TABLES.values()}:
            # the tags the image holds (a sync's mirror delete images them)
            tg, t = d.image_tags(image), schema.tags
            back = (
                sa.select(sa.literal(self.acct, sa.Uuid()), sa.literal(entity_type), todo.c.entity_id, tg.c.value)
                .select_from(todo.join(tg, sa.true()))
                .where(d.image_has(image, "tags"))
            )
            self.conn.execute(t.insert().from_select(["account_id", "entity_type", "entity_id", "tag"], back))
        src = sa.select(todo.c.entity_id.label("entity_id"), d.image_null().label("before"), image.label("after"))
        n = self.conn.execute(audit_insert(self.cs, self._op("restore"), entity_type, src, now=self.now)).rowcount
        self.counts["restored"][entity_type] += n

    def _undo_parts(self) -> None:
        """Parts it created under records it did not create: deleted, or closed."""
        for part in PARTS:
            p, owner = part.table, part.owner_table.alias("own")
            mine = sa.and_(
                p.c.account_id == self.acct,
                self._prov(p) == self.cs_target,
                # a row with two possible owners (a document) is undone under the one it has
                p.c[part.owner].is_not(None),
                sa.not_(
                    sa.exists(
                        sa.select(1)
                        .select_from(owner)
                        .where(owner.c.id == p.c[part.owner], self._prov(owner) == self.cs_target)
                    )
                ),
            )
            if part.close is None:
                self.counts["deleted"][p.name] += self._audit_delete(p.name, p, mine)
                continue
            column, open_value, closed = part.close
            still_open = sa.and_(mine, p.c[column] == open_value)
            src = sa.select(
                p.c.id.label("entity_id"),
                self.d.json_object([(column, p.c[column])]).label("before"),
                self.d.json_object([(column, sa.cast(sa.literal(closed), sa.Text()))]).label("after"),
            ).where(still_open)
            n = self.conn.execute(audit_insert(self.cs, self._op("close"), p.name, src, now=self.now)).rowcount
            if n:
                self.conn.execute(p.update().where(still_open).values({column: closed, "updated_at": self.now}))
            self.counts["closed"][p.name] += n
