"""The StoreDialect of each database (connectors/store/dialect.py): same results on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from connectors.store.dialect import StoreDialect, dialect_of, inline
from connectors.store.schema import TS

STAGED = [
    {"row_no": 1, "k": "a", "v": "it's", "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
    {"row_no": 2, "k": "b", "v": 'two "quoted"\nlines, with a comma', "at": None},
    {"row_no": 3, "k": "a", "v": None, "at": datetime(2026, 1, 3, tzinfo=UTC)},
]


@pytest.fixture
def conn(store) -> Iterator[sa.Connection]:
    with store.engine.connect() as c, c.begin():
        yield c


def _tables(d: StoreDialect) -> tuple[sa.Table, sa.Table]:
    """A staging-like table and a target table, temporary (on the test's connection only)."""
    m, name = sa.MetaData(), f"probe_{uuid.uuid4().hex[:8]}"
    staged = sa.Table(
        f"{name}_staged",
        m,
        sa.Column("row_no", sa.BigInteger()),
        sa.Column("k", d.staging_type(sa.Text())),
        sa.Column("v", d.staging_type(sa.Text())),
        sa.Column("at", d.staging_type(TS)),
        sa.Column("done", d.staging_type(sa.Text())),
        prefixes=["TEMPORARY"],
    )
    target = sa.Table(
        f"{name}_target",
        m,
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("k", sa.Text()),
        sa.Column("row_no", sa.BigInteger()),
        prefixes=["TEMPORARY"],
    )
    return staged, target


def _loaded(conn: sa.Connection) -> tuple[StoreDialect, sa.Table, sa.Table]:
    d = dialect_of(conn)
    staged, target = _tables(d)
    d.create_temp_table(conn, staged)
    d.create_temp_table(conn, target)
    columns = {c: [r[c] for r in STAGED] for c in ("row_no", "k", "v")}
    at = pa.array([r["at"] for r in STAGED], pa.timestamp("us", "UTC"))
    d.bulk_load(conn, staged, pa.table({**columns, "at": at}))
    return d, staged, target


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def test_a_bulk_load_keeps_texts_nulls_and_timestamps(conn) -> None:
    d, staged, _ = _loaded(conn)
    got = conn.execute(sa.select(staged.c.row_no, staged.c.v, staged.c.at).order_by(staged.c.row_no)).all()
    assert [(n, v) for n, v, _ in got] == [(r["row_no"], r["v"]) for r in STAGED]
    # the timestamps compare as the instants they were loaded as
    later = sa.select(sa.func.count()).where(d.same_value(staged.c.at, staged.c.at, sa.bindparam("t", type_=TS)))
    assert conn.execute(later, {"t": STAGED[0]["at"]}).scalar() == 1
    d.empty_temp_table(conn, staged)
    assert conn.execute(sa.select(sa.func.count()).select_from(staged)).scalar() == 0
    d.drop_temp_table(conn, staged)
    d.drop_temp_table(conn, staged)  # dropping what is gone is no error


def test_json_objects_merges_and_nulls(conn) -> None:
    d = dialect_of(conn)
    # more pairs than one jsonb_build_object call takes, and a key with a quote
    pairs = [(f"k{i}", inline(i)) for i in range(95)] + [("it's", inline("x"))]
    assert _json(conn.execute(sa.select(d.json_object(pairs))).scalar()) == {
        **{f"k{i}": i for i in range(95)},
        "it's": "x",
    }
    merged = d.json_merge(d.json_parse(inline('{"a": 1, "b": {"c": 2}}')), d.json_object([("a", inline(3))]))
    assert _json(conn.execute(sa.select(merged)).scalar()) == {"a": 3, "b": {"c": 2}}
    nested = d.json_object([("inner", d.json_value(d.json_parse(inline('{"x": [1]}'))))])
    assert _json(conn.execute(sa.select(nested)).scalar()) == {"inner": {"x": [1]}}
    without = d.json_object_without_nulls([("a", inline("1")), ("b", sa.null())])
    assert _json(conn.execute(sa.select(without)).scalar()) == {"a": "1"}
    assert _json(conn.execute(sa.select(d.json_object([]))).scalar()) == {}


def test_same_as_stored_is_null_safe_and_compares_json_and_instants(conn) -> None:
    d = dialect_of(conn)
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("name", sa.Text()),
        sa.Column("data", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")),
        sa.Column("at", TS),
    )
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = sa.select(
        sa.null().label("name"),
        d.json_parse(inline('{"b": 1, "a": 2}')).label("data"),
        sa.bindparam("at", at, type_=TS).label("at"),
    ).subquery("stored")

    def same(**values: sa.ColumnElement) -> bool:
        return bool(conn.execute(sa.select(d.same_as_stored(table, stored, values)).select_from(stored)).scalar())

    assert same(name=sa.null(), data=d.json_parse(inline('{"b": 1, "a": 2}')), at=sa.bindparam("v", at, type_=TS))
    assert not same(name=inline("x"))
    assert not same(data=d.json_parse(inline('{"b": 1, "a": 3}')))
    assert not same(at=sa.bindparam("v", at.replace(second=6), type_=TS))
    if d.name == "sqlite":
        # the same instant in the text a file's timestamp is staged as
        assert same(at=inline("2026-01-02 03:04:05"))


def test_ids_derived_from_a_prefix_and_a_row_number(conn) -> None:
    d = dialect_of(conn)
    prefix = "0190abcd-1234-7abc-8abc-1234"
    got = conn.execute(sa.select(sa.type_coerce(d.uuid_from(prefix, inline(255)), sa.Uuid()))).scalar()
    assert got == uuid.UUID("0190abcd-1234-7abc-8abc-1234000000ff")
    first, second = conn.execute(sa.select(d.new_uuid(), d.new_uuid())).one()
    assert first != second
    value = uuid.uuid4()
    stored = sa.select(sa.literal(value, sa.Uuid()).label("u")).subquery()
    text = conn.execute(sa.select(d.uuid_text(stored.c.u))).scalar()
    assert text == (str(value) if d.name == "postgresql" else value.hex)


def test_insert_then_acts_on_the_inserted_rows_and_also_sees_them_as_before(conn) -> None:
    d, staged, target = _loaded(conn)
    prefix = "0190abcd-1234-7abc-8abc-1234"
    need = staged.c.done.is_(None)
    rows = d.first_per(
        sa.select(d.uuid_from(prefix, staged.c.row_no), staged.c.k, staged.c.row_no).where(need),
        staged.c.k,
        staged.c.row_no,
    )
    insert = target.insert().from_select(["id", "k", "row_no"], rows)
    log = sa.Table(f"{target.name}_log", target.metadata, sa.Column("k", sa.Text()), prefixes=["TEMPORARY"])
    d.create_temp_table(conn, log)
    # the rows that needed a target row are marked, in the same unit as the insert
    marked = staged.update().values(done=inline("yes")).where(need)
    n = d.insert_then(
        conn,
        insert,
        (target.c.id, target.c.k),
        lambda inserted: log.insert().from_select(["k"], sa.select(inserted.c.k)),
        lambda: sa.select(target.c.id, target.c.k).where(
            target.c.id.in_(sa.select(d.uuid_from(prefix, staged.c.row_no)).where(need))
        ),
        {},
        also=[marked],
    )
    # one row per key: the first (lowest row number)
    assert n == 2
    assert sorted(conn.execute(sa.select(target.c.k, target.c.row_no)).all()) == [("a", 1), ("b", 2)]
    assert sorted(conn.execute(sa.select(log.c.k)).scalars()) == ["a", "b"]
    assert conn.execute(sa.select(sa.func.count()).select_from(staged).where(staged.c.done == "yes")).scalar() == 3


def test_texts_are_the_rows_of_one_bound_json_array(conn) -> None:
    d = dialect_of(conn)
    t = d.texts(sa.bindparam("values", type_=sa.Text()), "vals")
    query = sa.select(sa.type_coerce(t.c.value, sa.Text()))
    values = ["A", 'q"x', "it's", "", "é"]
    assert sorted(conn.execute(query, {"values": json.dumps(values)}).scalars()) == sorted(values)
    # the same statement (compiled once) with other values
    assert conn.execute(query, {"values": json.dumps(["b"])}).scalars().all() == ["b"]


def test_raw_binds_are_what_the_schema_types_store(conn) -> None:
    d = dialect_of(conn)
    table = sa.Table(
        f"raw_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("u", sa.Uuid()),
        sa.Column("t", TS),
        prefixes=["TEMPORARY"],
    )
    d.create_temp_table(conn, table)
    value, at = uuid.uuid4(), datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    raw = sa.text(f"INSERT INTO {table.name} (u, t) VALUES (:u, :t)")
    conn.execute(raw, {"u": d.bind_uuid(value), "t": d.bind_timestamp(at)})
    u, t = conn.execute(sa.select(table.c.u, table.c.t)).one()
    assert (u, t.replace(tzinfo=None)) == (value, at.replace(tzinfo=None))


def test_an_upsert_keeps_or_replaces_the_row_of_a_key(conn) -> None:
    d = dialect_of(conn)
    table = sa.Table(
        f"keyed_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("k", sa.Text(), primary_key=True),
        sa.Column("v", sa.Text()),
        prefixes=["TEMPORARY"],
    )
    d.create_temp_table(conn, table)
    conn.execute(d.insert(table).values(k="a", v="first"))
    conn.execute(d.insert(table).values(k="a", v="second").on_conflict_do_nothing(index_elements=["k"]))
    assert conn.execute(sa.select(table.c.v)).scalar() == "first"
    newer = d.insert(table).values(k="a", v="third")
    conn.execute(newer.on_conflict_do_update(index_elements=["k"], set_={"v": newer.excluded.v}))
    assert conn.execute(sa.select(table.c.v)).scalars().all() == ["third"]


@pytest.mark.postgres
def test_postgres_locks_wait_and_settings_come_back(pg_url) -> None:
    engine = sa.create_engine(pg_url)
    d = dialect_of(engine)
    key = str(uuid.uuid4())
    try:
        with engine.connect() as holder, holder.begin():
            d.lock(holder, "bulkops.test", key)
            with engine.connect() as other, other.begin():
                d.set_local(other, lock_timeout="100ms")
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    d.lock(other, "bulkops.test", key)
            with engine.connect() as other, other.begin():
                d.lock(other, "bulkops.test", str(uuid.uuid4()))  # another key: no wait
        store = RecordStore(pg_url)
        account = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
        store.dispose()
        a = schema.accounts
        with engine.connect() as holder, holder.begin():
            holder.execute(d.for_update(sa.select(a.c.id).where(a.c.id == account))).one()
            with engine.connect() as other, other.begin():
                d.set_local(other, lock_timeout="100ms")
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    other.execute(a.update().where(a.c.id == account).values(name=a.c.name))
        with engine.connect() as c, c.begin():
            d.set_local(c, enable_nestloop="off")
            with d.setting(c, "enable_nestloop", "on"):
                assert c.execute(sa.text("SHOW enable_nestloop")).scalar() == "on"
            assert c.execute(sa.text("SHOW enable_nestloop")).scalar() == "off"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_analyze_gives_a_table_statistics(pg_url) -> None:
    engine = sa.create_engine(pg_url)
    d = dialect_of(engine)
    name = f"never_analyzed_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as c:
            c.execute(sa.text(f"CREATE TABLE {name} (x int)"))
            assert not d.has_statistics(c, name)
            d.analyze(c, name)
            assert d.has_statistics(c, name)
            c.execute(sa.text(f"DROP TABLE {name}"))
    finally:
        engine.dispose()


def test_only_the_store_databases_have_a_dialect() -> None:
    with pytest.raises(ValueError, match="PostgreSQL or SQLite"):
        dialect_of(sa.create_mock_engine("mysql://", executor=None))
