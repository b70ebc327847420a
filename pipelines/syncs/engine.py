"""The sync engine: an external system -> the importer's mapping and validation -> the record store.

A sync run is a change set (kind "sync"): its records go through the import writer
(`connectors.store.importing`, kind "sync"), batch by batch, each batch one transaction holding
the records, their audit rows, the run's counters and its cursor. So a killed run resumes after
its last committed batch, the incremental cursor advances only as batches commit (the next run
starts from the last *completed* run's cursor), and `changes.rollback` undoes a run.

Conflicts: a row read from the source (it changed there since the last cursor) whose record
something else changed in the store since this connection last wrote it
(`syncs.changed_in_store`). Each field's strategy (its own, else the connection's) decides it:
source_wins takes the source's value; target_wins keeps the record's; newest_wins compares the
source row's cursor time with the record's `updated_at`; merge_non_empty takes the source's only
where the record's is empty; manual keeps the record's and queues the conflict (`bulkops
conflicts`). Where the source's value is taken, an empty one clears the field (`clear_fields`),
except under merge_non_empty.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from connectors.store import accounts, changes, schema, syncs
from connectors.store.errors import describe_error
from connectors.store.imports import ImportWriter, serialized_batches
from connectors.sync import Position, SqlConnector, SyncSourceError, ats
from connectors.sync.folder import FolderConnector
from connectors.sync.http import HttpConnector
from pipelines.imports.engine import prefetch
from pipelines.imports.errors import MappingError
from pipelines.imports.mapping import apply_mapping, bind_mapping
from pipelines.imports.validation import prepare
from pipelines.syncs.config import Connection, SyncConfigError

HTTP_OPTIONS = (
    "token",
    "username",
    "password",
    "pagination",
    "records",
    "fields",
    "explode",
    "params",
    "since_param",
    "write",
)
# errors listed in a run's details (all are counted)
ERRORS_LISTED = 20


class SyncFailed(Exception):
    """A sync run that could not complete; `run_id` names its row (committed batches stay)."""

    def __init__(self, message: str, run_id: uuid.UUID | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id


class SyncStopped(SyncFailed):
    """The run was terminated between two batches; it ends `cancelled` and the next run resumes it."""


@dataclass
class SyncResult:
    run_id: uuid.UUID
    name: str
    status: str
    counts: dict[str, int]
    resumed: bool = False
    elapsed_s: float = 0.0
    cursor: dict | None = None
    details: dict[str, Any] = field(default_factory=dict)


# distinct error reasons a run counts (the rest are counted as other reasons)
REASONS_KEPT = 50


def count_reasons(reasons: dict[str, int], errors: Iterable[tuple[str, str]]) -> None:
    """Count ERRORS ((column, reason) per failed record) into REASONS, at most REASONS_KEPT distinct ones."""
    for col, reason in errors:
        key = changes.reason_key(col, reason)
        if key not in reasons and len(reasons) >= REASONS_KEPT:
            key = changes.OTHER_REASONS
        reasons[key] = reasons.get(key, 0) + 1


def make_connector(connection: Connection) -> Any:
    """The connector of CONNECTION's source, its secrets read from the environment now."""
    src = connection.resolved_source()
    if src["type"] == "sql":
        return SqlConnector(src["url"], src["table"], key=src["key"], cursor=src.get("cursor"), name=connection.name)
    if src["type"] in ("greenhouse", "lever"):
        make = ats.greenhouse if src["type"] == "greenhouse" else ats.lever
        extra = {"base_url": src["base_url"]} if src.get("base_url") else {}
        return make(str(src["resource"]), src["token"], name=connection.name, **extra)
    if src["type"] == "files":
        return FolderConnector(
            str(src["path"]), key=src["key"], name=connection.name, write_format=str(src.get("format", "csv"))
        )
    if src["type"] == "http":
        options = {k: src[k] for k in HTTP_OPTIONS if k in src}
        return HttpConnector(src["url"], key=src["key"], cursor=src.get("cursor"), name=connection.name, **options)
    raise SyncConfigError(f"{connection.path}: source type {src['type']!r} is not available yet")


def _now() -> datetime:
    return datetime.now(UTC)


def run_sync(
    store: Any,
    connection: Connection,
    *,
    full_refresh: bool = False,
    dagster_run_id: str | None = None,
    connector: Any = None,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[dict[str, int]], None] | None = None,
) -> SyncResult:
    """Run CONNECTION once: read what changed since the last completed run (or everything), then,
    for `out` and `two_way`, write the store's changes to the source, then handle deletes.

    Raises:
        SyncFailed: the source failed or the mapping does not fit; the run's row says why, its
            committed batches stay, and the next run resumes after them.
    """
    t0 = time.monotonic()
    account_id = store.account_id(connection.account)
    owned = connector is None
    run_id: uuid.UUID | None = None
    try:
        if connector is None:
            connector = make_connector(connection)
        if connection.direction == "out" and connection.source["type"] != "sql":
            # a folder or an API written to only: the mapping names the columns it gets
            columns = list((connection.mapping or {}).get("columns") or {})
        else:
            columns = connector.columns()
        try:
            mapping = bind_mapping(connection.mapping, columns, connection.entity)
        except MappingError as exc:
            raise SyncFailed(f"{connection.name}: {exc.message}") from None
        key_rule = next((r for r in mapping.rules if r.target == connection.key_field), None)
        if key_rule is None:
            raise SyncFailed(f"{connection.name}: no source column maps to the key field {connection.key_field!r}")
        with store.begin() as conn:
            run_id, since, resumed = syncs.begin(
                conn,
                account_id,
                connection.name,
                full_refresh=full_refresh,
                direction=connection.direction,
                dagster_run_id=dagster_run_id,
            )
            row = syncs.row(conn, run_id)
            settings = accounts.settings(conn, account_id)
            check_conflicts = syncs.wrote_before(conn, account_id, connection.name, run_id)
        counts = {k: getattr(row, k) for k in syncs.COUNTS}
        details: dict[str, Any] = dict(row.details or {})
        errors: list[str] = list(details.get("errors_listed", []))
        reasons: dict[str, int] = dict(details.get("error_reasons", {}))
        position = Position.from_json(since)
        # where the last sync out's scan of the store's audit log stopped
        out_after = int((since or {}).get("out") or 0)
        row_no = 0
        writer: ImportWriter | None = None
        with store.engine.connect() as conn, serialized_batches(conn):
            try:

                def prepared() -> Any:
                    # read, map and validate the next batch while the store writes this one
                    start = 0
                    for batch in connector.read_batches(position, connection.batch_size):
                        n = batch.table.num_rows
                        rows = pa.array(range(start + 1, start + n + 1), pa.int64())
                        start += n
                        mapped = apply_mapping(mapping, batch.table, rows)
                        prep = prepare(
                            connection.entity,
                            mapped,
                            n,
                            duplicate_keys=(connection.key_field,),
                            account_settings=settings,
                        )
                        yield batch, rows, prep

                reading = connection.direction != "out"
                for batch, rows, prep in prefetch(prepared) if reading else ():
                    if should_stop is not None and should_stop():
                        raise SyncStopped(f"{connection.name}: stopped on request", run_id)
                    n = batch.table.num_rows
                    row_no += n
                    if writer is None:
                        writer = ImportWriter(
                            conn,
                            entity=connection.entity,
                            account_id=account_id,
                            import_id=run_id,
                            actor=f"sync:{connection.name}",
                            columns=[c for c in prep.table.column_names if c != "rnd"],
                            json_spec=prep.json,
                            on_duplicate="update",
                            duplicate_keys=(connection.key_field,),
                            kind="sync",
                            clear=clear_fields(connection, mapping),
                        )
                        with conn.begin():
                            writer.create_stage()
                    with conn.begin():
                        writer.refresh_statistics()
                    bad = {i for i, _, _ in prep.errors}
                    count_reasons(reasons, {i: (col, reason) for i, col, reason in prep.errors}.values())
                    for i, col, reason in prep.errors[: max(0, ERRORS_LISTED - len(errors))]:
                        errors.append(f"row {row_no - n + i + 1}, {col}: {reason}")
                    table = prep.table.append_column("row_no", rows)
                    keep = pa.array([i not in bad for i in range(n)], pa.bool_())
                    with conn.begin():
                        keys = batch.table.column(key_rule.source).to_pylist()
                        if check_conflicts:
                            kept, found, merged = _resolve_conflicts(
                                conn, connection, account_id, run_id, mapping, batch.table, keys, keep, prep.table
                            )
                            table = _keep(table, merged).filter(kept)
                        else:
                            found = 0
                            table = table.filter(keep)
                        outcome = writer.write_batch(table) if table.num_rows else None
                        counts["records_read"] += n
                        counts["errors"] += len(bad)
                        counts["conflicts"] += found
                        counts["skipped"] += n - len(bad) - table.num_rows
                        if outcome is not None:
                            counts["created"] += outcome.counts["created"]
                            counts["updated"] += outcome.counts["updated"]
                            counts["skipped"] += outcome.counts["skipped"] + outcome.counts["flagged"]
                            counts["unchanged"] += outcome.details.get("unchanged", 0)
                            counts["errors"] += len(outcome.errors)
                            count_reasons(reasons, ((col, reason) for _, col, reason in outcome.errors))
                            for row_n, col, reason in outcome.errors[: max(0, ERRORS_LISTED - len(errors))]:
                                errors.append(f"row {row_n}, {col}: {reason}")
                        details["errors_listed"] = errors
                        details["error_reasons"] = reasons
                        values: dict[str, Any] = {**counts, "details": details}
                        if batch.last is not None:
                            values["cursor"] = {**batch.last.to_json(), "out": out_after}
                        syncs.update(conn, run_id, **values)
                    if on_batch is not None:
                        on_batch(dict(counts))
                final = getattr(connector, "final_position", None)
                if final is not None:
                    # an API's pages are not in cursor order: its position commits with the run
                    with conn.begin():
                        syncs.update(conn, run_id, cursor={**final.to_json(), "out": out_after})
                if connection.direction in ("out", "two_way"):
                    # after the read, so what it wrote (this run's own rows) is not sent back
                    details["out"] = _push_out(conn, connection, connector, mapping, account_id, run_id, out_after)
                    with conn.begin():
                        current = syncs.row(conn, run_id).cursor or since or {}
                        syncs.update(
                            conn, run_id, details=details, cursor={**current, "out": details["out"]["position"]}
                        )
                if connection.delete != "ignore" and connection.direction != "out":
                    with conn.begin():
                        counts["deleted"] += syncs.handle_deletes(
                            conn,
                            run_id,
                            account_id,
                            connection.name,
                            entity=connection.entity,
                            key_field=connection.key_field,
                            keys=connector.read_keys(connection.batch_size * 5),
                            mode=connection.delete,
                        )
                        syncs.update(conn, run_id, deleted=counts["deleted"])
            finally:
                if writer is not None:
                    with conn.begin():
                        writer.drop_stage()
        status, message = "completed", None
        if changes.ends_failed(attempted=counts["records_read"], failed=counts["errors"]):
            # every record read failed: the run failed, and the next one reads them again
            listed = changes.counted_reasons(reasons, counts["errors"])
            status, message = "failed", changes.all_failed_message(counts["errors"], listed)
            details["failed_reasons"] = listed
        with store.begin() as conn:
            if status == "failed":
                syncs.update(conn, run_id, details=details)
            syncs.finish(conn, run_id, status, message)
            cursor = syncs.row(conn, run_id).cursor
        return SyncResult(
            run_id, connection.name, status, counts, resumed, round(time.monotonic() - t0, 3), cursor, details
        )
    except BaseException as exc:
        if isinstance(exc, SyncFailed):
            message = exc.message
        elif isinstance(exc, (SyncSourceError, SyncConfigError)):
            message = str(exc)
        elif isinstance(exc, Exception):
            message = describe_error(exc, url=store.engine.url)
        else:
            message = f"interrupted ({type(exc).__name__})"
        if run_id is not None:
            try:
                with store.begin() as conn:
                    stopped = isinstance(exc, SyncStopped) or not isinstance(exc, Exception)
                    status = "cancelled" if stopped else "failed"
                    syncs.finish(conn, run_id, status, message[:1900])
            except Exception:
                pass
        if isinstance(exc, SyncSourceError) and exc.transient:
            # the Dagster step retries it (RETRY_POLICY); the run's row says failed meanwhile
            raise SyncSourceError(message, transient=True) from None
        if isinstance(exc, SyncStopped):
            raise
        if isinstance(exc, Exception) and not _transient(exc):
            raise SyncFailed(message, run_id) from None
        raise
    finally:
        if owned and connector is not None:
            connector.close()


def _push_out(
    conn: Any,
    connection: Connection,
    connector: Any,
    mapping: Any,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    after: int,
) -> dict[str, Any]:
    """Write the records something other than this connection changed since the last sync out to
    the source table, through the mapping backwards (record field -> source column)."""
    with conn.begin():
        upto = syncs.audit_high_water(conn, account_id)
        records = syncs.changed_for_out(
            conn,
            account_id,
            connection.name,
            entity=connection.entity,
            after=after,
            upto=upto,
            key_field=connection.key_field,
        )
    back = [(r.source, r.target) for r in mapping.rules if r.target and "." not in r.target]
    cursor_col = connection.source.get("cursor")
    now = _now()
    rows = []
    for rec in records:
        row = {source: _outward(rec.get(target)) for source, target in back if target in rec}
        if cursor_col and cursor_col not in row:
            row[cursor_col] = now
        rows.append(row)
    inserted = updated = 0
    for n, i in enumerate(range(0, len(rows), connection.batch_size)):
        batch = f"{run_id}-{n + 1:05d}"
        n_in, n_up = connector.write_batches(rows[i : i + connection.batch_size], batch=batch)
        inserted, updated = inserted + n_in, updated + n_up
    return {"written": len(rows), "inserted": inserted, "updated": updated, "position": upto}


def _outward(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def _transient(exc: Exception) -> bool:
    from connectors.store.faults import is_transient

    return is_transient(exc)


# staged fields the writer needs to find the record and its candidate: never blanked
IDENTITY = frozenset({"external_id", "email", "email_norm", "candidate_external_id", "application_external_id", "code"})


def clear_fields(connection: Connection, mapping: Any) -> tuple[str, ...]:
    """The mapped fields whose empty source value clears the record's value: the record's own
    columns that may be empty (not its key), unless the field's strategy is merge_non_empty."""
    table = schema.ENTITY_TABLES[connection.entity]
    return tuple(
        f
        for f in _mapped(mapping)
        if f in table.c
        and table.c[f].nullable
        and f not in (connection.key_field, "external_id")
        and connection.strategy_of(f) != "merge_non_empty"
    )


def _mapped(mapping: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.target for r in mapping.rules if r.target and "." not in r.target))


def _decide(strategy: str, stored: Any, source_newer: bool) -> str:
    """Whose value one field of a conflicting record takes: source, target or manual (held)."""
    if strategy == "source_wins":
        return "source"
    if strategy == "newest_wins":
        return "source" if source_newer else "target"
    if strategy == "merge_non_empty":
        return "target" if stored not in (None, "") else "source"
    return "manual" if strategy == "manual" else "target"


def _resolve_conflicts(
    conn: Any,
    connection: Connection,
    account_id: uuid.UUID,
    run_id: uuid.UUID,
    mapping: Any,
    source: pa.Table,
    keys: list[Any],
    keep: pa.Array,
    staged: pa.Table,
) -> tuple[pa.Array, int, dict[str, dict[int, Any]]]:
    """Which rows of the batch to write, after the conflict strategies (the connection's and its
    fields' own).

    A conflicting record's fields are decided one by one: a field of the record's own table by its
    strategy, the others (an application's candidate and job) by the connection's. A record where
    nothing takes the source's value is not written at all. A field held for a manual decision
    stays held while its conflict is open, whatever later runs read.

    Returns (mask, conflicts, kept): KEPT names, per staged field, the rows that keep the record's
    value there, with that value (None: leave the cell empty, so the writer keeps the record's).
    """
    fields = _mapped(mapping)
    text_keys = [str(k) for k in keys if k is not None]
    lookup = {"entity": connection.entity, "key_field": connection.key_field, "keys": text_keys, "fields": fields}
    found = syncs.changed_in_store(conn, account_id, connection.name, **lookup)
    strategies = {connection.conflict, *connection.field_conflicts.values()}
    held: dict[str, dict[str, Any]] = {}
    if "manual" in strategies:
        open_keys = {x.strip().lower() for x in syncs.open_conflict_keys(conn, account_id, connection.name)}
        pending = [x for x in text_keys if x.strip().lower() in open_keys and x.strip().lower() not in found]
        if pending:
            held = syncs.changed_in_store(
                conn, account_id, connection.name, **{**lookup, "keys": pending}, changed_only=False
            )
    kept: dict[str, dict[int, Any]] = {}
    if not found and not held:
        return keep, 0, kept
    mask = keep.to_pylist()
    queued = []
    conflicts = 0
    compared = [f for f in fields if f in staged.column_names and f != connection.key_field]
    others = [f for f in compared if f not in schema.ENTITY_TABLES[connection.entity].c and f not in IDENTITY]
    cursor_col = connection.source.get("cursor")
    for i, k in enumerate(keys):
        folded = str(k).strip().lower() if k is not None else None
        rec = found.get(folded) if folded is not None else None
        still_open = rec is None and folded in held
        if still_open:
            # its conflict is open: what is held stays held, the rest follows the source
            rec = held[folded]
            decisions = {f: "manual" if connection.strategy_of(f) == "manual" else "source" for f in compared}
            rest = "manual" if connection.conflict == "manual" else "source"
        if rec is None or not mask[i]:
            continue
        if not still_open:
            if all(_same(staged.column(f)[i].as_py(), rec.get(f)) for f in compared if f in rec):
                # both sides hold the same values (a two-way sync's own write coming back): no conflict
                continue
            newer = False
            if cursor_col:
                src_time = _parse_time(source.column(cursor_col)[i].as_py())
                newer = src_time is not None and rec["updated_at"] is not None and src_time > _aware(rec["updated_at"])
            decisions = {f: _decide(connection.strategy_of(f), rec.get(f), newer) for f in compared if f in rec}
            # fields outside the record's table (its candidate's, its job): the connection's strategy
            rest = _decide(connection.conflict, None, newer)
        conflicts += 1
        if rest != "source" and "source" not in decisions.values():
            mask[i] = False  # nothing takes the source's value: the record stays as it is
        else:
            for f, whose in decisions.items():
                if whose != "source":
                    kept.setdefault(f, {})[i] = rec.get(f)
            if rest != "source":
                for f in others:
                    kept.setdefault(f, {})[i] = None
        if "manual" in decisions.values() or rest == "manual":
            row = {c: source.column(c)[i].as_py() for c in source.column_names}
            target = {c: _jsonable(v) for c, v in rec.items() if c not in ("k",)}
            queued.append(
                {
                    "id": uuid.uuid4(),
                    "account_id": account_id,
                    "sync_run_id": run_id,
                    "sync_name": connection.name,
                    "entity_type": connection.entity,
                    "entity_id": rec["id"],
                    "key": str(k),
                    "source_values": row,
                    "target_values": target,
                }
            )
    syncs.add_conflicts(conn, queued)
    return pa.array(mask, pa.bool_()), conflicts, kept


def _keep(table: pa.Table, kept: dict[str, dict[int, Any]]) -> pa.Table:
    """TABLE with the KEPT cells set to the record's value (or empty: the writer keeps the record's)."""
    for f, rows in kept.items():
        i = table.column_names.index(f)
        column = table.column(f).combine_chunks()
        values = column.to_pylist()
        for n, value in rows.items():
            values[n] = str(value) if value is not None and pa.types.is_string(column.type) else value
        table = table.set_column(i, f, pa.array(values, column.type))
    return table


def _same(staged: Any, stored: Any) -> bool:
    if staged is None or stored is None:
        return staged is None and stored is None
    if isinstance(stored, datetime):
        at = staged if isinstance(staged, datetime) else _parse_time(staged)
        return at is not None and _aware(at) == _aware(stored)
    return str(staged) == str(stored)


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return _aware(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def rollback_sync(store: Any, account_id: uuid.UUID, run_id: uuid.UUID, *, actor: str, force: bool = False) -> dict:
    """Undo a sync run (`changes.rollback`): what it created deleted, what it updated or deleted restored."""
    with store.engine.connect() as conn, serialized_batches(conn), conn.begin():
        row = syncs.row(conn, run_id)
        if row.account_id != account_id:
            raise SyncFailed(f"no sync run {run_id} in this account", run_id)
        try:
            result = changes.rollback(conn, run_id, account_id=account_id, actor=actor, force=force)
        except changes.RollbackRefused as exc:
            raise SyncFailed(f"cannot roll back sync run {run_id}: {exc}", run_id) from exc
        syncs.update(conn, run_id, status="rolled_back", details={**dict(row.details or {}), "rollback": result.counts})
    return {"run_id": run_id, "status": "rolled_back", **result.counts}


def end_run(store: Any, dagster_run_id: str, status: str, message: str) -> int:
    """End the sync_runs rows a Dagster run left processing (it crashed or was killed)."""
    with store.begin() as conn:
        return syncs.end_unfinished(conn, dagster_run_id, status, message[:1900])


def list_runs(store: Any, account_id: uuid.UUID, name: str | None = None, limit: int = 50) -> list[dict]:
    """Sync runs, newest first: started, finished, read, created, updated, unchanged, conflicts, errors, status."""
    with store.engine.connect() as conn:
        return syncs.listing(conn, account_id, name, limit)


def latest_runs(store: Any, account_id: uuid.UUID) -> dict[str, dict]:
    with store.engine.connect() as conn:
        return syncs.latest_by_name(conn, account_id)


def list_conflicts(store: Any, account_id: uuid.UUID, name: str | None = None, *, open_only: bool = True) -> list[dict]:
    with store.engine.connect() as conn:
        return syncs.conflicts(conn, account_id, name, open_only=open_only)


def get_conflict(store: Any, account_id: uuid.UUID, conflict_id: uuid.UUID) -> dict | None:
    with store.engine.connect() as conn:
        return syncs.conflict(conn, account_id, conflict_id)


def resolve_conflict(
    store: Any,
    connection: Connection,
    conflict_id: uuid.UUID,
    *,
    take: str,
    values: dict[str, str] | None = None,
    actor: str,
) -> dict:
    """Resolve a queued conflict: keep the record (`target`), write the source's values (`source`),
    or write the source's values with VALUES (record field -> value) in place (`value`).

    Either way a sync run of the connection of its own (a change set: audited, rollback-able)
    records the record as in step with the source (`syncs.mark_in_step`), so the conflict does not
    come back on the next run, and a sync out sends the record's values. Taking the source writes
    the fields the conflict held (all of them when the connection's strategy is manual, else the
    fields whose own strategy is manual); an empty source value clears such a field.
    """
    if take not in ("source", "target", "value"):
        raise SyncFailed(f"--take {take!r}: one of source, target, value")
    if take == "value" and not values:
        raise SyncFailed("--take value needs the values to write (FIELD=VALUE)")
    account_id = store.account_id(connection.account)
    with store.engine.connect() as conn:
        found = syncs.conflict(conn, account_id, conflict_id)
    if found is None or found["sync_name"] != connection.name:
        raise SyncFailed(f"no conflict {conflict_id} of sync {connection.name} in this account")
    if found["resolved_at"] is not None:
        raise SyncFailed(f"conflict {conflict_id} is already resolved ({found['resolution']})")
    row = {k: (None if v is None else str(v)) for k, v in found["source_values"].items()}
    columns = list(row)
    try:
        mapping = bind_mapping(connection.mapping, columns, connection.entity)
    except MappingError as exc:
        raise SyncFailed(f"{connection.name}: {exc.message}") from None
    entity_id = found["entity_id"]
    if take == "target":
        with store.begin() as conn:
            run_id = syncs.open_resolution_run(conn, account_id, connection.name, conflict_id)
            if entity_id is not None:
                syncs.mark_in_step(conn, run_id, connection.entity, entity_id)
            syncs.update(conn, run_id, records_read=1, skipped=1, unchanged=1)
            syncs.resolve_conflict(conn, conflict_id, take, actor)
            syncs.finish(conn, run_id, "completed")
        return {"conflict_id": conflict_id, "resolution": take, "sync_run_id": run_id}
    table_columns = schema.ENTITY_TABLES[connection.entity].c
    if connection.conflict == "manual":
        held = set(_mapped(mapping))
    else:
        held = {f for f in _mapped(mapping) if connection.strategy_of(f) == "manual"}
        # the fields the sync already decided stay as the record has them
        for r in mapping.rules:
            if r.target and r.target in table_columns and r.target not in held and r.target != connection.key_field:
                row[r.source] = None
    for field_name, value in (values or {}).items():
        rule = next((r for r in mapping.rules if r.target == field_name), None)
        if rule is None:
            raise SyncFailed(
                f"{field_name!r} is not a field this sync maps (one of {', '.join(r.target for r in mapping.rules if r.target)})"
            )
        row[rule.source] = value
        held.add(field_name)
    clear = tuple(
        f
        for f in held
        if f in table_columns and table_columns[f].nullable and f not in (connection.key_field, "external_id")
    )
    table = pa.table({c: pa.array([row[c]], pa.string()) for c in columns})
    with store.begin() as conn:
        run_id = syncs.open_resolution_run(conn, account_id, connection.name, conflict_id)
    with store.engine.connect() as conn, serialized_batches(conn):
        settings_ = accounts.settings(conn, account_id)
        conn.rollback()
        mapped = apply_mapping(mapping, table, pa.array([1], pa.int64()))
        prep = prepare(connection.entity, mapped, 1, duplicate_keys=(connection.key_field,), account_settings=settings_)
        if prep.errors:
            raise SyncFailed(f"the values do not fit: {'; '.join(f'{c}: {r}' for _, c, r in prep.errors)}", run_id)
        writer = ImportWriter(
            conn,
            entity=connection.entity,
            account_id=account_id,
            import_id=run_id,
            actor=actor,
            columns=[c for c in prep.table.column_names if c != "rnd"],
            json_spec=prep.json,
            on_duplicate="update",
            duplicate_keys=(connection.key_field,),
            kind="sync",
            clear=clear,
        )
        with conn.begin():
            writer.create_stage()
        try:
            with conn.begin():
                outcome = writer.write_batch(prep.table.append_column("row_no", pa.array([1], pa.int64())))
                counts = {"records_read": 1, **{k: outcome.counts[k] for k in ("created", "updated")}}
                counts["unchanged"] = outcome.details.get("unchanged", 0)
                counts["errors"] = len(outcome.errors)
                if entity_id is not None:
                    syncs.mark_in_step(conn, run_id, connection.entity, entity_id)
                syncs.update(conn, run_id, **counts)
                syncs.resolve_conflict(conn, conflict_id, take, actor)
        finally:
            with conn.begin():
                writer.drop_stage()
    with store.begin() as conn:
        syncs.finish(conn, run_id, "completed")
    return {"conflict_id": conflict_id, "resolution": take, "sync_run_id": run_id}


__all__ = [
    "SyncFailed",
    "SyncResult",
    "end_run",
    "get_conflict",
    "latest_runs",
    "list_conflicts",
    "list_runs",
    "make_connector",
    "resolve_conflict",
    "rollback_sync",
    "run_sync",
]
