"""One export: the account's filtered records of an entity, streamed into a CSV, Parquet or .xlsx file.

The file is written under a temporary name and renamed when complete (`writers.atomic_path`),
so a failure or a cancelled run leaves no file; the temporary file of an export killed mid-write
(kill -9, a lost host) is removed by the next export into the same folder. File names come from a template; dated names
and `prune` give a scheduled export its retention (keep the last N).
"""

from __future__ import annotations

import fnmatch
import os
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors.files.conventions import EXCEL_MAX_ROWS
from connectors.files.csvsafe import is_formula
from connectors.store import registry
from connectors.store.export.filters import Filter
from connectors.store.export.query import DEFAULT_BATCH_ROWS, Column, Query, build_query, stream_rows

DEFAULT_NAME = "{entity}-{account}-{timestamp}"
_FIELD = re.compile(r"\{(\w+)(?::[^}]*)?\}")
NAME_FIELDS = ("entity", "account", "format", "date", "timestamp", "preset", "run_id")


class ExportError(Exception):
    """An export that cannot run or could not write its file: one line naming the field or path."""


@dataclass(frozen=True)
class ExportSpec:
    entity: str
    account_id: uuid.UUID
    filter: Filter = field(default_factory=Filter)
    columns: tuple[Column, ...] = ()
    format: str = "csv"
    escape: bool = True
    bom: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    preview_rows: int = 10
    # xlsx only: rows per sheet, header included (Excel's limit unless a test says otherwise)
    sheet_rows: int = EXCEL_MAX_ROWS


@dataclass
class ExportResult:
    path: Path
    rows: int
    size: int
    headers: list[str]
    preview: list[dict[str, str]]
    filter_words: str
    sheets: int | None = None
    # temporary files of killed exports found in the folder and removed before this one was written
    removed: list[Path] = field(default_factory=list)


def file_name(template: str, fmt: str, *, now: datetime | None = None, **values: str) -> str:
    """TEMPLATE's fields filled in ({entity} {account} {format} {date} {timestamp} {preset} {run_id}),
    plus the format's suffix; a field it cannot fill or a path separator raises ExportError."""
    now = now or datetime.now(UTC)
    known = {
        "format": fmt,
        "date": now.strftime("%Y-%m-%d"),
        "timestamp": now.strftime("%Y%m%dT%H%M%SZ"),
        **{k: v for k, v in values.items() if v is not None},
    }
    for m in _FIELD.finditer(template):
        if m.group(1) not in known:
            raise ExportError(
                f"file name template {template!r}: unknown field {{{m.group(1)}}}: use {', '.join(NAME_FIELDS)}"
            )
    name = template.format(**known)
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ExportError(f"file name template {template!r} gives {name!r}: a file name, without folders")
    from connectors.files import writers

    suffix = writers.WRITERS[fmt].suffix
    return name if name.endswith(suffix) else name + suffix


def name_pattern(template: str, fmt: str, **values: str) -> str:
    """The glob that every file of TEMPLATE matches whatever its date (for retention)."""
    known = {"format": fmt, **{k: v for k, v in values.items() if v is not None}}
    pattern = _FIELD.sub(lambda m: known.get(m.group(1), "*") if m.group(1) in known else "*", template)
    from connectors.files import writers

    suffix = writers.WRITERS[fmt].suffix
    return pattern if pattern.endswith(suffix) else pattern + suffix


def prune(folder: Path, pattern: str, keep: int) -> list[Path]:
    """Delete all but the newest KEEP files of FOLDER matching PATTERN (by modification time); the deleted."""
    if keep <= 0:
        return []
    matching = [p for p in folder.iterdir() if p.is_file() and fnmatch.fnmatchcase(p.name, pattern)]
    matching.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    gone = matching[keep:]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the export folder {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write to the export folder {folder}: permission denied (read-only?)")


def export(
    engine: sa.Engine,
    spec: ExportSpec,
    path: Path,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write SPEC's records to PATH (created only when complete); what was written.

    Raises:
        FilterError: a bad filter or column (before anything is written).
        ExportError: the file could not be written (read-only folder, full disk), one line.
    """
    from connectors.files import writers
    from connectors.store.export import copy

    if spec.format not in writers.WRITERS:
        raise ExportError(f"unknown format {spec.format!r}: choose one of {', '.join(writers.FORMATS)}")
    query = build_query(spec.entity, engine.dialect.name, spec.account_id, spec.filter, spec.columns)
    headers = [c.header for c in query.columns]
    path = Path(path)
    _writable(path.parent)
    removed = writers.remove_stale_temporaries(path.parent)
    rows = 0
    preview: list[dict[str, str]] = []
    sheets = None
    fast = copy.supported(engine) and spec.format in ("csv", "parquet")
    neutralise = spec.format == "csv" and spec.escape
    try:
        with writers.atomic_path(path) as tmp:
            cls = writers.WRITERS[spec.format]
            options: dict = {"escape": spec.escape, "bom": spec.bom}
            if spec.format == "xlsx":
                options.update(sheet_name=spec.entity, max_rows=spec.sheet_rows)
            if spec.format == "parquet":
                options.update(dictionary=_few_values(spec.entity, query))
            writer = cls(tmp, headers, query.kinds, **options)
            try:
                if fast:
                    rows, preview = _copy_into(engine, query, writer, spec, on_batch)
                else:
                    for batch in stream_rows(engine, query, spec.batch_rows):
                        writer.write(batch)
                        if len(preview) < spec.preview_rows:
                            for row in batch[: spec.preview_rows - len(preview)]:
                                preview.append(_preview_row(headers, query.kinds, row, neutralise))
                        rows += len(batch)
                        if on_batch is not None:
                            on_batch(rows)
            finally:
                writer.close()
            sheets = getattr(writer, "sheets", None)
    except OSError as exc:
        raise ExportError(f"could not write {path}: {exc.strerror or exc}; no file was left") from exc
    return ExportResult(
        path=path,
        rows=rows,
        size=path.stat().st_size,
        headers=headers,
        preview=preview,
        filter_words=spec.filter.words(spec.entity),
        sheets=sheets,
        removed=removed,
    )


def _few_values(entity: str, query: Query) -> list[str]:
    """Headers of the columns holding one of a declared set of values (stage, status): dictionary-encoded."""
    declared = set(registry.get(entity).value_sets) | {
        f"{p}_{f}" for p in ("job", "application") for f in ("status", "stage")
    }
    return [c.header for c in query.columns if c.field in declared]


def _copy_into(
    engine: sa.Engine, query: Query, writer: Any, spec: ExportSpec, on_batch: Callable[[int], None] | None
) -> tuple[int, list[dict[str, str]]]:
    """PostgreSQL: the rows through COPY, as CSV bytes or Arrow batches; the row count and the preview."""
    from connectors.files import writers
    from connectors.store.export import copy

    csv = spec.format == "csv"
    statement = copy.text_statement(query, escape=spec.escape and csv, arrow=not csv)
    stream = copy.CopyStream(engine, statement, head_rows=spec.preview_rows)
    rows = 0
    if csv:
        for chunk in stream:
            writer.write_csv_bytes(chunk)
            # progress counts lines: a value with a newline makes it run ahead, the total is exact
            rows += chunk.count(b"\n")
            if on_batch is not None:
                on_batch(rows)
    else:
        for batch in copy.arrow_batches(iter(stream), list(writer.schema.names), writer.schema):
            writer.write_arrow(batch)
            rows += batch.num_rows
            if on_batch is not None:
                on_batch(rows)
    headers = [c.header for c in query.columns]
    preview = []
    for cells in stream.head:
        row = dict(zip(headers, (c[:200] for c in cells), strict=True))
        if not csv:
            # the Parquet stream carries timestamps as microseconds since the epoch, tags as the store joins them
            for header, kind in zip(headers, query.kinds, strict=True):
                if kind == "datetime" and row[header]:
                    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(row[header]))
                    row[header] = writers.text_of(kind, moment)
                elif kind == "tags":
                    row[header] = writers.text_of(kind, row[header])
        preview.append(row)
    return (stream.rows if stream.rows is not None else rows), preview


def _preview_row(headers: Sequence[str], kinds: Sequence[str], row: tuple, neutralise: bool) -> dict[str, str]:
    """A row as the preview shows it: as the file holds it (a CSV's formula cells neutralised)."""
    from connectors.files import writers

    out = {}
    for h, k, v in zip(headers, kinds, row, strict=True):
        text = writers.text_of(k, v)
        text = "" if text is None else str(text)
        out[h] = ("'" + text if neutralise and is_formula(text) else text)[:200]
    return out
