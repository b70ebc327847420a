"""Sync runs in the record store: one row per run (`sync_runs`, backed by its change set), the
incremental position, delete handling and the manual-conflict queue (`sync_conflicts`).

The sync engine (`pipelines/syncs/engine.py`) writes records through the import writer
(`connectors.store.importing`, kind "sync"); these functions keep the run's own row, each in the
caller's transaction, so a batch's counters and cursor commit with its records.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from connectors.store import changes, registry, schema
from connectors.store.dialect import ACCOUNT_WRITES, dialect_of
from connectors.store.schema import sync_conflicts as k
from connectors.store.schema import sync_runs as s

# statuses of a run the next run of its connection picks up after its committed batches
RESUMABLE = ("processing", "failed", "cancelled")
# the audit operation of a record a resolved conflict put back in step (`mark_in_step`)
BASELINE = "sync.baseline"
COUNTS = ("records_read", "created", "updated", "skipped", "unchanged", "deleted", "conflicts", "errors")
LISTED = ("id", "sync_name", "started_at", "finished_at", *COUNTS, "status", "error_message", "full_refresh")


def row(conn: sa.Connection, run_id: uuid.UUID) -> sa.Row:
    return conn.execute(sa.select(s).where(s.c.id == run_id)).one()


def begin(
    conn: sa.Connection,
    account_id: uuid.UUID,
    name: str,
    *,
    full_refresh: bool,
    direction: str,
    dagster_run_id: str | None,
) -> tuple[uuid.UUID, dict | None, bool]:
    """The run to do: an unfinished one of NAME resumed, or a new one from the last completed cursor.

    Returns (run id, the position to read after, whether the run was resumed). A new run opens its
    change set (kind "sync") with its row.
    """
    last = conn.execute(
        sa.select(s).where(s.c.account_id == account_id, s.c.sync_name == name).order_by(s.c.started_at.desc()).limit(1)
    ).first()
    # a run that read to its end and failed every record (`failed_reasons` counted) is over, not unfinished:
    # the next run starts again from the last completed position, so those records are read again
    ran_to_end = last is not None and "failed_reasons" in (last.details or {})
    if last is not None and last.status in RESUMABLE and not full_refresh and not ran_to_end:
        conn.execute(
            s.update()
            .where(s.c.id == last.id)
            .values(status="processing", error_message=None, finished_at=None, dagster_run_id=dagster_run_id)
        )
        return last.id, last.cursor or last.cursor_from, True
    start = None if full_refresh else last_cursor(conn, account_id, name)
    run_id = uuid.uuid4()
    changes.open_change_set(conn, id=run_id, account_id=account_id, kind="sync", actor=f"sync:{name}")
    conn.execute(
        s.insert().values(
            id=run_id,
            account_id=account_id,
            sync_name=name,
            started_at=datetime.now(UTC),
            status="processing",
            cursor_from=start,
            full_refresh=full_refresh,
            direction=direction,
            dagster_run_id=dagster_run_id,
        )
    )
    return run_id, start, False


def open_resolution_run(conn: sa.Connection, account_id: uuid.UUID, name: str, conflict_id: uuid.UUID) -> uuid.UUID:
    """A sync run of NAME that writes one resolved conflict (its change set, rollback-able like any
    run); it keeps the connection's position, so the next run reads on from where it was."""
    run_id = uuid.uuid4()
    changes.open_change_set(conn, id=run_id, account_id=account_id, kind="sync", actor=f"sync:{name}")
    start = last_cursor(conn, account_id, name)
    conn.execute(
        s.insert().values(
            id=run_id,
            account_id=account_id,
            sync_name=name,
            started_at=datetime.now(UTC),
            status="processing",
            cursor_from=start,
            cursor=start,
            details={"resolves": str(conflict_id)},
        )
    )
    return run_id


def last_cursor(conn: sa.Connection, account_id: uuid.UUID, name: str) -> dict | None:
    """The position the last completed run of NAME reached (None: none completed, read everything).

    A rolled-back run's position stands: its source changes are not applied again until they
    change again (or a full refresh reads everything).
    """
    return conn.execute(
        sa.select(s.c.cursor)
        .where(s.c.account_id == account_id, s.c.sync_name == name, s.c.status.in_(("completed", "rolled_back")))
        .order_by(s.c.finished_at.desc())
        .limit(1)
    ).scalar()


def last_completed_at(conn: sa.Connection, account_id: uuid.UUID, name: str) -> datetime | None:
    return conn.execute(
        sa.select(sa.func.max(s.c.finished_at)).where(
            s.c.account_id == account_id, s.c.sync_name == name, s.c.status == "completed"
        )
    ).scalar()


def update(conn: sa.Connection, run_id: uuid.UUID, **values: Any) -> None:
    conn.execute(s.update().where(s.c.id == run_id).values(**values))


def finish(conn: sa.Connection, run_id: uuid.UUID, status: str, error_message: str | None = None) -> None:
    """End the run STATUS; a completed run with nothing new keeps the position it started from."""
    values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC), "error_message": error_message}
    if status == "completed":
        values["cursor"] = sa.func.coalesce(s.c.cursor, s.c.cursor_from)
    update(conn, run_id, **values)


def end_unfinished(conn: sa.Connection, dagster_run_id: str, status: str, error: str) -> int:
    """End the rows a Dagster run left processing (crashed, cancelled); a later run resumes them."""
    q = s.update().where(s.c.dagster_run_id == dagster_run_id, s.c.status == "processing")
    return conn.execute(q.values(status=status, error_message=error, finished_at=datetime.now(UTC))).rowcount


def listing(conn: sa.Connection, account_id: uuid.UUID, name: str | None = None, limit: int = 50) -> list[dict]:
    """Sync runs of the account (of NAME), newest first."""
    q = sa.select(*(s.c[c] for c in LISTED)).where(s.c.account_id == account_id)
    if name is not None:
        q = q.where(s.c.sync_name == name)
    return [dict(r._mapping) for r in conn.execute(q.order_by(s.c.started_at.desc()).limit(limit))]


def latest_by_name(conn: sa.Connection, account_id: uuid.UUID) -> dict[str, dict]:
    """The newest run of each connection of the account."""
    newest = (
        sa.select(s.c.sync_name, sa.func.max(s.c.started_at).label("at"))
        .where(s.c.account_id == account_id)
        .group_by(s.c.sync_name)
        .subquery()
    )
    q = sa.select(*(s.c[c] for c in LISTED)).join(
        newest, sa.and_(newest.c.sync_name == s.c.sync_name, newest.c.at == s.c.started_at)
    )
    return {r.sync_name: dict(r._mapping) for r in conn.execute(q.where(s.c.account_id == account_id))}


# -- records this connection wrote


def _runs_of(account_id: uuid.UUID, name: str) -> sa.Select:
    return sa.select(s.c.id).where(s.c.account_id == account_id, s.c.sync_name == name)


def handle_deletes(
    conn: sa.Connection,
    run_id: uuid.UUID,
    account_id: uuid.UUID,
    name: str,
    *,
    entity: str,
    key_field: str,
    keys: Iterable[list[str]],
    mode: str,
) -> int:
    """Records of ENTITY this connection wrote whose KEY_FIELD the source no longer holds.

    KEYS (the source's keys, in batches) are loaded into a temporary table; one statement then
    finds the records missing from it (keys compared folded). `soft_delete` sets `deleted_at`,
    `mirror` deletes them (dependants first would be the registry's blockers: a record others
    point at is soft-deleted instead). Every change has an audit row of the run's change set, so
    the run's rollback brings them back. Returns how many records were deleted.
    """
    d = dialect_of(conn)
    table = schema.ENTITY_TABLES[entity]
    tmp = sa.Table(
        f"sync_keys_{uuid.uuid4().hex[:12]}",
        sa.MetaData(),
        sa.Column("k", d.staging_type(sa.Text())),
        sa.Index(None, "k"),
        prefixes=["TEMPORARY"],
    )
    d.create_temp_table(conn, tmp)
    try:
        import pyarrow as pa

        for batch in keys:
            folded = [str(x).strip().lower() for x in batch]
            d.bulk_load(conn, tmp, pa.table({"k": pa.array(folded, pa.string())}))
        d.analyze(conn, tmp, ["k"])
        a = schema.audit_log.alias("del_a")
        runs = _runs_of(account_id, name)
        wrote = sa.exists(
            sa.select(1).where(
                a.c.account_id == account_id,
                a.c.entity_type == entity,
                a.c.entity_id == table.c.id,
                changes.writer_of(a).in_(runs),
            )
        )
        key = table.c[key_field]
        missing = sa.and_(
            table.c.account_id == account_id,
            table.c.deleted_at.is_(None),
            key.is_not(None),
            sa.or_(table.c.import_id.in_(runs), wrote),
            ~sa.exists(sa.select(1).where(tmp.c.k == sa.func.lower(sa.func.trim(key)))),
        )
        d.lock(conn, ACCOUNT_WRITES, str(account_id))
        now = datetime.now(UTC)
        cs = changes.load_change_set(conn, run_id)
        assert cs is not None
        src = sa.select(
            table.c.id.label("entity_id"),
            d.json_object([("deleted_at", sa.null())]).label("before"),
            d.json_object([("deleted_at", sa.literal(now.isoformat()))]).label("after"),
        ).where(missing)
        ids = [r[0] for r in conn.execute(sa.select(table.c.id).where(missing))]
        if not ids:
            return 0
        soft = ids
        if mode == "mirror":
            # hard delete, with the parts that belong to the record (form submissions); a record
            # other rows still point at (a contract, a recollection request) is soft-deleted
            parts = [p for p in changes.PARTS if p.owner_table is table and p.close is None]
            part_tables = {p.table.name for p in parts}
            blocked = sa.or_(
                sa.false(),
                *(
                    sa.exists(sa.select(1).where(other.c[col] == table.c.id))
                    for other, col in registry.get(entity).delete_blockers
                    if other.name not in part_tables
                ),
            )
            hard = [r[0] for r in conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids), ~blocked))]
            for p in parts:
                pt = p.table
                where = pt.c[p.owner].in_(hard)
                _audit_images(conn, cs, pt.name, pt, where, now)
                conn.execute(pt.delete().where(where))
            if hard:
                _audit_images(conn, cs, entity, table, table.c.id.in_(hard), now)
                t = schema.tags
                conn.execute(
                    t.delete().where(t.c.account_id == account_id, t.c.entity_type == entity, t.c.entity_id.in_(hard))
                )
                conn.execute(table.delete().where(table.c.id.in_(hard)))
            soft = [i for i in ids if i not in set(hard)]
        if soft:
            conn.execute(changes.audit_insert(cs, "sync.soft_delete", entity, src.where(table.c.id.in_(soft)), now=now))
            conn.execute(table.update().where(table.c.id.in_(soft)).values(deleted_at=now, updated_at=now))
        return len(ids)
    finally:
        d.drop_temp_table(conn, tmp)


def _audit_images(
    conn: sa.Connection, cs: changes.ChangeSet, entity_type: str, table: sa.Table, where: Any, now: datetime
) -> None:
    """An audit row per record of TABLE matching WHERE holding the record as it is (deleted next)."""

    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v

    records = conn.execute(sa.select(table).where(where)).all()
    tags: dict[Any, list[str]] = {}
    if entity_type in schema.ENTITY_TABLES:
        # the record's tags go with it (deleted next); the image brings them back on rollback
        t = schema.tags
        q = sa.select(t.c.entity_id, t.c.tag).where(
            t.c.entity_type == entity_type, t.c.entity_id.in_([r.id for r in records])
        )
        for entity_id, tag in conn.execute(q.order_by(t.c.tag)):
            tags.setdefault(entity_id, []).append(tag)
    rows = [
        (
            entity_type,
            r.id,
            {k: plain(v) for k, v in r._mapping.items()} | ({"tags": tags[r.id]} if r.id in tags else {}),
            None,
        )
        for r in records
    ]
    changes.write_audit_rows(conn, cs, changes.HARD_DELETE, rows, now=now)


# -- manual conflicts


def add_conflicts(conn: sa.Connection, rows: list[dict]) -> int:
    """Queue ROWS; a key with an open conflict of the same connection gets the newer values instead."""
    for r in rows:
        same = sa.and_(
            k.c.account_id == r["account_id"],
            k.c.sync_name == r["sync_name"],
            k.c.key == r["key"],
            k.c.resolved_at.is_(None),
        )
        newer = {c: r[c] for c in ("sync_run_id", "source_values", "target_values")}
        if not conn.execute(k.update().where(same).values(**newer)).rowcount:
            conn.execute(k.insert().values(**r))
    return len(rows)


def open_conflict_keys(conn: sa.Connection, account_id: uuid.UUID, name: str) -> set[str]:
    q = sa.select(k.c.key).where(k.c.account_id == account_id, k.c.sync_name == name, k.c.resolved_at.is_(None))
    return {r[0] for r in conn.execute(q)}


def conflicts(
    conn: sa.Connection, account_id: uuid.UUID, name: str | None = None, *, open_only: bool = True
) -> list[dict]:
    q = sa.select(k).where(k.c.account_id == account_id)
    if name is not None:
        q = q.where(k.c.sync_name == name)
    if open_only:
        q = q.where(k.c.resolved_at.is_(None))
    return [dict(r._mapping) for r in conn.execute(q.order_by(k.c.created_at))]


def conflict(conn: sa.Connection, account_id: uuid.UUID, conflict_id: uuid.UUID) -> dict | None:
    r = conn.execute(sa.select(k).where(k.c.account_id == account_id, k.c.id == conflict_id)).first()
    return None if r is None else dict(r._mapping)


def mark_in_step(conn: sa.Connection, run_id: uuid.UUID, entity: str, entity_id: uuid.UUID) -> None:
    """An audit row `sync.baseline` of RUN_ID (a run of the connection) on the record, changing
    nothing: the connection's last sync of the record is now, so the store's changes before it are
    no conflict any more (a resolved conflict does not come back), and a sync out sends the record."""
    cs = changes.load_change_set(conn, run_id)
    assert cs is not None
    changes.write_audit_rows(conn, cs, BASELINE, [(entity, entity_id, None, None)], now=datetime.now(UTC))


def resolve_conflict(conn: sa.Connection, conflict_id: uuid.UUID, resolution: str, actor: str) -> None:
    conn.execute(
        k.update()
        .where(k.c.id == conflict_id)
        .values(resolved_at=datetime.now(UTC), resolution=resolution, resolved_by=actor)
    )


# -- conflicts: records changed in the store since this connection last wrote them


def wrote_before(conn: sa.Connection, account_id: uuid.UUID, name: str, run_id: uuid.UUID) -> bool:
    """Whether an earlier run of NAME wrote any record: without one, nothing can be a conflict
    (a first sync skips the check, whose cost grows with the table)."""
    a = schema.audit_log
    earlier = _runs_of(account_id, name).where(s.c.id != run_id)
    return conn.execute(sa.select(a.c.id).where(a.c.change_set_id.in_(earlier)).limit(1)).first() is not None


def changed_in_store(
    conn: sa.Connection,
    account_id: uuid.UUID,
    name: str,
    *,
    entity: str,
    key_field: str,
    keys: list[str],
    fields: tuple[str, ...],
    changed_only: bool = True,
) -> dict[str, dict[str, Any]]:
    """Of the records whose KEY_FIELD is one of KEYS (compared folded), those something other than
    this connection changed after the connection's last write of them (`changes.changed_since`
    from that write: undone changes and rollbacks do not count). A record the connection never
    wrote has no last sync to compare with: not a conflict. CHANGED_ONLY False: every record of
    KEYS, changed or not.

    Returns folded key -> {"id", "updated_at", FIELDS...}: the store's side of each conflict.
    """
    if not keys:
        return {}
    table = schema.ENTITY_TABLES[entity]
    a = schema.audit_log.alias("mine")
    runs = _runs_of(account_id, name)
    mine = [
        a.c.account_id == account_id,
        a.c.entity_type == entity,
        a.c.entity_id == table.c.id,
        changes.writer_of(a).in_(runs),
    ]
    last_id = sa.select(sa.func.max(a.c.id)).where(*mine).scalar_subquery()
    b = schema.audit_log.alias("last")
    last_writer = sa.select(changes.writer_of(b)).where(b.c.id == last_id).scalar_subquery()
    changed = changes.changed_since(last_writer, entity, table.c.id, account_id=account_id, after=last_id)
    # lower(), as the folded key index has it (keys are stored trimmed)
    folded = sa.func.lower(table.c[key_field])
    cols = [table.c[f] for f in fields if f in table.c]
    q = (
        sa.select(table.c.id, folded.label("k"), table.c.updated_at, *cols)
        .where(table.c.account_id == account_id, table.c.deleted_at.is_(None))
        .where(folded.in_([x.strip().lower() for x in keys]))
    )
    if changed_only:
        q = q.where(last_id.is_not(None), changed)
    return {r.k: dict(r._mapping) for r in conn.execute(q)}


# -- the store's side of a sync out: records changed by anything but this connection


def audit_high_water(conn: sa.Connection, account_id: uuid.UUID) -> int:
    """The newest audit row id of the account (0 when none): where a sync out's scan stops."""
    a = schema.audit_log
    return int(conn.execute(sa.select(sa.func.max(a.c.id)).where(a.c.account_id == account_id)).scalar() or 0)


def changed_for_out(
    conn: sa.Connection,
    account_id: uuid.UUID,
    name: str,
    *,
    entity: str,
    after: int,
    upto: int,
    key_field: str,
) -> list[dict[str, Any]]:
    """Records of ENTITY with an audit row in (AFTER, UPTO] written by anything but this
    connection's runs (so what the connection wrote itself is never sent back: no echo), or put
    back in step by a conflict's resolution (`mark_in_step`: the record's values win), as
    they are now, with a non-empty KEY_FIELD and no open conflict of the connection. Applications
    carry their candidate's email and names and their job's code."""
    table = schema.ENTITY_TABLES[entity]
    a = schema.audit_log
    runs = _runs_of(account_id, name)
    changed = (
        sa.select(a.c.entity_id)
        .where(a.c.account_id == account_id, a.c.entity_type == entity, a.c.id > after, a.c.id <= upto)
        .where(sa.or_(changes.writer_of(a).is_(None), changes.writer_of(a).not_in(runs), a.c.operation == BASELINE))
        .distinct()
    )
    open_keys = sa.select(k.c.key).where(k.c.account_id == account_id, k.c.sync_name == name, k.c.resolved_at.is_(None))
    cols: list[Any] = [table]
    src: Any = table
    if entity == "applications":
        u, j = schema.users, schema.jobs
        src = table.join(u, u.c.id == table.c.candidate_id).outerjoin(j, j.c.id == table.c.job_id)
        cols += [
            u.c.email,
            u.c.first_name,
            u.c.last_name,
            u.c.phone,
            j.c.code.label("job_code"),
            j.c.title.label("job_title"),
        ]
    q = (
        sa.select(*cols)
        .select_from(src)
        .where(table.c.account_id == account_id, table.c.id.in_(changed), table.c[key_field].is_not(None))
        .where(table.c[key_field].not_in(open_keys))
    )
    return [dict(r._mapping) for r in conn.execute(q)]
