"""What differs between PostgreSQL and SQLite for the store's set-based write paths: one object each.

`dialect_of(conn)` gives the connection's `StoreDialect`. Writers build their statements with
SQLAlchemy Core and ask it for the pieces that differ: JSON objects and merges, the "row equals
stored" comparison, new and derived ids, loading a staging table (COPY on PostgreSQL,
executemany on SQLite), planner settings and statistics, the per-account lock (PostgreSQL) or
immediate transactions (SQLite), statements whose rows feed another statement (one
statement with a data-modifying CTE on PostgreSQL, two on SQLite), the JSON of audit images a
rollback reads and writes, and what bulk jobs do differently (batch size, the job lock, the
items' COPY, set-based batches).

Values are bound parameters, or constants SQLAlchemy renders into the statement (`inline`);
none is quoted by hand. Only identifiers (table and column names the code chose) are put into
the few utility statements Core has no construct for (COPY, ANALYZE, TRUNCATE).
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    # pyarrow is imported where a staging table is loaded: a run that never loads one (a bulk job,
    # a rollback) does not pay for it when its worker starts
    import pyarrow as pa

from connectors.store import schema

# the lock scope of writes to an account's records: import batches and rollbacks take turns (PostgreSQL)
ACCOUNT_WRITES = "bulkops.import"
# held by a sharded import for its whole run (its shards' batches share ACCOUNT_WRITES), and by
# a shard's batch that creates jobs
SHARDED_IMPORT = "bulkops.import.sharded"
JOB_CODES = "bulkops.import.jobs"
# held by the process writing one shard of a sharded import (key: import id and shard)
IMPORT_SHARD = "bulkops.import.shard"
# jsonb_build_object takes at most 100 arguments: objects are built from chunks of pairs
JSON_PAIRS_PER_CALL = 40
# a bulk job with this many items gets fresh statistics of bulk_job_items (PostgreSQL)
ANALYZE_ITEMS = 10_000


def inline(value: Any, type_: sa.types.TypeEngine | None = None) -> sa.BindParameter:
    """A constant that SQLAlchemy renders into the statement (its literal renderer quotes it).

    For constants the planner should see as values: `outcome = 'created'` is estimated from
    the column's statistics, which a parameter in a prepared (generic) plan is not.
    """
    return sa.bindparam(None, value, type_=type_, literal_execute=True)


class Untyped(sa.types.UserDefinedType):
    """A column without a declared type (SQLite: no affinity, values stay as they are bound)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""


class StoreDialect:
    """The operations whose SQL differs between the store's databases (see the subclasses)."""

    name = ""
    # whether the planner needs its statistics refreshed while a large import grows a table
    keeps_planner_statistics = False
    # records per bulk-job batch: fewer, larger transactions where the database takes them well
    bulk_batch_size = 1000
    # whether a batch of a bulk set operation runs as one statement (connectors/store/bulk/set_batch_pg.py)
    set_based_batches = False

    # -- values bound into raw SQL (Core columns of the schema's types convert by themselves)

    def bind_uuid(self, value: uuid.UUID) -> Any:
        """VALUE as the database stores a uuid."""
        raise NotImplementedError

    def bind_timestamp(self, value: datetime) -> Any:
        """VALUE as the database stores a timestamp."""
        raise NotImplementedError

    def bind_now(self) -> Any:
        """Now (UTC), as the database stores a timestamp."""
        return self.bind_timestamp(datetime.now(UTC))

    # -- ids

    def new_uuid(self) -> sa.ColumnElement:
        """SQL: a new random uuid per row."""
        raise NotImplementedError

    def uuid_from(self, prefix: str, number: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: the uuid PREFIX (24 hex digits, dashed as a uuid's first four groups) + NUMBER as 8 hex digits."""
        raise NotImplementedError

    # -- JSON

    def empty_json(self) -> sa.ColumnElement:
        raise NotImplementedError

    def json_object(self, pairs: Sequence[tuple[str, sa.ColumnElement]]) -> sa.ColumnElement:
        """SQL: a JSON object of (key, expression) PAIRS."""
        if not pairs:
            return self.empty_json()
        chunks = [pairs[i : i + JSON_PAIRS_PER_CALL] for i in range(0, len(pairs), JSON_PAIRS_PER_CALL)]
        objects = [self._build_object([a for k, e in chunk for a in (inline(k, sa.String()), e)]) for chunk in chunks]
        out = objects[0]
        for more in objects[1:]:
            out = self.json_merge(out, more)
        return out

    def _build_object(self, args: list[sa.ColumnElement]) -> sa.ColumnElement:
        raise NotImplementedError

    def json_object_without_nulls(self, pairs: Sequence[tuple[str, sa.ColumnElement]]) -> sa.ColumnElement:
        """SQL: `json_object` without the keys whose value is NULL."""
        raise NotImplementedError

    def json_merge(self, left: sa.ColumnElement, right: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: LEFT with RIGHT's keys set over it."""
        raise NotImplementedError

    def json_value(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: a stored JSON column as a JSON value (inside `json_object`: an object, not a string)."""
        return column

    def json_parse(self, text: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: the JSON value of TEXT."""
        raise NotImplementedError

    # -- comparisons

    def fold(self, key: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: a key as compared ignoring case (what the (account_id, lower(key)) indexes hold)."""
        return sa.func.lower(key)

    def uuid_text(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: a uuid column as the text the database holds (PostgreSQL: canonical; SQLite: 32 hex digits)."""
        return sa.type_coerce(column, sa.Text())

    def uuid_canonical(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: a uuid column as its canonical text where the database has it (PostgreSQL), else
        the column itself (Python renders the uuid it reads)."""
        return column

    def same_value(self, column: sa.Column, stored: sa.ColumnElement, value: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: STORED (of COLUMN's type) equals VALUE; NULL equals NULL."""
        return stored.is_not_distinct_from(value)

    def same_as_stored(
        self, table: sa.Table, stored: sa.FromClause, assignments: dict[str, sa.ColumnElement]
    ) -> sa.ColumnElement:
        """SQL: true when writing ASSIGNMENTS would leave the row STORED (TABLE or its alias) exactly as it is.

        The "row equals stored" rule of every writer of records: such a row is unchanged, and
        gets no UPDATE and no audit row. NULL equals NULL; JSON columns compare as JSON;
        timestamps as instants.
        """
        parts = [self.same_value(table.c[name], stored.c[name], value) for name, value in assignments.items()]
        return sa.and_(sa.true(), *parts)

    # -- writing

    def insert(self, table: sa.Table) -> Any:
        """INSERT into TABLE with this database's ON CONFLICT clause (`on_conflict_do_nothing/update`)."""
        raise NotImplementedError

    def insert_then(
        self,
        conn: sa.Connection,
        insert: sa.Insert,
        returning: Sequence[sa.Column],
        then: Callable[[sa.FromClause], sa.Executable],
        inserted: Callable[[], sa.Select],
        params: dict[str, Any],
        also: Sequence[sa.Update] = (),
    ) -> int:
        """Run INSERT, then THEN over the rows it inserted (their RETURNING columns); the rows inserted.

        THEN acts once on each inserted row (it writes their audit rows, say). `inserted()` selects
        those same columns of the inserted rows back from their table, for databases that cannot
        feed RETURNING into another statement. The ALSO statements run with them, seeing the
        rows as they were before INSERT (inserted() must not depend on what they change).
        """
        raise NotImplementedError

    def for_update(self, rows: sa.Select) -> sa.Select:
        """ROWS, locked until the transaction ends (SQLite: its write lock, taken by a write, is the lock)."""
        return rows

    def first_per(self, rows: sa.Select, key: sa.ColumnElement, order: sa.ColumnElement) -> sa.Select:
        """ROWS, only the first one (lowest ORDER, which must be unique) per KEY."""
        table = order.table
        firsts = sa.select(sa.func.min(order)).select_from(table).where(rows.whereclause).group_by(key)
        return rows.where(order.in_(firsts.correlate(None)))

    # -- temporary tables

    def staging_type(self, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        """The type of a staging table's column holding TYPE's values."""
        return type_

    def create_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        table.create(conn)

    def drop_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        conn.execute(sa.schema.DropTable(table, if_exists=True))

    def empty_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        conn.execute(table.delete())

    def release_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        """A temporary table its transaction is done with (PostgreSQL: created ON COMMIT DROP)."""
        self.drop_temp_table(conn, table)

    def bulk_load(self, conn: sa.Connection, table: sa.Table, data: pa.Table) -> None:
        """Append DATA's rows (its columns name TABLE's) to TABLE."""
        raise NotImplementedError

    # -- record images (an audit row's before/after), read and written by the rollback

    def image_null(self) -> sa.ColumnElement:
        """SQL NULL typed as an image (PostgreSQL reads a bare NULL in a subquery as text)."""
        return sa.null()

    def image_is_object(self, image: sa.ColumnElement) -> sa.ColumnElement[bool]:
        raise NotImplementedError

    def image_has(self, image: sa.ColumnElement, key: str) -> sa.ColumnElement[bool]:
        """SQL: IMAGE has the key KEY."""
        raise NotImplementedError

    def image_column(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """A record's column as the JSON value an image holds."""
        return column

    def image_of(self, columns: Sequence[sa.Column]) -> sa.ColumnElement:
        """SQL: the image {name: value} of COLUMNS of one row."""
        return self.json_object([(c.name, self.image_column(c)) for c in columns])

    def image_like(self, image: sa.ColumnElement, columns: Sequence[sa.Column]) -> sa.ColumnElement:
        """SQL: the image of the row's COLUMNS whose names are keys of IMAGE (their current values)."""
        raise NotImplementedError

    def image_value(self, image: sa.ColumnElement, column: sa.Column) -> sa.ColumnElement:
        """SQL: COLUMN's value in IMAGE, typed for the column."""
        raise NotImplementedError

    def image_tags(self, image: sa.ColumnElement) -> sa.TableValuedAlias:
        """The tags of IMAGE's "tags" array, one row (column `value`) each."""
        raise NotImplementedError

    def texts(self, array: sa.BindParameter, name: str) -> sa.TableValuedAlias:
        """The rows (column `value`) of the texts of ARRAY, a parameter bound to a JSON array of strings.

        One parameter, not one per value: the statement is the same whatever the values, so it
        is compiled once (a VALUES list of a thousand parameters was compiled on every call).
        """
        raise NotImplementedError

    def tags_image(self, tags: sa.Select, tag: sa.ColumnElement) -> sa.ColumnElement:
        """SQL: the image {"tags": [...]} of the TAG values TAGS selects, sorted."""
        raise NotImplementedError

    # -- bulk jobs

    def lock_job(self, conn: sa.Connection, job_id: uuid.UUID) -> None:
        """Take the bulk job's lock before reading its row (with `for_update`)."""
        raise NotImplementedError

    def relax_commit(self, conn: sa.Connection) -> None:
        """Let this transaction commit without waiting for durability (a batch that is redone if lost)."""

    def write_items(self, conn: sa.Connection, job_id: uuid.UUID, entity_ids: Sequence[uuid.UUID | str]) -> None:
        """One pending bulk-job item per entity id (uuids or canonical uuid strings), numbered from 0."""
        chunk = 5000
        for start in range(0, len(entity_ids), chunk):
            conn.execute(
                schema.bulk_job_items.insert(),
                [
                    {
                        "bulk_job_id": job_id,
                        "seq": start + n,
                        "entity_id": eid if isinstance(eid, uuid.UUID) else uuid.UUID(eid),
                        "status": "pending",
                    }
                    for n, eid in enumerate(entity_ids[start : start + chunk])
                ],
            )

    # -- planner, locks, transactions

    def analyze(self, conn: sa.Connection, table: sa.Table | str, columns: Sequence[str] = ()) -> None:
        """Refresh the planner's statistics of TABLE (of COLUMNS only, when given)."""

    def has_statistics(self, conn: sa.Connection, table: str) -> bool:
        """Whether TABLE was ever analyzed."""
        return True

    def set_local(self, conn: sa.Connection, **settings: str) -> None:
        """Planner and session settings until the transaction ends."""

    @contextlib.contextmanager
    def setting(self, conn: sa.Connection, name: str, value: str) -> Iterator[None]:
        """NAME = VALUE inside the block, then the value it had (the server's or the session's)."""
        yield

    def lock(self, conn: sa.Connection, scope: str, key: str, *, shared: bool = False) -> None:
        """Wait for, then hold until commit, the lock of (SCOPE, KEY): writers of one key take turns.

        `shared`: holders of the shared lock go together; they wait for an exclusive holder and it for them.
        """

    def session_lock(self, conn: sa.Connection, scope: str, key: str, *, shared: bool = False) -> None:
        """Wait for, then hold until `session_unlock` (or until CONN's session ends), the lock of (SCOPE, KEY).

        `shared`: holders of the shared lock go together; they wait for an exclusive holder and it for them.
        """

    def session_unlock(self, conn: sa.Connection, scope: str, key: str, *, shared: bool = False) -> None:
        """Release the lock `session_lock` took (`shared` as it was taken)."""

    @contextlib.contextmanager
    def serialized_batches(self, conn: sa.Connection) -> Iterator[None]:
        """While the block runs, each transaction of CONN takes the write lock at its start."""
        yield

    def _quote(self, conn: sa.Connection, name: str) -> str:
        return conn.dialect.identifier_preparer.quote(name)


class PostgresDialect(StoreDialect):
    name = "postgresql"
    keeps_planner_statistics = True
    bulk_batch_size = 20_000
    set_based_batches = True

    def bind_uuid(self, value: uuid.UUID) -> Any:
        return value

    def bind_timestamp(self, value: datetime) -> Any:
        return value

    def new_uuid(self) -> sa.ColumnElement:
        return sa.func.gen_random_uuid()

    def uuid_from(self, prefix: str, number: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(inline(prefix) + sa.func.lpad(sa.func.to_hex(number), 8, inline("0")), sa.Uuid)

    def empty_json(self) -> sa.ColumnElement:
        return sa.cast(inline("{}"), postgresql.JSONB)

    def _build_object(self, args: list[sa.ColumnElement]) -> sa.ColumnElement:
        return sa.func.jsonb_build_object(*args, type_=postgresql.JSONB)

    def json_object_without_nulls(self, pairs: Sequence[tuple[str, sa.ColumnElement]]) -> sa.ColumnElement:
        if not pairs:
            return self.empty_json()
        return sa.func.jsonb_strip_nulls(self.json_object(pairs), type_=postgresql.JSONB)

    def json_merge(self, left: sa.ColumnElement, right: sa.ColumnElement) -> sa.ColumnElement:
        return sa.Grouping(left.op("||", return_type=postgresql.JSONB)(right))

    def json_parse(self, text: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(text, postgresql.JSONB)

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def insert_then(self, conn, insert, returning, then, inserted, params, also=()) -> int:  # type: ignore[no-untyped-def]
        # one statement: THEN reads the inserted rows from RETURNING, not by re-joining the
        # table; ALSO are data-modifying CTEs of it (all see the snapshot before the statement)
        rows = insert.returning(*returning).cte("inserted_rows")
        more = [statement.cte(f"also_{i}") for i, statement in enumerate(also)]
        return _counted(conn, then(rows).add_cte(rows, *more), params)

    def uuid_text(self, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(column, sa.Text)

    def uuid_canonical(self, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.cast(column, sa.Text)

    def lock_job(self, conn: sa.Connection, job_id: uuid.UUID) -> None:
        # the job's row is read FOR UPDATE
        return None

    def relax_commit(self, conn: sa.Connection) -> None:
        # no wait for the WAL flush: a crash can lose the last batches committed, but each batch
        # commits with its own counters and next_seq, so they are lost whole and the next run
        # redoes them
        self.set_local(conn, synchronous_commit="off")

    def write_items(self, conn: sa.Connection, job_id: uuid.UUID, entity_ids: Sequence[uuid.UUID | str]) -> None:
        # one COPY: a million ids in a few seconds
        job = str(job_id)
        chunk = 100_000
        cursor = conn.connection.driver_connection.cursor()
        with cursor.copy("COPY bulk_job_items (bulk_job_id, seq, entity_id, status) FROM STDIN") as copy:
            for start in range(0, len(entity_ids), chunk):
                copy.write(
                    "".join(
                        f"{job}\t{seq}\t{eid}\tpending\n"
                        for seq, eid in enumerate(entity_ids[start : start + chunk], start)
                    )
                )
        cursor.close()
        if len(entity_ids) >= ANALYZE_ITEMS:
            # fresh statistics, or the planner takes a million new items for a handful and
            # joins each batch by nested loops over the whole job
            self.analyze(conn, schema.bulk_job_items)

    def for_update(self, rows: sa.Select) -> sa.Select:
        return rows.with_for_update()

    def first_per(self, rows: sa.Select, key: sa.ColumnElement, order: sa.ColumnElement) -> sa.Select:
        return rows.ext(postgresql.distinct_on(key)).order_by(key, order)

    def create_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        # temp tables live in local buffers: 8 MB by default would spill every batch to disk; the
        # setting only takes before the session's first temp table (else it keeps its value)
        try:
            with conn.begin_nested():
                conn.execute(sa.select(sa.func.set_config("temp_buffers", "256MB", False)))
        except sa.exc.DBAPIError:
            pass
        table.create(conn)

    def empty_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        # TRUNCATE, not DELETE: temp tables are never vacuumed, dead rows would pile up batch after batch
        conn.exec_driver_sql(f"TRUNCATE {self._quote(conn, table.name)}")

    def bulk_load(self, conn: sa.Connection, table: sa.Table, data: pa.Table) -> None:
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(data, buf, pcsv.WriteOptions(include_header=False, batch_size=65536))
        names = ", ".join(self._quote(conn, c) for c in data.column_names)
        copy = f"COPY {self._quote(conn, table.name)} ({names}) FROM STDIN (FORMAT csv)"
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur, cur.copy(copy) as cp:
            cp.write(buf.getbuffer())

    def analyze(self, conn: sa.Connection, table: sa.Table | str, columns: Sequence[str] = ()) -> None:
        name = self._quote(conn, table if isinstance(table, str) else table.name)
        cols = f" ({', '.join(self._quote(conn, c) for c in columns)})" if columns else ""
        conn.exec_driver_sql(f"ANALYZE {name}{cols}")

    def has_statistics(self, conn: sa.Connection, table: str) -> bool:
        reltuples = sa.column("reltuples")
        oid = sa.column("oid")
        q = (
            sa.select(reltuples >= 0)
            .select_from(sa.table("pg_class"))
            .where(oid == sa.cast(table, postgresql.REGCLASS))
        )
        return bool(conn.execute(q).scalar())

    def set_local(self, conn: sa.Connection, **settings: str) -> None:
        for name, value in settings.items():
            conn.execute(sa.select(sa.func.set_config(name, value, True)))

    @contextlib.contextmanager
    def setting(self, conn: sa.Connection, name: str, value: str) -> Iterator[None]:
        was = conn.execute(sa.select(sa.func.current_setting(name))).scalar()
        self.set_local(conn, **{name: value})
        yield
        # back to the value it had (the server's or the session's), not to PostgreSQL's default
        self.set_local(conn, **{name: was})

    def lock(self, conn: sa.Connection, scope: str, key: str, *, shared: bool = False) -> None:
        take = sa.func.pg_advisory_xact_lock_shared if shared else sa.func.pg_advisory_xact_lock
        conn.execute(sa.select(take(sa.func.hashtext(scope), sa.func.hashtext(key))))

    def session_lock(self, conn: sa.Connection, scope: str, key: str, *, shared: bool = False) -> None:
        take = sa.func.pg_advisory_lock_shared if shared else sa.func.pg_advisory_lock
        conn.execute(sa.select(take(sa.func.hashtext(scope), sa.func.hashtext(key))))

    def session_unlock(self, conn: sa.Connection, scope: str, key: str, *, shared: bool = False) -> None:
        release = sa.func.pg_advisory_unlock_shared if shared else sa.func.pg_advisory_unlock
        conn.execute(sa.select(release(sa.func.hashtext(scope), sa.func.hashtext(key))))

    def release_temp_table(self, conn: sa.Connection, table: sa.Table) -> None:
        # dropped at commit; a statement now would fail in a transaction an error aborted
        return None

    def image_null(self) -> sa.ColumnElement:
        return sa.cast(sa.null(), postgresql.JSONB())

    def image_is_object(self, image: sa.ColumnElement) -> sa.ColumnElement[bool]:
        return sa.func.jsonb_typeof(image) == "object"

    def image_has(self, image: sa.ColumnElement, key: str) -> sa.ColumnElement[bool]:
        return image.op("?", is_comparison=True)(inline(key, sa.String()))

    def image_column(self, column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.to_jsonb(column)

    def image_of(self, columns: Sequence[sa.Column]) -> sa.ColumnElement:
        # jsonb_build_object converts its values itself: no to_jsonb call per column and row
        return self.json_object([(c.name, c) for c in columns])

    def image_like(self, image: sa.ColumnElement, columns: Sequence[sa.Column]) -> sa.ColumnElement:
        j = sa.func.jsonb_each(image).table_valued("key", "value").alias("img")
        value = sa.case(*((j.c.key == c.name, sa.func.to_jsonb(c)) for c in columns), else_=sa.null())
        names = [c.name for c in columns]
        return (
            sa.select(sa.func.jsonb_object_agg(j.c.key, value)).select_from(j).where(j.c.key.in_(names))
        ).scalar_subquery()

    def image_value(self, image: sa.ColumnElement, column: sa.Column) -> sa.ColumnElement:
        key = inline(column.name, sa.String())
        if isinstance(column.type, sa.JSON):
            return image.op("->")(key)
        text = image.op("->>")(key)
        if isinstance(column.type, sa.Uuid):
            return sa.cast(text, postgresql.UUID())
        if isinstance(column.type, sa.DateTime):
            return sa.cast(text, postgresql.TIMESTAMP(timezone=True))
        return text

    def image_tags(self, image: sa.ColumnElement) -> sa.TableValuedAlias:
        return (
            sa.func.jsonb_array_elements_text(image.op("->")(inline("tags", sa.String())))
            .table_valued("value")
            .render_derived(name="tg", with_types=False)
        )

    def texts(self, array: sa.BindParameter, name: str) -> sa.TableValuedAlias:
        return (
            sa.func.jsonb_array_elements_text(sa.cast(array, postgresql.JSONB))
            .table_valued("value")
            .render_derived(name=name, with_types=False)
        )

    def tags_image(self, tags: sa.Select, tag: sa.ColumnElement) -> sa.ColumnElement:
        agg = tags.with_only_columns(sa.func.jsonb_agg(postgresql.aggregate_order_by(tag, tag))).scalar_subquery()
        return self.json_object([("tags", sa.func.coalesce(agg, sa.cast(inline("[]"), postgresql.JSONB)))])


class SqliteDialect(StoreDialect):
    name = "sqlite"
    bulk_batch_size = 500

    def lock_job(self, conn: sa.Connection, job_id: uuid.UUID) -> None:
        # a write first: pysqlite then opens a real transaction (a bare SAVEPOINT would commit on
        # release) and takes the database write lock, sqlite's FOR UPDATE
        jobs = schema.bulk_jobs
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(id=jobs.c.id))

    def bind_uuid(self, value: uuid.UUID) -> Any:
        return value.hex

    def bind_timestamp(self, value: datetime) -> Any:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    def new_uuid(self) -> sa.ColumnElement:
        return sa.func.lower(sa.func.hex(sa.func.randomblob(16)))

    def uuid_from(self, prefix: str, number: sa.ColumnElement) -> sa.ColumnElement:
        # a uuid is stored as its 32 hex digits
        return inline(prefix.replace("-", "")) + sa.func.printf(inline("%08x"), number)

    def empty_json(self) -> sa.ColumnElement:
        return inline("{}")

    def _build_object(self, args: list[sa.ColumnElement]) -> sa.ColumnElement:
        return sa.func.json_object(*args, type_=sa.JSON)

    def json_object_without_nulls(self, pairs: Sequence[tuple[str, sa.ColumnElement]]) -> sa.ColumnElement:
        if not pairs:
            return self.empty_json()
        # json_patch drops the members whose value is null
        return sa.func.json_patch(inline("{}"), self.json_object(pairs), type_=sa.JSON)

    def json_merge(self, left: sa.ColumnElement, right: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.json_patch(left, right, type_=sa.JSON)

    def json_value(self, column: sa.ColumnElement) -> sa.ColumnElement:
        # json_object() would store a JSON column as a string: json() keeps it an object
        return sa.func.json(column, type_=sa.JSON)

    def json_parse(self, text: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.json(text, type_=sa.JSON)

    def same_value(self, column: sa.Column, stored: sa.ColumnElement, value: sa.ColumnElement) -> sa.ColumnElement:
        if isinstance(column.type, sa.JSON):
            # the minified text, whose key order json_patch keeps
            return sa.func.json(stored).is_not_distinct_from(sa.func.json(value))
        if isinstance(column.type, sa.DateTime):
            # timestamps whose text differs compare as instants
            return sa.or_(stored.is_not_distinct_from(value), sa.func.julianday(stored) == sa.func.julianday(value))
        return stored.is_not_distinct_from(value)

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def insert_then(self, conn, insert, returning, then, inserted, params, also=()) -> int:  # type: ignore[no-untyped-def]
        n = _counted(conn, insert, params)
        if n:
            conn.execute(then(inserted().subquery("inserted_rows")), params)
            for statement in also:
                conn.execute(statement, params)
        return n

    def staging_type(self, type_: sa.types.TypeEngine) -> sa.types.TypeEngine:
        if isinstance(type_, sa.Integer):
            return type_
        # no affinity: staged values stay as loaded (as the store's own columns hold them)
        return type_.with_variant(Untyped(), "sqlite")

    def bulk_load(self, conn: sa.Connection, table: sa.Table, data: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        arrays = []
        for name in data.column_names:
            col = data.column(name)
            if pa.types.is_timestamp(col.type):
                col = pc.strftime(col, "%Y-%m-%d %H:%M:%S")
            arrays.append(col.to_pylist())
        # the driver's executemany on tuples, not Core's: Core built a dict per row and bound
        # each value through its type, 4.8 s against 1.4-2.4 s raw for 20,000 rows of 14
        # columns (the import's default batch; measured on the shared 2-core machine)
        names = ", ".join(self._quote(conn, c) for c in data.column_names)
        marks = ", ".join("?" * len(arrays))
        insert = f"INSERT INTO {self._quote(conn, table.name)} ({names}) VALUES ({marks})"
        conn.exec_driver_sql(insert, list(zip(*arrays, strict=True)))

    def image_is_object(self, image: sa.ColumnElement) -> sa.ColumnElement[bool]:
        return sa.func.json_type(image) == "object"

    def image_has(self, image: sa.ColumnElement, key: str) -> sa.ColumnElement[bool]:
        return sa.func.json_type(image, f"$.{key}").is_not(None)

    def image_column(self, column: sa.ColumnElement) -> sa.ColumnElement:
        # SQLite's json functions would store a JSON column as a string: json() keeps it a value
        return sa.func.json(column) if isinstance(column.type, sa.JSON) else column

    def image_like(self, image: sa.ColumnElement, columns: Sequence[sa.Column]) -> sa.ColumnElement:
        j = sa.func.json_each(image).table_valued("key", "value").alias("img")
        value = sa.case(*((j.c.key == c.name, self.image_column(c)) for c in columns), else_=sa.null())
        names = [c.name for c in columns]
        return (
            sa.select(sa.func.json_group_object(j.c.key, value)).select_from(j).where(j.c.key.in_(names))
        ).scalar_subquery()

    def image_value(self, image: sa.ColumnElement, column: sa.Column) -> sa.ColumnElement:
        raw = sa.func.json_extract(image, f"$.{column.name}")
        if isinstance(column.type, sa.Uuid):
            # images from Python hold hyphenated uuids; SQLite stores 32 hex digits
            return sa.func.replace(raw, "-", "")
        if isinstance(column.type, sa.DateTime):
            # an ISO 8601 instant from Python -> SQLite's stored form (UTC, microseconds)
            return sa.case(
                (sa.func.instr(raw, "T") > 0, sa.func.strftime("%Y-%m-%d %H:%M:%f", raw).concat("000")), else_=raw
            )
        if isinstance(column.type, sa.JSON):
            return sa.func.json(raw)
        return raw

    def image_tags(self, image: sa.ColumnElement) -> sa.TableValuedAlias:
        return sa.func.json_each(image, "$.tags").table_valued("value").alias("tg")

    def texts(self, array: sa.BindParameter, name: str) -> sa.TableValuedAlias:
        return sa.func.json_each(array).table_valued("value").alias(name)

    def tags_image(self, tags: sa.Select, tag: sa.ColumnElement) -> sa.ColumnElement:
        # SELECT's order hands the tags over sorted (the tags' primary key serves it)
        agg = tags.with_only_columns(sa.func.json_group_array(tag)).scalar_subquery()
        return self.json_object([("tags", sa.func.json(agg))])

    @contextlib.contextmanager
    def serialized_batches(self, conn: sa.Connection) -> Iterator[None]:
        # A batch reads the records it matches against, then writes; begun deferred, a batch
        # that read before a concurrent one committed cannot write any more ("database is
        # locked", which no busy timeout cures). Immediate, it waits (busy_timeout) for the
        # write lock first and then reads what the other batch committed.
        dbapi = conn.connection.dbapi_connection
        before = dbapi.isolation_level
        dbapi.isolation_level = "IMMEDIATE"
        try:
            yield
        finally:
            dbapi.isolation_level = before


def _counted(conn: sa.Connection, statement: sa.Executable, params: dict[str, Any]) -> int:
    """Execute STATEMENT; the rows it wrote (SQLAlchemy keeps an INSERT's rowcount only when asked)."""
    return conn.execute(statement.execution_options(preserve_rowcount=True), params).rowcount


DIALECTS: dict[str, StoreDialect] = {d.name: d for d in (PostgresDialect(), SqliteDialect())}


def dialect_named(name: str) -> StoreDialect:
    """The StoreDialect of the database NAME (`postgresql`, `sqlite`)."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"the record store runs on PostgreSQL or SQLite, not {name}") from None


def dialect_of(bind: sa.Connection | sa.Engine) -> StoreDialect:
    """The StoreDialect of BIND's database."""
    return dialect_named(bind.dialect.name)
