"""PostgreSQL's fast path: the export's SELECT turned to text by the database and read with `COPY ... TO STDOUT`.

A CSV export streams COPY's bytes straight into the file: the database writes each value as the
row path's CSV writer would (timestamps ISO 8601 in UTC, ids and JSON as text, booleans
true/false) and neutralises formula cells itself (`left(v, 1)` among the triggers and not a
plain number, the rule of `connectors.files.csvsafe`), so Python never touches a row. A Parquet
export parses the same stream with Arrow's CSV reader into typed columns, block by block.

Values stay bound parameters (psycopg binds them into the COPY statement on the client); only
the statement's own SQL, compiled by SQLAlchemy, goes into it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pcsv
import sqlalchemy as sa

from connectors.files.conventions import TAGS_DELIMITER, TAGS_SEPARATOR
from connectors.files.csvsafe import TRIGGERS
from connectors.files.writers import arrow_pool
from connectors.store.export import fields as F
from connectors.store.export.query import Query

CHUNK_BYTES = 1 << 20
_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
_MICROS = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def supported(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _neutralised(v: sa.ColumnElement) -> sa.ColumnElement:
    formula = sa.and_(sa.func.left(v, 1).in_(sorted(TRIGGERS)), sa.not_(v.regexp_match(_NUMBER)))
    return sa.case((formula, sa.literal("'") + v), else_=v)


def _text(kind: str, v: sa.ColumnElement, escape: bool, arrow: bool) -> sa.ColumnElement:
    if kind == F.DATETIME and arrow:
        # microseconds since the epoch: date_part is float8 (a quarter of to_char's cost), exact once rounded
        return sa.cast(sa.func.date_part("epoch", v) * 1_000_000, sa.BigInteger)
    if kind == F.DATETIME:
        utc = sa.func.timezone("UTC", v)
        return sa.case(
            (sa.func.date_trunc("second", v) == v, sa.func.to_char(utc, _SECONDS)),
            else_=sa.func.to_char(utc, _MICROS),
        )
    if kind in (F.UUID, F.JSON):
        return sa.cast(v, sa.Text)
    if kind == F.BOOL:
        return sa.case((v.is_(True), "true"), (v.is_(False), "false"))
    if kind == F.TAGS and not arrow:
        text = sa.func.replace(v, TAGS_DELIMITER, TAGS_SEPARATOR)
        return _neutralised(text) if escape else text
    if kind == F.TEXT:
        return _neutralised(v) if escape else v
    return v


def text_statement(query: Query, *, escape: bool, arrow: bool = False) -> sa.Select:
    """The query's columns as the text a CSV cell holds (formula cells neutralised when ESCAPE); for ARROW
    (`arrow_batches`), timestamps as microseconds since the epoch and tags as the store joins them."""
    inner = query.statement.subquery("export")
    return sa.select(*[_text(k, inner.c[f"c{i}"], escape, arrow).label(f"c{i}") for i, k in enumerate(query.kinds)])


class CopyStream:
    """`COPY (STATEMENT) TO STDOUT WITH (FORMAT csv)`: iterate for its byte chunks; `rows` once exhausted."""

    def __init__(self, engine: sa.Engine, statement: sa.Select, *, head_rows: int = 0) -> None:
        compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
        self._sql = f"COPY ({compiled.string}) TO STDOUT WITH (FORMAT csv)"
        self._params = compiled.params
        self._engine = engine
        self._head_rows = head_rows
        self.rows: int | None = None
        # the first HEAD_ROWS rows' cells, as the database wrote them (a preview without a second query)
        self.head: list[list[str]] = []

    def __iter__(self) -> Iterator[bytes]:
        raw = self._engine.raw_connection()
        done = False
        try:
            with raw.cursor() as cur:
                with cur.copy(self._sql, self._params) as copy:
                    # libpq hands COPY over a row at a time: pass it on in blocks of about CHUNK_BYTES
                    block = bytearray()
                    for row in copy:
                        if len(self.head) < self._head_rows:
                            # one COPY message is one row, line breaks in values included
                            self.head.extend(csv.reader(io.StringIO(bytes(row).decode("utf-8"), newline="")))
                        block += row
                        if len(block) >= CHUNK_BYTES:
                            yield bytes(block)
                            block.clear()
                    if block:
                        yield bytes(block)
                self.rows = cur.rowcount
            raw.commit()
            done = True
        finally:
            if done:
                raw.close()
            else:
                # a COPY stopped half-way (failure, cancelled run) leaves the connection mid-protocol: drop it
                raw.invalidate()


def arrow_batches(chunks: Iterator[bytes], headers: list[str], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """COPY's CSV parsed by Arrow into SCHEMA's types, chunk by chunk (each ends at a row's end), in this
    thread: no reader thread reading ahead, no copy of the bytes."""
    names = [f"c{i}" for i in range(len(headers))]
    stamps = {i for i, f in enumerate(schema) if pa.types.is_timestamp(f.type)}
    lists = {i for i, f in enumerate(schema) if pa.types.is_list(f.type)}
    read_types = {
        n: (pa.int64() if i in stamps else pa.string() if i in lists else f.type)
        for i, (n, f) in enumerate(zip(names, schema, strict=True))
    }
    if lists:
        import pyarrow.compute as pc  # 45 ms to import: only for an export with tags

        split = pc.SplitPatternOptions(TAGS_DELIMITER)
    pool = arrow_pool()
    read_options = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=CHUNK_BYTES << 2)
    parse_options = pcsv.ParseOptions(newlines_in_values=True)
    convert_options = pcsv.ConvertOptions(
        column_types=read_types,
        # COPY writes NULL unquoted and an empty text as "": keep them apart
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    for chunk in chunks:
        table = pcsv.read_csv(
            pa.BufferReader(chunk),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
            memory_pool=pool,
        )
        for batch in table.to_batches():
            columns = list(batch.columns)
            for i in stamps:
                # the same 64-bit integers, seen as timestamps: no copy, and no compute function (whose first
                # call with a Python scalar imports pandas, seconds and 100 MB)
                columns[i] = columns[i].view(schema.field(i).type)
            for i in lists:
                # tags joined by TAGS_DELIMITER -> a list; untagged (NULL) -> an empty list: the split
                # leaves a NULL's slot empty, and offsets without a validity bitmap make it []
                parts = pc.split_pattern(columns[i], options=split, memory_pool=pool)
                columns[i] = pa.ListArray.from_arrays(parts.offsets, parts.values, pool=pool)
            yield pa.RecordBatch.from_arrays(columns, schema=schema)
