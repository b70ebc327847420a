"""Export files written batch by batch in constant memory: CSV, Parquet and Excel (.xlsx).

Each writer takes the column headers and value kinds (`connectors.store.export.fields`) and
rows as tuples, batch by batch. Spreadsheet safety:
- CSV: a cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return,
  `|`; plain numbers excepted, see `csvsafe`) starts with `'` unless `escape=False` (files for
  machines); `bom=True` writes UTF-8 with a byte-order mark, which Excel needs to read UTF-8.
- xlsx: text is always written as a text cell, never as a formula, a number or a link; a sheet
  holds at most 1,048,576 rows (header included), further rows go to the next sheet.

`atomic_path` gives the temporary name a file is written under and renames it when complete:
a failure or a cancelled run (any BaseException) removes it, so no partial file is ever left
under the final name, nor under any other. The temporary name records the writing process: the file
of a process killed mid-write is removed by `remove_stale_temporaries`, which the next export into
the folder calls.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import processes
from connectors.files.conventions import EXCEL_MAX_ROWS, TAGS_DELIMITER, TAGS_SEPARATOR
from connectors.files.csvsafe import TRIGGERS, is_formula

FORMATS = ("csv", "xlsx", "parquet")
EXCEL_MAX_STRING = 32_767
# a row group is written when the rows held for it reach this much Arrow data (about 16k rows of
# eight columns): what a Parquet export holds at once, whatever its row count
ROW_GROUP_BYTES = 2 << 20


def _iso(value: datetime) -> str:
    # the store keeps UTC; SQLite hands it back naive
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def _tags_text(value: str) -> str:
    return value.replace(TAGS_DELIMITER, TAGS_SEPARATOR)


def tags_list(value: str | None) -> list[str]:
    """Tags as the store hands them over -> a list (untagged: empty)."""
    return value.split(TAGS_DELIMITER) if value else []


_TEXT = {
    "datetime": _iso,
    "tags": _tags_text,
    "uuid": str,
    "json": _json,
    "bool": lambda v: "true" if v else "false",
}


def text_of(kind: str, value: Any) -> Any:
    """The value as a CSV cell shows it (numbers and text as they are, None as None)."""
    if value is None:
        return None
    conv = _TEXT.get(kind)
    return conv(value) if conv else value


class _Converting:
    def __init__(self, kinds: Sequence[str], table: dict[str, Any]) -> None:
        self._convert = [(i, table[k]) for i, k in enumerate(kinds) if k in table]

    def convert(self, row: tuple) -> list:
        out = list(row)
        for i, conv in self._convert:
            v = out[i]
            if v is not None:
                out[i] = conv(v)
        return out


class CsvWriter(_Converting):
    """CSV with a header row; formula cells neutralised unless ESCAPE is False; BOM on request."""

    suffix = ".csv"

    def __init__(
        self, path: Path, headers: Sequence[str], kinds: Sequence[str], *, escape: bool = True, bom: bool = False
    ):
        super().__init__(kinds, _TEXT)
        self._file = open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="")  # noqa: SIM115
        # "\n" like PostgreSQL's COPY, which writes the same files on the fast path
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._escape = escape
        self._writer.writerow([self._safe(h) for h in headers] if escape else list(headers))

    @staticmethod
    def _safe(value: Any) -> Any:
        return "'" + value if is_formula(value) else value

    def write(self, rows: Sequence[tuple]) -> None:
        convert, safe, writerow = self.convert, self._safe, self._writer.writerow
        for row in rows:
            cells = convert(row)
            # the common case (no cell starts with a trigger) costs one pass
            if self._escape and any(type(v) is str and v[:1] in TRIGGERS for v in cells):
                cells = [safe(v) for v in cells]
            writerow(cells)

    def write_csv_bytes(self, chunk: bytes) -> None:
        """Rows already written as CSV (UTF-8, "\n"-terminated, cells neutralised as `escape` says)."""
        self._file.flush()
        self._file.buffer.write(chunk)

    def close(self) -> None:
        self._file.close()


_ARROW = {
    "text": pa.string(),
    "uuid": pa.string(),
    "json": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "tags": pa.list_(pa.string()),
}


@functools.cache
def arrow_pool() -> pa.MemoryPool:
    """The memory pool of a Parquet export's parsing and row groups: Arrow's default (jemalloc, chosen in
    `connectors/__init__.py`), or jemalloc itself where pyarrow was imported first and chose mimalloc,
    which keeps what it freed (Parquet's own column buffers then stay in mimalloc: about 20 MB more)."""
    pool = pa.default_memory_pool()
    if pool.backend_name == "mimalloc":
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:
            pool = pa.system_memory_pool()
    return pool


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class ParquetWriter:
    """Parquet with typed columns (timestamps in UTC, ids and JSON as text, tags as a list of texts), snappy,
    row groups of ~2 MB."""

    suffix = ".parquet"

    def __init__(
        self, path: Path, headers: Sequence[str], kinds: Sequence[str], *, dictionary: Sequence[str] = (), **_: Any
    ) -> None:
        self._kinds = list(kinds)
        self._schema = pa.schema([pa.field(h, _ARROW[k]) for h, k in zip(headers, kinds, strict=True)])
        # dictionary-encode only the columns of few values (DICTIONARY): on ids and emails it costs half the write
        self._writer = pq.ParquetWriter(
            str(path),
            self._schema,
            compression="snappy",
            use_dictionary=list(dictionary) or False,
            memory_pool=arrow_pool(),
        )
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0

    def write(self, rows: Sequence[tuple]) -> None:
        if not rows:
            return
        arrays = []
        for i, (kind, field) in enumerate(zip(self._kinds, self._schema, strict=True)):
            values = [r[i] for r in rows]
            if kind == "uuid":
                values = [None if v is None else str(v) for v in values]
            elif kind == "json":
                values = [None if v is None else _json(v) for v in values]
            elif kind == "datetime":
                values = [None if v is None else _utc(v) for v in values]
            elif kind == "tags":
                values = [tags_list(v) for v in values]
            arrays.append(pa.array(values, type=field.type, memory_pool=arrow_pool()))
        self.write_arrow(pa.record_batch(arrays, schema=self._schema))

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def write_arrow(self, batch: pa.RecordBatch) -> None:
        # row groups of about ROW_GROUP_BYTES, whatever size the batches come in
        self._pending.append(batch)
        self._pending_bytes += batch.nbytes
        if self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, schema=self._schema))
            self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        try:
            self._flush()
        finally:
            self._writer.close()


class XlsxWriter(_Converting):
    """An .xlsx workbook in constant memory: text cells are text, never formulas; sheets split past Excel's limit."""

    suffix = ".xlsx"

    def __init__(
        self,
        path: Path,
        headers: Sequence[str],
        kinds: Sequence[str],
        *,
        sheet_name: str = "export",
        max_rows: int = EXCEL_MAX_ROWS,
        **_: Any,
    ) -> None:
        import xlsxwriter

        super().__init__(kinds, {"uuid": str, "json": _json, "tags": _tags_text})
        self._book = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
                "remove_timezone": True,
            },
        )
        self._headers = list(headers)
        self._kinds = list(kinds)
        self._bold = self._book.add_format({"bold": True})
        self._date = self._book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._name = sheet_name[:25]
        self._max_rows = max_rows
        self._sheets = 0
        self.truncated = 0
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._sheets += 1
        name = self._name if self._sheets == 1 else f"{self._name} ({self._sheets})"
        self._sheet = self._book.add_worksheet(name)
        for col, h in enumerate(self._headers):
            self._sheet.write_string(0, col, h, self._bold)
        self._row = 1

    def write(self, rows: Sequence[tuple]) -> None:
        kinds = self._kinds
        for row in rows:
            if self._row >= self._max_rows:
                self._new_sheet()
            sheet, r = self._sheet, self._row
            for col, value in enumerate(self.convert(row)):
                if value is None:
                    continue
                kind = kinds[col]
                if kind == "datetime":
                    sheet.write_datetime(r, col, _utc(value).astimezone(UTC).replace(tzinfo=None), self._date)
                elif kind in ("int", "float"):
                    sheet.write_number(r, col, value)
                elif kind == "bool":
                    sheet.write_boolean(r, col, value)
                else:
                    if len(value) > EXCEL_MAX_STRING:
                        value = value[:EXCEL_MAX_STRING]
                        self.truncated += 1
                    sheet.write_string(r, col, value)
            self._row += 1

    @property
    def sheets(self) -> int:
        return self._sheets

    def close(self) -> None:
        from xlsxwriter.exceptions import FileCreateError

        failed: tuple | None = None
        try:
            self._book.close()
        except FileCreateError as exc:
            # the underlying OSError (a full disk), raised outside the handler so the half-written zip is let go
            cause = exc.args[0] if exc.args and isinstance(exc.args[0], OSError) else OSError(str(exc))
            failed = (cause.errno, cause.strerror or str(cause))
            del cause
        if failed is not None:
            # xlsxwriter leaves its zip file open in a reference cycle: close it now, not at some later collection
            gc.collect()
            raise OSError(*failed)


WRITERS = {"csv": CsvWriter, "parquet": ParquetWriter, "xlsx": XlsxWriter}


# .<final name>.<host>-<pid>-<start time>-<random>.tmp: the writer is named, so a dead one's file is found
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-(?P<started>[0-9]*)-[0-9a-f]{8}\.tmp$")
# before writers were named: .<final name>.<random>.tmp
_UNNAMED_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
# a temporary file of a writer on another host (or unnamed) untouched this long is stale
STALE_TEMPORARY_SECONDS = 24 * 3600


def temporary_path(final: Path) -> Path:
    """The temporary name FINAL is written under, naming the writing process."""
    pid = os.getpid()
    owner = f"{processes.host_token()}-{pid}-{processes.start_time(pid) or ''}-{uuid.uuid4().hex[:8]}"
    return final.with_name(f".{final.name}.{owner}.tmp")


def remove_stale_temporaries(folder: Path, *, max_age: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Delete the temporary files in FOLDER left by writers that died (kill -9, a lost host); the deleted.

    A file of a process on this host goes once that process is gone; one of another host, or of
    unknown writer, once untouched for MAX_AGE seconds. Live writers' files and other files stay.
    """
    gone = []
    here = processes.host_token()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        named = _TEMPORARY.match(entry.name)
        if named is None and not _UNNAMED_TEMPORARY.match(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if named is not None and named["host"] == here:
                stale = processes.gone_here(int(named["pid"]), named["started"])
            else:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > max_age
            if stale:
                os.unlink(entry.path)
                gone.append(Path(entry.path))
        except OSError:
            # vanished meanwhile (its writer finished) or not ours to delete
            continue
    return gone


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path next to FINAL, renamed to FINAL when the block completes, removed otherwise.

    Only a killed process (kill -9, a lost host) leaves its temporary file: `remove_stale_temporaries`
    finds it by the writer its name records.

    Raises:
        OSError: the folder cannot be written (read-only, full disk), with the folder in the message.
    """
    tmp = temporary_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
