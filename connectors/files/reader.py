"""Streaming readers for CSV, Parquet and .xlsx: every column comes out as strings, memory stays flat.

What a file is comes from its bytes (`formats.identify`): gzip, bzip2, xz and a zip holding one
file are opened transparently, a workbook named `.csv` is read as a workbook, and a PDF or an
image is refused by name.

CSV goes through the csv module on a decoding text stream, so rows keep exact numbers: `row` is
the record's ordinal among data rows (1 = first row after the header), `line` the physical line
it starts on (quoted newlines make the two differ; for a workbook, the sheet's row number).
Rows the reader cannot take never reach the batch; they come back as `RowIssue`s with both
numbers, the column and the raw text: a ragged row, bytes the encoding cannot decode, a cell
over `max_cell_bytes`.

Fast path (ARROW_CSV, off by default, see there): a plain UTF-8 file whose header is its first
line is parsed by Arrow's C++ CSV reader (about 10x faster). Its rows then have no gaps (no blank
lines, no ragged rows: Arrow rejects both), so `row` is the ordinal and `line` follows from the
line breaks inside values. At the first thing Arrow refuses (a blank line, a ragged row, invalid
UTF-8, bad quoting, a NUL byte) the reader hands over to the csv module after the last row
already yielded, which reports the problem exactly as before.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import math
import re
import sys
import unicodedata
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from connectors.files.formats import Source, UnreadableFile, identify, utf16_or_32

SAMPLE_BYTES = 1 << 16
SCAN_CHUNK = 1 << 20
ARROW_BLOCK = 1 << 20
# Off for now: with it the reader's peak memory grew with the file (about 200 MB at 100k rows,
# 225 MB at 500k; the csv-module path stays at 185 MB), cause not found yet. The import engine
# reads the next batch in a worker thread while the database writes, which hides most of the
# csv module's cost. Its output is identical (rows, lines, values); turn on to measure.
ARROW_CSV = False
DELIMITERS = (",", ";", "\t", "|")
MAX_CELL_BYTES = 128 * 1024
# spellings of "no value" read as empty in the columns mapped to record fields
NULL_VALUES = ("", "NULL", "null", "Null", "N/A", "n/a", "#N/A", "NA", "-", "None", "none")
HEADER_SAMPLE = 50  # records looked at to find the header
TITLE_ROWS_MAX = 10  # leading title/comment records the header detection may skip

# the csv module's own limit stays far above max_cell_bytes: an oversized cell rejects its row, not the file
csv.field_size_limit(min(sys.maxsize, 1 << 28))
# undecodable bytes, kept by the "surrogateescape" error handler as U+DC80..U+DCFF
_UNDECODED = re.compile("[\udc80-\udcff]+")
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_HIGH_BYTES = bytes(range(128, 256))
MULTIBYTE = ("utf_16", "utf_32", "shift_jis", "cp932", "euc", "gb", "big5", "cp949", "iso2022", "johab", "hz")


class FileReadError(Exception):
    """The file cannot be read as a table (empty, not a table, malformed quoting, bad parquet)."""


@dataclass
class RowIssue:
    row: int
    line: int | None
    reason: str
    raw: str
    column: str | None = None


@dataclass
class RawBatch:
    """A slice of the file: string columns named by the header, plus each row's number."""

    table: pa.Table
    rows: pa.Array  # int64 ordinal of each row in `table`
    lines: pa.Array | None  # int64 start line of each row (csv: physical line, xlsx: sheet row)
    issues: list[RowIssue] = field(default_factory=list)
    last_row: int = 0  # ordinal of the last record consumed, issues included
    counts: dict[str, int] = field(default_factory=dict)  # e.g. rows_decoded_with_fallback

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def _shown(data: bytes, limit: int = 60) -> str:
    """Bytes as a reader sees them in an error: printable ASCII kept, the rest as \\xNN."""
    text = data.decode("ascii", "backslashreplace")
    return text if len(text) <= limit else text[:limit] + "..."


def _western(text: str) -> bool:
    """True when most non-ASCII letters of `text` are Latin (the script cp1252 serves)."""
    letters = [c for c in text if ord(c) > 127 and c.isalpha()]
    if not letters:
        return True
    latin = sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN"))
    return latin * 2 >= len(letters)


def _legacy_encoding(sample: bytes) -> str:
    """A single- or multibyte legacy encoding for bytes that are not UTF-8.

    The detector (charset-normalizer) first; its multibyte answers and single-byte encodings of
    another script (Cyrillic, Greek, ...) are taken. Western text is cp1252, the usual legacy
    spreadsheet encoding (a superset of latin-1's printable range); latin-1 when even cp1252
    cannot decode it.
    """
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    # a few non-ASCII bytes say little: only with enough of them is another script's encoding believed
    enough = len(sample) - len(sample.translate(None, _HIGH_BYTES)) >= 16
    if best is not None and best.encoding.startswith(MULTIBYTE):
        # UTF-16/32 text has NULs
        if utf16_or_32(sample) if best.encoding.startswith(("utf_16", "utf_32")) else enough:
            return best.encoding
        best = None
    if not enough:
        best = None
    try:
        western = sample.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if best is not None and best.encoding not in ("ascii", "utf_8") and (western is None or not _western(str(best))):
        return best.encoding
    return "cp1252" if western is not None else "latin-1"


def detect_encoding(sample: bytes, stream: Iterable[bytes] | None = None) -> str:
    """BOM, else UTF-8 when the whole file is (or mostly is) UTF-8, else a legacy encoding.

    `stream`: the file's bytes in chunks, scanned whole (cheaply: ASCII chunks are skipped), so a
    non-UTF-8 byte in the last row is found; without it only `sample` is looked at. A file with
    valid UTF-8 characters and a few undecodable bytes is UTF-8 (the rows holding those bytes are
    rejected or decoded with the fallback); a file whose every non-ASCII byte is invalid UTF-8 is
    in a legacy encoding, picked from its non-ASCII lines by `_legacy_encoding`.
    """
    if sample.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample and utf16_or_32(sample):
        return _legacy_encoding(sample)
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    invalid = multibyte = False
    high = bytearray()
    for chunk in stream if stream is not None else [sample]:
        if chunk.isascii() and not decoder.getstate()[0]:
            continue
        multibyte = multibyte or bool(_UTF8_SEQUENCE.search(chunk))
        if not invalid:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                invalid = True
        pos = 0
        while len(high) < SAMPLE_BYTES and (m := _HIGH_BYTE.search(chunk, pos)) is not None:
            # the whole line around a non-ASCII byte, for the detector
            start = chunk.rfind(b"\n", 0, m.start()) + 1
            end = chunk.find(b"\n", m.start())
            pos = len(chunk) if end < 0 else end + 1
            high += chunk[start:pos]
        if invalid and multibyte:
            break
    else:
        if stream is not None and not invalid:  # the whole file was seen: a sequence cut off at its end is invalid too
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                invalid = True
    if not invalid or multibyte:
        return "utf-8-sig"
    return _legacy_encoding(bytes(high))


def sniff_delimiter(text: str) -> str:
    """The candidate delimiter most frequent outside quotes on the header line, consistent below."""
    if not text.strip():
        return ","
    best, best_score = ",", 0
    for d in DELIMITERS:
        # records as the csv module reads them: a line break or a form feed inside quotes is a value's;
        # the sample may end inside a quoted value, so the records before that are what counts
        rows: list[list[str]] = []
        with contextlib.suppress(csv.Error):
            rows.extend(islice(csv.reader(io.StringIO(text, newline=""), delimiter=d), 20))
        # the widest line decides: title lines above the header are narrower
        widths = [len(r) for r in rows if r]
        if not widths or max(widths) < 2:
            continue
        width = Counter(w for w in widths if w > 1).most_common(1)[0][0]
        consistent = sum(1 for w in widths if w == width)
        score = width * 10 + consistent
        if score > best_score:
            best, best_score = d, score
    return best


def unique_names(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Blank names become column_<n>, repeated ones <name>_2, _3...; also {new name: name in the file}."""
    out: list[str] = []
    renamed: dict[str, str] = {}
    seen: set[str] = set()
    for i, original in enumerate(names):
        name = original.strip() or f"column_{i + 1}"
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out.append(name)
        if name != original.strip() or not original.strip():
            renamed[name] = original
    return out, renamed


def _filled(rec: list[str]) -> int:
    return sum(1 for v in rec if v.strip())


def find_header(records: list[list[str]], comment_auto: bool = True) -> int:
    """Index of the header among the first records: title and comment rows above it are skipped.

    A leading record is a title when it fills fewer than half the cells of the rows below it
    (at least two), or, starting with '#', when its width differs from theirs ('#one: line one').
    """
    if len(records) < 2:
        return 0
    widths = Counter(len(r) for r in records[1:])
    width = widths.most_common(1)[0][0]
    if width < 2:
        return 0
    need = max(2, math.ceil(width / 2))
    for i, rec in enumerate(records[:TITLE_ROWS_MAX]):
        comment = comment_auto and rec and rec[0].startswith("#") and rec[0].strip() != "#" and len(rec) != width
        if _filled(rec) >= need and not comment:
            return i
    return 0


def _cell(v: object) -> str:
    """A workbook cell as the text a CSV export of it would hold."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, datetime):
        if v.time() == time(0) and v.tzinfo is None:
            return v.date().isoformat()
        return v.isoformat()
    if isinstance(v, (date, time)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return str(v)
    return str(v)


class TabularFile:
    """An opened CSV, Parquet or .xlsx file: header known, rows streamed by `batches`.

    `detected` says how it was read (format, compression, encoding, delimiter, header line, title
    rows skipped, columns renamed or dropped) for the import's history and metadata.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        file_format: str | None = None,
        encoding: str | None = None,
        delimiter: str | None = None,
        decode_fallback: str | None = None,
        skip_rows: int | None = None,
        comment: str | None = None,
        sheet: str | None = None,
        null_values: tuple[str, ...] = NULL_VALUES,
        max_cell_bytes: int = MAX_CELL_BYTES,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.name
        if not self.path.is_file():
            raise FileReadError(f"{self.name}: no such file")
        try:
            self.source: Source = identify(self.path, self.name)
        except UnreadableFile as exc:
            raise FileReadError(str(exc)) from exc
        if file_format is not None and file_format != self.source.format:
            what = {"csv": "CSV (text)", "parquet": "Parquet", "xlsx": "an .xlsx workbook"}[self.source.format]
            raise FileReadError(
                f"{self.name}: the format was given as {file_format}, but the file is {what}; "
                "leave the format out to read it as what it is"
            )
        self.format = self.source.format
        self.encoding = encoding
        self.delimiter = delimiter
        self.decode_fallback = decode_fallback
        self.skip_rows = skip_rows
        self.comment = comment or None
        self.sheet = sheet
        self.null_values = tuple(null_values)
        self.max_cell_bytes = max_cell_bytes
        self.detected: dict[str, object] = dict(self.source.describe())
        if decode_fallback:
            try:
                codecs.lookup(decode_fallback)
            except LookupError as exc:
                raise FileReadError(f"{self.name}: unknown encoding {decode_fallback!r} for undecodable bytes") from exc
        if self.format == "parquet":
            self._open_parquet()
        elif self.format == "xlsx":
            self._open_xlsx()
        else:
            self._open_csv()

    # -- opening

    def _open_parquet(self) -> None:
        import pyarrow.parquet as pq

        try:
            self._pq = pq.ParquetFile(self.source.path)
        except (pa.ArrowException, OSError) as exc:
            raise FileReadError(f"{self.name}: not a readable parquet file: {exc}") from exc
        self.columns = list(self._pq.schema_arrow.names)
        self.encoding = None
        self.delimiter = None
        self._header_line = 0

    def _open_xlsx(self) -> None:
        import openpyxl

        try:
            # a file object, not the path: openpyxl refuses a path whose extension is not .xlsx
            self._xlsx_file = open(self.source.path, "rb")  # noqa: SIM115 - closed with this object
            weakref.finalize(self, self._xlsx_file.close)
            self._wb = openpyxl.load_workbook(self._xlsx_file, read_only=True, data_only=True)
        except Exception as exc:
            raise FileReadError(f"{self.name}: not a readable .xlsx workbook: {exc}") from exc
        names = self._wb.sheetnames
        if self.sheet is not None and self.sheet not in names:
            raise FileReadError(
                f"{self.name}: no sheet named {self.sheet!r} (sheets: {', '.join(repr(n) for n in names)})"
            )
        self._ws = self._wb[self.sheet] if self.sheet is not None else self._wb.worksheets[0]
        self.detected["sheet"] = self._ws.title
        self.encoding = None
        self.delimiter = None
        self._find_header()

    def _open_csv(self) -> None:
        try:
            with self.source.open() as f:
                sample = f.read(SAMPLE_BYTES)
        except (OSError, EOFError) as exc:
            raise FileReadError(f"{self.name}: cannot read the {self.source.compression or 'file'}: {exc}") from exc
        if not sample.strip(b"\r\n\t \x00\xef\xbb\xbf\xff\xfe"):
            raise FileReadError(f"{self.name}: the file is empty")
        if self.encoding is None:
            self.encoding = detect_encoding(sample, self._chunks())
            self.detected["encoding_detected"] = True
        elif self.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
            self.encoding = "utf-8-sig"
        try:
            codecs.lookup(self.encoding)
        except LookupError as exc:
            raise FileReadError(f"{self.name}: unknown encoding {self.encoding!r}") from exc
        self.detected["encoding"] = self.encoding
        text = sample.decode(self.encoding, errors="ignore")
        if self.delimiter is None:
            self.delimiter = sniff_delimiter(self._uncommented(text))
        self.detected["delimiter"] = self.delimiter
        self._find_header()

    def _uncommented(self, text: str) -> str:
        if not self.comment:
            return text
        return "\n".join(line for line in text.splitlines() if not line.startswith(self.comment))

    def _chunks(self) -> Iterator[bytes]:
        with self.source.open() as f:
            while chunk := f.read(SCAN_CHUNK):
                yield chunk

    def _find_header(self) -> None:
        """The header: first record after `skip_rows` lines, or found past title and comment rows."""
        records = self._records()
        try:
            if self.skip_rows is not None:
                header = next((r for r in records if r[1] > self.skip_rows), None)
                index = None
                self._header_index = 0
            else:
                first = list(islice(records, HEADER_SAMPLE))
                index = find_header([r[0] for r in first]) if first else 0
                header = first[index] if first else None
        finally:
            records.close()
        if header is None:
            raise FileReadError(
                f"{self.name}: the file is empty" + (f" after {self.skip_rows} skipped lines" if self.skip_rows else "")
            )
        cells, line = header[0], header[1]
        if header[2] is not None:
            # a header name with bytes the encoding cannot decode: read them as the fallback (or cp1252) says
            fb = self.decode_fallback or "cp1252"
            cells = [
                _UNDECODED.sub(lambda m: m.group().encode("utf-8", "surrogateescape").decode(fb, "replace"), c)
                for c in cells
            ]
            self.detected["header_decoded_as"] = fb
        if index:
            self.detected["title_rows"] = [self._rejoin(r[0])[:120] for r in first[:index]]
        self._header_line = line
        self.detected["header_line"] = line
        dropped = []
        while len(cells) > 1 and not cells[-1].strip():
            cells = cells[:-1]
            dropped.append(len(cells) + 1)
        if dropped:
            self.detected["dropped_columns"] = sorted(dropped)
        self.columns, renamed = unique_names(cells)
        if renamed:
            self.detected["renamed_columns"] = renamed

    def _rejoin(self, rec: list[str]) -> str:
        text = (self.delimiter or ",").join(rec).rstrip(self.delimiter or ",")
        return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    # -- records

    def _records(self) -> Iterator[tuple[list[str], int, int | None]]:
        """(cells, first line, line of the first undecodable byte or None) of each non-blank record."""
        if self.format == "xlsx":
            return self._sheet_records()
        return self._csv_records()

    def _sheet_records(self) -> Iterator[tuple[list[str], int, int | None]]:
        ws = self._ws
        ws.reset_dimensions()  # some writers store a wrong used range; read what the sheet holds
        for n, values in enumerate(ws.iter_rows(values_only=True), start=1):
            rec = [_cell(v) for v in values]
            while rec and rec[-1] == "":
                rec.pop()
            if self.comment and rec and rec[0].startswith(self.comment):
                continue
            if rec:
                yield rec, n, None

    def _csv_records(self) -> Iterator[tuple[list[str], int, int | None]]:
        state = {"line": 0, "start": True, "first": 0, "bad": None}
        comment = self.comment

        def lines(f: Iterable[str]) -> Iterator[str]:
            for text in f:
                state["line"] += 1
                if state["start"]:
                    if comment and text.startswith(comment):
                        continue
                    state["first"], state["start"] = state["line"], False
                if state["bad"] is None and not text.isascii() and _UNDECODED.search(text):
                    state["bad"] = state["line"]
                yield text

        with self._text() as f:
            reader = csv.reader(lines(f), delimiter=self.delimiter)
            while True:
                state["start"], state["bad"] = True, None
                try:
                    rec = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise FileReadError(f"{self.name}: malformed CSV at line {state['line']}: {exc}") from exc
                except UnicodeDecodeError as exc:
                    raise FileReadError(
                        f"{self.name}: cannot decode as {self.encoding} after line {state['line']}: {exc.reason}"
                    ) from exc
                if rec:
                    yield rec, state["first"], state["bad"]

    def _text(self) -> io.TextIOWrapper:
        # undecodable bytes become U+DC80..U+DCFF: the row holding them is rejected or decoded with the fallback
        return io.TextIOWrapper(self.source.open(), encoding=self.encoding, newline="", errors="surrogateescape")

    def _undecodable(
        self, rec: list[str], row_no: int, line: int, bad_line: int
    ) -> tuple[list[str] | None, RowIssue | None]:
        """The record with undecodable bytes decoded by the fallback, or the issue that rejects it."""
        if self.decode_fallback:
            fb = self.decode_fallback

            def fix(m: re.Match[str]) -> str:
                return m.group().encode("utf-8", "surrogateescape").decode(fb, "replace")

            return [_UNDECODED.sub(fix, c) if not c.isascii() else c for c in rec], None
        i, cell = next((i, c) for i, c in enumerate(rec) if _UNDECODED.search(c))
        column = self.columns[i] if i < len(self.columns) else f"column {i + 1}"
        raw_cell = cell.encode("utf-8", "surrogateescape")
        bad = b"".join(m.group().encode("utf-8", "surrogateescape") for m in _UNDECODED.finditer(cell))
        encoding = self.encoding.removesuffix("-sig")
        reason = (
            f"line {bad_line}: cannot decode byte(s) {_shown(bad, 24)} as {encoding} in '{_shown(raw_cell)}'; "
            "set decode_fallback (--decode-errors cp1252) to read such bytes in another encoding"
        )
        raw = self.delimiter.join(c.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for c in rec)
        return None, RowIssue(row_no, line, reason, raw, column)

    # -- batches

    def batches(self, batch_size: int, *, start_after: int = 0, null_columns: Iterable[str] = ()) -> Iterator[RawBatch]:
        """Yield batches of up to `batch_size` rows, skipping records numbered <= start_after.

        `null_columns`: columns whose cells spelled like `null_values` ('N/A', 'NULL', '-') are
        read as empty. Rows with a cell over `max_cell_bytes` are rejected (`RowIssue`), on every path.
        """
        nulls = [c for c in null_columns if c in self.columns] if self.null_values else []
        if self.format == "parquet":
            raw = self._parquet_batches(batch_size, start_after)
        elif self.format == "csv" and ARROW_CSV and self._arrow_ok():
            raw = self._arrow_then_python(batch_size, start_after)
        else:
            raw = self._python_batches(batch_size, start_after)
        for batch in raw:
            yield self._finish(batch, nulls)

    def _finish(self, batch: RawBatch, nulls: list[str]) -> RawBatch:
        """The same rules on every path: oversized cells reject their row, null spellings become empty."""
        table = batch.table
        if table.num_rows:
            over = None
            for name in table.column_names:
                col = table.column(name)
                big = pc.greater(pc.binary_length(col), self.max_cell_bytes)
                if pc.any(big).as_py():
                    over = big if over is None else pc.or_(over, big)
            if over is not None:
                over = pc.fill_null(over, False)
                idx = pc.indices_nonzero(over).to_pylist()
                rows = batch.rows.take(idx).to_pylist()
                lines = batch.lines.take(idx).to_pylist() if batch.lines is not None else [None] * len(idx)
                for i, row_no, line in zip(idx, rows, lines, strict=False):
                    values = {n: table.column(n)[i].as_py() or "" for n in table.column_names}
                    name, size = max(((n, len(v.encode("utf-8"))) for n, v in values.items()), key=lambda x: x[1])
                    raw = (self.delimiter or ",").join(v if len(v) <= 200 else v[:200] + "..." for v in values.values())
                    batch.issues.append(
                        RowIssue(
                            row_no,
                            line,
                            f"the value in column {name!r} is {size:,} bytes, over the limit of "
                            f"{self.max_cell_bytes:,} bytes per cell (max_cell_bytes)",
                            raw,
                            name,
                        )
                    )
                keep = pc.invert(over)
                table = table.filter(keep)
                batch.rows = batch.rows.filter(keep)
                batch.lines = batch.lines.filter(keep) if batch.lines is not None else None
            if nulls:
                spellings = pa.array(self.null_values, pa.string())
                for name in nulls:
                    i = table.column_names.index(name)
                    col = table.column(i)
                    hit = pc.is_in(pc.utf8_trim_whitespace(col), value_set=spellings)
                    table = table.set_column(i, name, pc.if_else(hit, pa.scalar("", pa.string()), col))
            batch.table = table
        return batch

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
        except (pa.ArrowException, OSError) as exc:
            # a damaged page header is a plain OSError ("Couldn't deserialize thrift")
            msg = " ".join(str(exc).split())
            raise FileReadError(f"{self.name}: cannot read parquet data after row {pos}: {msg}") from exc

    def _arrow_ok(self) -> bool:
        return (
            self.encoding == "utf-8-sig"
            and self._header_line == 1
            and len(self.columns) > 1
            and not self.comment
            and self.source.compression is None
            and "dropped_columns" not in self.detected
        )

    def _arrow_then_python(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
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
                self.source.path,
                read_options=pcsv.ReadOptions(
                    column_names=self.columns, skip_rows=1, block_size=ARROW_BLOCK, use_threads=False
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter, newlines_in_values=True, ignore_empty_lines=False
                ),
                convert_options=pcsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.columns}, strings_can_be_null=False
                ),
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
                # line breaks inside quoted values: \r\n, \r or \n each count as one line (like csv)
                c = pc.subtract(
                    pc.add(pc.count_substring(col, "\n"), pc.count_substring(col, "\r")),
                    pc.count_substring(col, "\r\n"),
                )
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
        arrays = [
            table.column(i).combine_chunks() if table.column(i).num_chunks != 1 else table.column(i).chunk(0)
            for i in range(table.num_columns)
        ]
        table = pa.Table.from_arrays(arrays, names=self.columns)
        return RawBatch(table, pa.array(range(first_row, first_row + n), pa.int64()), lines, [], first_row + n - 1)

    def _python_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        if self.format == "xlsx" or self.comment:
            yield from self._record_batches(batch_size, start_after)
        else:
            yield from self._csv_batches(batch_size, start_after)

    def _csv_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        """The csv module straight on the text stream (no per-line Python): the common case, kept fast.

        Undecodable bytes are found when a batch's columns are built (Arrow refuses the lone
        surrogates they decode to), so clean batches pay nothing for them.
        """
        width = len(self.columns)
        header_line = self._header_line
        with self._text() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            row_no = 0
            prev_line = 0
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
                    raise FileReadError(f"{self.name}: malformed CSV at line {prev_line + 1}: {exc}") from exc
                except UnicodeDecodeError as exc:
                    raise FileReadError(
                        f"{self.name}: cannot decode as {self.encoding} after line {prev_line}: {exc.reason}"
                    ) from exc
                start_line, prev_line = prev_line + 1, reader.line_num
                if not rec or start_line <= header_line:
                    continue
                row_no += 1
                if row_no <= start_after:
                    continue
                if len(rec) != width:
                    if len(rec) > width and not any(v.strip() for v in rec[width:]):
                        rec = rec[:width]
                    else:
                        issues.append(self._ragged(rec, row_no, start_line, width))
                        if len(good) + len(issues) >= batch_size:
                            yield self._text_batch(good, nums, lines, issues, row_no)
                            good, nums, lines, issues = [], [], [], []
                        continue
                good.append(rec)
                nums.append(row_no)
                lines.append(start_line)
                if len(good) + len(issues) >= batch_size:
                    yield self._text_batch(good, nums, lines, issues, row_no)
                    good, nums, lines, issues = [], [], [], []
            if good or issues:
                yield self._text_batch(good, nums, lines, issues, row_no)

    def _text_batch(
        self, good: list[list[str]], nums: list[int], lines: list[int], issues: list[RowIssue], last: int
    ) -> RawBatch:
        try:
            return self._batch(good, nums, lines, issues, last, {})
        except UnicodeEncodeError:
            pass
        # some rows hold undecodable bytes (lone surrogates): reject them, or decode them with the fallback
        kept: tuple[list, list, list] = ([], [], [])
        counts: dict[str, int] = {}
        for rec, row_no, line in zip(good, nums, lines, strict=False):
            joined = "\x00".join(rec)
            m = _UNDECODED.search(joined) if not joined.isascii() else None
            if m is not None:
                before = joined[: m.start()]
                bad_line = line + before.count("\n") + before.count("\r") - before.count("\r\n")
                rec, issue = self._undecodable(rec, row_no, line, bad_line)
                if issue is not None:
                    issues.append(issue)
                    continue
                counts["rows_decoded_with_fallback"] = counts.get("rows_decoded_with_fallback", 0) + 1
            kept[0].append(rec)
            kept[1].append(row_no)
            kept[2].append(line)
        issues.sort(key=lambda i: i.row)
        return self._batch(*kept, issues, last, counts)

    def _ragged(self, rec: list[str], row_no: int, line: int, width: int) -> RowIssue:
        raw = (self.delimiter or ",").join(rec)
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if not raw.isascii() else raw
        why = f"expected {width} columns, found {len(rec)}"
        if len(rec) > width and "dropped_columns" in self.detected:
            why += " (a value under the header's trailing empty column)"
        return RowIssue(row_no, line, why, raw)

    def _record_batches(self, batch_size: int, start_after: int) -> Iterator[RawBatch]:
        """Batches from `_records()`: workbooks, and CSV with comment lines (filtered line by line)."""
        width = len(self.columns)
        header_line = self._header_line
        row_no = 0
        good: list[list[str]] = []
        nums: list[int] = []
        lines: list[int] = []
        issues: list[RowIssue] = []
        counts: dict[str, int] = {}
        records = self._records()
        try:
            for rec, start_line, bad_line in records:
                if start_line <= header_line:
                    continue
                row_no += 1
                if row_no <= start_after:
                    continue
                if bad_line is not None:
                    fixed, issue = self._undecodable(rec, row_no, start_line, bad_line)
                    if issue is not None:
                        issues.append(issue)
                        if len(good) + len(issues) >= batch_size:
                            yield self._batch(good, nums, lines, issues, row_no, counts)
                            good, nums, lines, issues, counts = [], [], [], [], {}
                        continue
                    rec = fixed
                    counts["rows_decoded_with_fallback"] = counts.get("rows_decoded_with_fallback", 0) + 1
                if len(rec) != width:
                    if len(rec) > width and not any(v.strip() for v in rec[width:]):
                        rec = rec[:width]
                    elif len(rec) < width and self.format == "xlsx":
                        rec = rec + [""] * (width - len(rec))  # a sheet row ends at its last filled cell
                    else:
                        issues.append(self._ragged(rec, row_no, start_line, width))
                        if len(good) + len(issues) >= batch_size:
                            yield self._batch(good, nums, lines, issues, row_no, counts)
                            good, nums, lines, issues, counts = [], [], [], [], {}
                        continue
                good.append(rec)
                nums.append(row_no)
                lines.append(start_line)
                if len(good) + len(issues) >= batch_size:
                    yield self._batch(good, nums, lines, issues, row_no, counts)
                    good, nums, lines, issues, counts = [], [], [], [], {}
        finally:
            records.close()
        if good or issues:
            yield self._batch(good, nums, lines, issues, row_no, counts)

    def _batch(
        self,
        good: list[list[str]],
        nums: list[int],
        lines: list[int],
        issues: list[RowIssue],
        last: int,
        counts: dict[str, int],
    ) -> RawBatch:
        if good:
            cols = list(zip(*good, strict=False))
            arrays = [pa.array(c, pa.string()) for c in cols]
        else:
            arrays = [pa.array([], pa.string()) for _ in self.columns]
        table = pa.Table.from_arrays(arrays, names=self.columns)
        return RawBatch(table, pa.array(nums, pa.int64()), pa.array(lines, pa.int64()), issues, last, counts)


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


def open_tabular(path: str | Path, **options: object) -> TabularFile:
    """Open a CSV, Parquet or .xlsx file (also compressed or zipped), detecting what is not given.

    Options: file_format, encoding, delimiter, decode_fallback, skip_rows, comment, sheet,
    null_values, max_cell_bytes, name (see `TabularFile`).

    Raises:
        FileReadError: the file is empty, is not a table (named: a PDF, an image, an old .xls),
            or cannot be decoded or parsed; the message names the file.
    """
    return TabularFile(path, **options)  # type: ignore[arg-type]
