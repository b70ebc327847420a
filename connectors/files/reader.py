"""Streaming readers for CSV and Parquet: every column comes out as strings, memory stays flat.

CSV goes through the csv module on a decoding text stream, so rows keep exact numbers: `row` is
the record's ordinal among data rows (1 = first row after the header), `line` the physical line
it starts on (quoted newlines make the two differ). Ragged rows never reach the batch; they come
back as `RowIssue`s with both numbers and the raw text.

Fast path (ARROW_CSV, off by default, see there): a UTF-8 file whose header is its first line is parsed by Arrow's C++ CSV reader
(about 10x faster). Its rows then have no gaps (no blank lines, no ragged rows: Arrow rejects
both, see below), so `row` is the ordinal and `line` follows from the line breaks inside values.
At the first thing Arrow refuses (a blank line, a ragged row, invalid UTF-8, bad quoting, a NUL
byte) the reader hands over to the csv module after the last row already yielded, which reports
the problem exactly as before.
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

SAMPLE_BYTES = 1 << 16
ARROW_BLOCK = 1 << 20
# Off for now: with it the reader's peak memory grew with the file (about 200 MB at 100k rows,
# 225 MB at 500k; the csv-module path stays at 185 MB), cause not found yet. The import engine
# reads the next batch in a worker thread while the database writes, which hides most of the
# csv module's cost. Its output is identical (rows, lines, values); turn on to measure.
ARROW_CSV = False
DELIMITERS = (",", ";", "\t", "|")

csv.field_size_limit(min(sys.maxsize, 1 << 28))


class FileReadError(Exception):
    """The file cannot be read as a table (empty, undecodable, malformed quoting, bad parquet)."""


@dataclass
class RowIssue:
    row: int
    line: int | None
    reason: str
    raw: str


@dataclass
class RawBatch:
    """A slice of the file: string columns named by the header, plus each row's number."""

    table: pa.Table
    rows: pa.Array  # int64 ordinal of each row in `table`
    lines: pa.Array | None  # int64 start line of each row (csv only)
    issues: list[RowIssue] = field(default_factory=list)
    last_row: int = 0  # ordinal of the last record consumed, issues included

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def detect_encoding(sample: bytes) -> str:
    """BOM first, then strict UTF-8, then charset-normalizer (preferring cp1252 when plausible)."""
    if sample.startswith(codecs.BOM_UTF32_LE) or sample.startswith(codecs.BOM_UTF32_BE):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith(codecs.BOM_UTF16_LE) or sample.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    for cut in range(4):
        # a sample may end inside a multibyte character
        try:
            sample[: len(sample) - cut].decode("utf-8")
            if b"\x00" not in sample:
                return "utf-8-sig"
            break
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    multibyte = ("utf_16", "utf_32", "shift_jis", "cp932", "euc", "gb", "big5", "cp949", "iso2022", "johab", "hz")
    if best is not None and best.encoding.startswith(multibyte):
        return best.encoding
    # small samples make single-byte guesses unreliable: western cp1252 (superset of latin-1's
    # printable range) is by far the most common legacy spreadsheet encoding
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        pass
    if best is None:
        raise FileReadError("cannot detect the text encoding; set it explicitly")
    return best.encoding


def sniff_delimiter(text: str) -> str:
    """The candidate delimiter most frequent outside quotes on the header line, consistent below."""
    lines = text.splitlines()[:20]
    if not lines:
        return ","
    best, best_score = ",", 0
    for d in DELIMITERS:
        try:
            rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=d))
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows[1:-1] if len(r) == width)
        score = width * 10 + consistent
        if score > best_score:
            best, best_score = d, score
    return best


def _unique_names(names: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        name = name.strip() or f"column_{i + 1}"
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append(name)
    return out


class TabularFile:
    """An opened CSV or Parquet file: header known, rows streamed by `batches`."""

    def __init__(self, path: str | Path, *, file_format: str | None = None, encoding: str | None = None, delimiter: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileReadError(f"{self.path}: no such file")
        suffix = self.path.suffix.lower()
        self.format = file_format or ("parquet" if suffix in (".parquet", ".pq") else "csv")
        self.encoding = encoding
        self.delimiter = delimiter
        if self.format == "parquet":
            self._open_parquet()
        elif self.format == "csv":
            self._open_csv()
        else:
            raise FileReadError(f"{self.path.name}: unknown file format {self.format!r}")

    def _open_parquet(self) -> None:
        import pyarrow.parquet as pq

        try:
            self._pq = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise FileReadError(f"{self.path.name}: not a readable parquet file: {exc}") from exc
        self.columns = list(self._pq.schema_arrow.names)
        self.encoding = None
        self.delimiter = None

    def _open_csv(self) -> None:
        with open(self.path, "rb") as f:
            sample = f.read(SAMPLE_BYTES)
        if not sample.strip(b"\r\n\t \x00\xef\xbb\xbf\xff\xfe"):
            raise FileReadError(f"{self.path.name}: the file is empty")
        if self.encoding is None:
            self.encoding = detect_encoding(sample)
        elif self.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
            self.encoding = "utf-8-sig"
        try:
            codecs.lookup(self.encoding)
        except LookupError as exc:
            raise FileReadError(f"{self.path.name}: unknown encoding {self.encoding!r}") from exc
        try:
            text = sample.decode(self.encoding, errors="ignore")
        except UnicodeDecodeError as exc:  # pragma: no cover - errors=ignore
            raise FileReadError(f"{self.path.name}: cannot decode as {self.encoding}") from exc
        if self.delimiter is None:
            self.delimiter = sniff_delimiter(text)
        with self._text() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            try:
                header = next((r for r in reader if r), None)
            except (csv.Error, UnicodeDecodeError) as exc:
                raise FileReadError(f"{self.path.name}: cannot read the header: {exc}") from exc
            self._header_lines = reader.line_num
        if header is None:
            raise FileReadError(f"{self.path.name}: the file is empty")
        self.columns = _unique_names(header)

    def _text(self) -> io.TextIOWrapper:
        return open(self.path, encoding=self.encoding, newline="", errors="strict")

    def batches(self, batch_size: int, *, start_after: int = 0) -> Iterator[RawBatch]:
        """Yield batches of up to `batch_size` rows, skipping records numbered <= start_after."""
        if self.format == "parquet":
            yield from self._parquet_batches(batch_size, start_after)
        else:
            yield from self._csv_batches(batch_size, start_after)

    def _parquet_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        pos = 0
        try:
            for rb in self._pq.iter_batches(batch_size=batch_size):
                first = pos + 1
                pos += rb.num_rows
                if pos <= start_after:
                    continue
                if first <= start_after:
                    rb = rb.slice(start_after - first + 1)
                    first = start_after + 1
                arrays = [_as_string(rb.column(i)) for i in range(rb.num_columns)]
                table = pa.Table.from_arrays(arrays, names=self.columns)
                rows = pa.array(range(first, pos + 1), pa.int64())
                yield RawBatch(table, rows, None, [], pos)
        except pa.ArrowException as exc:
            raise FileReadError(f"{self.path.name}: cannot read parquet data after row {pos}: {exc}") from exc

    def _csv_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        if ARROW_CSV and self.encoding == "utf-8-sig" and self._header_lines == 1 and len(self.columns) > 1:
            done = [start_after]
            try:
                for batch in self._arrow_batches(batch_size, start_after):
                    done[0] = batch.last_row
                    yield batch
                return
            except _HandOver:
                start_after = done[0]
        yield from self._python_batches(batch_size, start_after)

    def _arrow_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        """Arrow's CSV reader; raises _HandOver (nothing of the failing block yielded) when it refuses the data."""
        import pyarrow.csv as pcsv

        try:
            reader = pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(column_names=self.columns, skip_rows=1, block_size=ARROW_BLOCK, use_threads=False),
                parse_options=pcsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True, ignore_empty_lines=False),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in self.columns}, strings_can_be_null=False),
            )
        except (pa.ArrowException, OSError) as exc:
            raise _HandOver from exc
        pos = 0  # records read
        line = 2  # physical line the next record starts on
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        first_row = start_after + 1
        lines: list[pa.Array] = []
        while True:
            try:
                rb = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as exc:
                raise _HandOver from exc
            n = rb.num_rows
            if n == 0:
                continue
            breaks = None
            for col in rb.columns:
                if not pc.any(pc.match_substring_regex(col, "[\\x00\r\n]")).as_py():
                    continue
                if pc.any(pc.match_substring(col, "\x00")).as_py():
                    raise _HandOver
                if True:
                    # line breaks inside quoted values: \r\n, \r or \n each count as one line (like csv)
                    c = pc.subtract(pc.add(pc.count_substring(col, "\n"), pc.count_substring(col, "\r")), pc.count_substring(col, "\r\n"))
                    breaks = c if breaks is None else pc.add(breaks, c)
            starts = pa.array(range(line, line + n), pa.int64())
            extra = 0
            if breaks is not None:
                breaks = pc.cast(breaks, pa.int64())
                before = pc.subtract(pc.cumulative_sum(breaks), breaks)
                starts = pc.add(starts, before)
                extra = pc.sum(breaks).as_py() or 0
            line += n + extra
            lo, pos = pos, pos + n
            if pos <= start_after:
                continue
            if lo < start_after:
                rb, starts = rb.slice(start_after - lo), starts.slice(start_after - lo)
            pending.append(rb)
            lines.append(starts)
            pending_rows += rb.num_rows
            while pending_rows >= batch_size:
                table = pa.Table.from_batches(pending).combine_chunks()
                all_lines = pa.concat_arrays(lines)
                head, tail = table.slice(0, batch_size), table.slice(batch_size)
                yield self._arrow_batch(head, first_row, all_lines.slice(0, batch_size))
                first_row += batch_size
                pending = tail.to_batches()
                lines = [all_lines.slice(batch_size)]
                pending_rows = tail.num_rows
        if pending_rows:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield self._arrow_batch(table, first_row, pa.concat_arrays(lines))

    def _arrow_batch(self, table: pa.Table, first_row: int, lines: pa.Array) -> RawBatch:
        n = table.num_rows
        arrays = [table.column(i).combine_chunks() if table.column(i).num_chunks != 1 else table.column(i).chunk(0) for i in range(table.num_columns)]
        table = pa.Table.from_arrays(arrays, names=self.columns)
        return RawBatch(table, pa.array(range(first_row, first_row + n), pa.int64()), lines, [], first_row + n - 1)

    def _python_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        width = len(self.columns)
        name = self.path.name
        with self._text() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            row_no = 0
            prev_line = 0
            header_seen = False
            good: list[list[str]] = []
            nums: list[int] = []
            lines: list[int] = []
            issues: list[RowIssue] = []
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise FileReadError(f"{name}: malformed CSV at line {prev_line + 1}: {exc}") from exc
                except UnicodeDecodeError as exc:
                    raise FileReadError(f"{name}: cannot decode as {self.encoding} near line {prev_line + 1}: {exc.reason}") from exc
                start_line, prev_line = prev_line + 1, reader.line_num
                if not rec:
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                row_no += 1
                if row_no <= start_after:
                    continue
                if len(rec) != width:
                    if len(rec) > width and not any(v.strip() for v in rec[width:]):
                        rec = rec[:width]
                    else:
                        raw = self.delimiter.join(rec)
                        issues.append(RowIssue(row_no, start_line, f"expected {width} columns, found {len(rec)}", raw))
                        if len(good) + len(issues) >= batch_size:
                            yield self._batch(good, nums, lines, issues, row_no)
                            good, nums, lines, issues = [], [], [], []
                        continue
                good.append(rec)
                nums.append(row_no)
                lines.append(start_line)
                if len(good) + len(issues) >= batch_size:
                    yield self._batch(good, nums, lines, issues, row_no)
                    good, nums, lines, issues = [], [], [], []
            if good or issues:
                yield self._batch(good, nums, lines, issues, row_no)

    def _batch(self, good: list[list[str]], nums: list[int], lines: list[int], issues: list[RowIssue], last: int) -> RawBatch:
        if good:
            cols = list(zip(*good))
            arrays = [pa.array(c, pa.string()) for c in cols]
        else:
            arrays = [pa.array([], pa.string()) for _ in self.columns]
        table = pa.Table.from_arrays(arrays, names=self.columns)
        return RawBatch(table, pa.array(nums, pa.int64()), pa.array(lines, pa.int64()), issues, last)


class _HandOver(Exception):
    """Arrow's reader refused the data: continue with the csv module."""


def _as_string(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type):
        return arr
    if pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type):
        return pc.cast(arr, pa.string())
    if pa.types.is_timestamp(arr.type):
        return pc.strftime(arr, "%Y-%m-%dT%H:%M:%S%z" if arr.type.tz else "%Y-%m-%dT%H:%M:%S")
    try:
        return pc.cast(arr, pa.string())
    except pa.ArrowNotImplementedError:
        import json

        return pa.array([None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()], pa.string())


def open_tabular(path: str | Path, *, file_format: str | None = None, encoding: str | None = None, delimiter: str | None = None) -> TabularFile:
    """Open a CSV or Parquet file, detecting encoding and delimiter unless given."""
    return TabularFile(path, file_format=file_format, encoding=encoding, delimiter=delimiter)
