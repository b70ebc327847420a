"""The import engine: file -> mapping -> validation -> record store, in committed batches.

Public API (the Dagster layer, the sensor and the CLI call only these):
    run_import, rollback_import, list_imports, get_import, file_sha256,
    ImportOptions (re-exported), ImportProgress, ImportResult,
    ImportFailed, MappingError, FileFormatError.
ImportOptions.force re-imports identical content; ImportOptions.form_name names the form
submissions; ImportResult.flagged and ImportResult.details carry the finer counts.
A history row that did not complete says why in `error_message`, in words (no SQL).
"""

from __future__ import annotations

import contextlib
import csv
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from connectors.files import FileReadError, RawBatch, csvsafe, open_tabular
from connectors.store import accounts, changes, history
from connectors.store.errors import add_context, describe_error
from connectors.store.imports import ImportWriter, serialized_batches
from connectors.store.schema import import_history
from pipelines.imports import dropzone, shards
from pipelines.imports.errors import FileFormatError, ImportFailed, MappingError
from pipelines.imports.mapping import apply_mapping, bind_mapping, check_identity_key, date_report, mapping_report
from pipelines.imports.options import ImportOptions
from pipelines.imports.validation import check_stage_options, prepare

__all__ = [
    "FileFormatError",
    "ImportFailed",
    "ImportOptions",
    "ImportProgress",
    "ImportResult",
    "MappingError",
    "file_sha256",
    "get_import",
    "list_imports",
    "prefetch",
    "rollback_import",
    "run_import",
]


@dataclass
class ImportProgress:
    """Counters after a committed batch (cumulative over a resumed import)."""

    import_id: uuid.UUID
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0
    batches_committed: int = 0


@dataclass
class ImportResult:
    """Outcome of `run_import`. status: completed | skipped | failed."""

    import_id: uuid.UUID
    status: str
    file: str
    type: str
    created: int = 0
    updated: int = 0
    skipped: int = 0
    errors: int = 0
    rows_read: int = 0
    failed_rows_path: str | None = None
    dry_run: bool = False
    duplicate_of: uuid.UUID | None = None
    sample: list[dict] = field(default_factory=list)
    elapsed_s: float = 0.0
    flagged: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, streamed (the drop zone's partition keys hash the same way)."""
    return dropzone.file_sha256(path)


FAILED_COLUMNS = ("_row", "_line", "_column", "_error")


class _Stopped(Exception):
    """`should_stop` said so between two batches."""


class _Abort(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _now() -> datetime:
    return datetime.now(UTC)


class FailedRows:
    """The failed-rows CSV: original row plus _row, _line, _column, _error, _raw (ragged rows), _original.

    Written to a hidden `.part` file batch by batch (before each commit) and renamed when the
    import ends; a resumed import drops the part file's rows past the committed point.
    """

    def __init__(
        self,
        directory: Path,
        import_id: uuid.UUID,
        source: str,
        columns: list[str],
        keep_until: int,
        *,
        part: Path | None = None,
    ) -> None:
        with self._writing(directory):
            self._open(directory, import_id, source, columns, keep_until, part)

    @staticmethod
    @contextlib.contextmanager
    def _writing(directory: Path) -> Iterator[None]:
        """A failed write (a full disk, a read-only folder) says which file, where and why."""
        try:
            yield
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot write the failed-rows file in {directory}: {exc.strerror or exc}; "
                "the batches committed so far are kept and a re-run resumes after them",
            ) from exc

    def _open(
        self, directory: Path, import_id: uuid.UUID, source: str, columns: list[str], keep_until: int, part: Path | None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.columns = columns
        # a shard of a sharded import writes a part of its own (`shards.FailedParts` merges them)
        self.part = part or directory / f".{import_id}.failed.csv.part"
        self.final = directory / dropzone.fit_name(Path(source).stem, f"-{import_id.hex[:8]}-failed.csv")
        self.header = [*FAILED_COLUMNS, *columns, "_raw", csvsafe.ORIGINAL_COLUMN]
        self.count = 0
        if self.part.exists() and keep_until > 0:
            kept = self.part.with_suffix(".tmp")
            with (
                open(self.part, newline="", encoding="utf-8") as src,
                open(kept, "w", newline="", encoding="utf-8") as dst,
            ):
                reader, writer = csv.reader(src), csv.writer(dst)
                next(reader, None)
                writer.writerow(self.header)
                for rec in reader:
                    if rec and int(rec[0]) <= keep_until:
                        writer.writerow(rec)
                        self.count += 1
            os.replace(kept, self.part)
        else:
            with open(self.part, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(self.header)
        self._f = open(self.part, "a", newline="", encoding="utf-8")  # noqa: SIM115 - one file across batches, closed by close()
        # formula payloads (=, +, -, @, |, tab, CR) get a leading ' and their original in _original
        self._w = csvsafe.SafeCsvWriter(self._f, self.header[:-1], write_header=False)

    def add(self, raw: RawBatch, errors: dict[int, list[tuple[str, str]]]) -> None:
        """errors: row number -> [(column, reason)]."""
        if not errors and not raw.issues:
            return
        with self._writing(self.part.parent):
            self._add(raw, errors)

    def _add(self, raw: RawBatch, errors: dict[int, list[tuple[str, str]]]) -> None:
        lines = raw.lines.to_pylist() if raw.lines is not None else None
        if errors:
            nums = pa.array(sorted(errors), pa.int64())
            idx = pc.index_in(nums, value_set=raw.rows).to_pylist()
            values = raw.table.take(pa.array(idx, pa.int64())).to_pylist()
            for row_no, i, vals in zip(nums.to_pylist(), idx, values, strict=False):
                errs = errors[row_no]
                line = lines[i] if lines is not None else ""
                self._w.writerow(
                    [row_no, line, "; ".join(c for c, _ in errs), "; ".join(r for _, r in errs), *vals.values(), ""]
                )
        for issue in raw.issues:
            self._w.writerow(
                [issue.row, issue.line or "", issue.column or "", issue.reason, *([""] * len(self.columns)), issue.raw]
            )
        self.count += len(errors) + len(raw.issues)
        self._f.flush()

    def finish(self) -> Path:
        with self._writing(self.part.parent):
            self._f.close()
            os.replace(self.part, self.final)
        return self.final

    def close(self) -> None:
        if not self._f.closed:
            # rows that could not be written (a full disk) are dropped: a resumed import rewrites them
            with contextlib.suppress(OSError):
                self._f.close()


def failed_rows_reasons(path: Path) -> Counter[str]:
    """How many rows of the failed-rows file PATH failed for each reason (`column: error`)."""
    reasons: Counter[str] = Counter()
    with open(path, newline="", encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            column, error = rec.get("_column") or "", rec.get("_error") or "unknown error"
            reasons[changes.reason_key(column, error)] += 1
    return reasons


def end_if_all_failed(conn: Any, import_id: uuid.UUID, reasons: Mapping[str, int], what: str = "rows") -> None:
    """Settle the status of an import that ran to its end: `failed` when every row failed (`changes.ends_failed`,
    the rule of every change set), its error_message and `details.failed_reasons` counting the reasons; else
    `completed`. Called again after counters changed (a document import adds its documents), it decides again."""
    h = history.row(conn, import_id)
    details = dict(h.details or {})
    decided_here = h.status == "failed" and "failed_reasons" in details
    if h.status != "completed" and not decided_here:
        return
    if changes.ends_failed(attempted=h.created + h.updated + h.skipped + h.errors, failed=h.errors):
        listed = changes.counted_reasons(reasons, h.errors)
        message = changes.all_failed_message(h.errors, listed, what)
        history.update(
            conn, import_id, status="failed", error_message=message, details={**details, "failed_reasons": listed}
        )
    elif decided_here:
        details.pop("failed_reasons")
        # the rule's message goes with its status; a message the caller wrote since stays
        keep = h.error_message if not (h.error_message or "").startswith("all ") else None
        history.update(conn, import_id, status="completed", error_message=keep, details=details)


def prefetch(produce: Callable[[], Iterator[Any]], depth: int = 1) -> Iterator[Any]:
    """Run a generator in a worker thread, `depth` items ahead of the consumer.

    Reading, mapping and validating the next batch (Python and Arrow work) overlaps the database
    writing the current one. The import and the sync engine (`pipelines.syncs.engine`) both read
    this way.

    Args:
        produce: makes the generator to run (called once, in the worker thread).
        depth: how many items the worker may hold ready ahead of the consumer.

    Yields:
        The generator's items, in order.

    Raises:
        BaseException: whatever the generator raised, re-raised in the consumer at the point it
            was raised (the items before it are yielded first).

    When the consumer stops early (an error, a cancellation, `close()`), the worker stops at its
    next item and closes the generator (its `finally` runs, a file it reads is closed). The
    consumer wakes every 0.5 s while it waits, so a signal (Dagster's cancellation) reaches it.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        gen = produce()
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as exc:
            q.put((None, exc))
        finally:
            gen.close()

    worker = threading.Thread(target=work, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item, exc = q.get(timeout=0.5)  # wake up now and then: signals (cancellation) reach us
            except queue.Empty:
                continue
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        worker.join()


def _read_ahead(tab: Any, batch_size: int, after: int, null_columns: list[str]) -> Iterator[RawBatch]:
    """The file's batches after row `after`, ending quietly at an unreadable spot (the import meets it and reports it)."""
    try:
        yield from tab.batches(batch_size, start_after=after, null_columns=null_columns)
    except FileReadError:
        return


def _result(
    row: Any, *, elapsed: float, sample: list[dict] | None = None, duplicate_of: uuid.UUID | None = None
) -> ImportResult:
    return ImportResult(
        import_id=row.id,
        status=row.status,
        file=row.file,
        type=row.type,
        created=row.created,
        updated=row.updated,
        skipped=row.skipped,
        errors=row.errors,
        rows_read=row.rows_read,
        failed_rows_path=row.failed_rows_path,
        dry_run=row.dry_run,
        duplicate_of=duplicate_of,
        sample=sample or [],
        elapsed_s=round(elapsed, 3),
        flagged=row.flagged,
        details=dict(row.details or {}),
    )


def _begin(
    store: Any, account_id: uuid.UUID, path: Path, name: str, sha: str, options: ImportOptions, run: dict
) -> tuple[uuid.UUID, Any]:
    """Create the history row, or pick up an unfinished one of the same content; (id, duplicate_of)."""
    with store.begin() as conn:
        done = None
        if not options.dry_run:
            if not options.force:
                done = history.last_completed(conn, account_id, options.entity, sha)
            if done is None:
                unfinished = history.last_resumable(conn, account_id, options.entity, sha)
                if unfinished is not None:
                    history.update(
                        conn,
                        unfinished,
                        status="processing",
                        error_message=None,
                        options=options.to_json(),
                        source_path=str(path),
                        **run,
                    )
                    return unfinished, None
        # a file whose content was already imported gets a row of its own, skipped, naming that import
        outcome: dict[str, Any] = {"status": "processing", "dry_run": options.dry_run}
        if done is not None:
            outcome = {
                "status": "skipped",
                "skipped": done.rows_read,
                "rows_read": done.rows_read,
                "error_message": f"identical content already imported by import {done.id}",
                "finished_at": _now(),
                "details": {"duplicate_of": str(done.id)},
            }
        import_id = uuid.uuid4()
        history.insert(
            conn,
            id=import_id,
            account_id=account_id,
            type=options.entity,
            file=name,
            source_path=str(path),
            content_sha256=sha,
            started_at=_now(),
            options=options.to_json(),
            created_by=options.actor,
            **outcome,
            **run,
        )
        return import_id, (done.id if done is not None else None)


def _identity(path: Path) -> tuple[int, int, int, int]:
    """What tells a file's content apart without reading it: device, inode, size, modification time."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def prepared_batches(
    tab: Any,
    mapping: Any,
    options: ImportOptions,
    *,
    size: int,
    start_after: int,
    null_columns: list[str],
    auto_advance: Any,
    account_settings: Any,
) -> Iterator[tuple[Any, Any]]:
    """(raw batch, its mapped and validated rows) for each batch of the file after `start_after`:
    the reading half of an import, shared by the import and each of its shards."""
    for raw in tab.batches(size, start_after=start_after, null_columns=null_columns):
        mapped = apply_mapping(mapping, raw.table, raw.rows)
        yield (
            raw,
            prepare(
                options.entity,
                mapped,
                raw.num_rows,
                auto_advance=auto_advance,
                duplicate_keys=options.duplicate_keys,
                account_settings=account_settings,
                case_sensitive_keys=options.case_sensitive_keys,
            ),
        )


def _cancelled(conn: sa.Connection, import_id: uuid.UUID, why: str) -> None:
    """End the history row 'cancelled', saying where a re-run resumes."""
    committed = history.row(conn, import_id).rows_committed
    history.update(
        conn,
        import_id,
        status="cancelled",
        finished_at=_now(),
        error_message=f"{why} after {committed} committed rows; a re-run resumes there",
    )


_CHANGED = (
    "{name} was replaced or changed while it was being imported: the rows committed so far "
    "may mix the old and the new content; import the new file (its own import, matched by key, "
    "so nothing is duplicated)"
)


def _open_file(path: Path, name: str, options: ImportOptions, import_id: uuid.UUID) -> Any:
    """The file opened for reading with the import's options (`FileFormatError` when it cannot be)."""
    try:
        return open_tabular(
            path,
            file_format=options.file_format,
            encoding=options.encoding,
            delimiter=options.delimiter,
            decode_fallback=options.decode_fallback,
            skip_rows=options.skip_rows,
            comment=options.comment,
            sheet=options.sheet,
            null_values=options.null_values,
            max_cell_bytes=options.max_cell_bytes,
        )
    except FileReadError as exc:
        raise FileFormatError(f"{name}: {exc}".replace(f"{path.name}: ", "", 1), import_id=import_id) from exc


def _bind(
    tab: Any, name: str, options: ImportOptions, account_settings: Any, import_id: uuid.UUID
) -> tuple[Any, str, Any, list[str]]:
    """The mapping bound to the file's columns and checked; (mapping, default stage, auto-advance, null columns)."""
    try:
        mapping = bind_mapping(options.mapping, tab.columns, options.entity)
        check_identity_key(
            mapping,
            duplicate_keys=options.duplicate_keys,
            on_duplicate=options.on_duplicate,
            allow=options.allow_update_without_key,
        )
    except MappingError as exc:
        raise MappingError(f"{name}: {exc.message}", import_id=import_id) from None
    default_stage, auto_advance = check_stage_options(
        options.entity, options.default_stage, options.auto_advance, account_settings
    )
    # null spellings ('N/A', 'NULL', '-') empty the columns mapped to record fields; data keeps the text
    null_columns = [r.source for r in mapping.rules if r.target and "." not in r.target]
    return mapping, default_stage, auto_advance, null_columns


def run_import(
    store: Any,
    account_id: uuid.UUID,
    path: str | Path,
    options: ImportOptions,
    *,
    source_name: str | None = None,
    failed_rows_dir: str | Path,
    dagster_run_id: str | None = None,
    partition_key: str | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    shards_as_steps: bool = False,
) -> ImportResult:
    """Import one file into the account's records, batch by batch.

    Identical content (same account, entity and SHA-256) already imported returns status
    "skipped" with `duplicate_of` and a history row of status skipped, unless `options.force`.
    An unfinished import of the same content (processing, failed or cancelled) is resumed after
    its `rows_committed`. `should_stop` is asked before each batch is written; when it answers
    True the import ends "cancelled" after its committed batches (a later run resumes it). Dry
    runs write no records: each runs in one transaction rolled back at the end, and leave a
    history row marked dry_run.

    SHARDS_AS_STEPS: a sharded import stops once its shards are planned and returns status
    "processing" (`details.shards` says how many); the caller writes each shard
    (`write_import_shard`, anywhere: a step of its own on another worker) and then ends the
    import (`finish_sharded_import`). An unsharded import runs whole, as without it.

    Raises:
        MappingError: the mapping does not fit the file; nothing was written.
        FileFormatError: the file cannot be read; batches before the bad spot stay committed.
        ImportFailed: the error policy aborted the import; `.result` holds the counts.
    """
    t0 = time.monotonic()
    path = Path(path)
    name = source_name or path.name
    failed_dir = Path(failed_rows_dir)
    if not path.is_file():
        raise FileFormatError(f"{name}: no such file {path}")
    seen = _identity(path)
    sha = file_sha256(path)
    if _identity(path) != seen:
        raise FileFormatError(
            f"{name}: the file changed while its content hash was taken; import it once it is complete"
        )
    run = {"dagster_run_id": dagster_run_id, "partition_key": partition_key}
    import_id, duplicate_of = _begin(store, account_id, path, name, sha, options, run)
    if duplicate_of is not None:
        with store.begin() as conn:
            return _result(history.row(conn, import_id), elapsed=time.monotonic() - t0, duplicate_of=duplicate_of)
    failed: FailedRows | shards.FailedParts | None = None
    sample: list[dict] = []
    batch_at = ""  # "rows 20001-40000" while a batch is being written: what a database error names
    try:
        tab = _open_file(path, name, options, import_id)
        with store.begin() as conn:
            h = history.row(conn, import_id)
            account_settings = accounts.settings(conn, account_id)
            # how the file was read (format, encoding, header, renamed columns), before the first batch
            history.update(conn, import_id, details={**dict(h.details or {}), "file": tab.detected})
        # everything about the mapping is decided, and refused, before the first write
        mapping, default_stage, auto_advance, null_columns = _bind(tab, name, options, account_settings, import_id)

        committed, batches = h.rows_committed, 0
        # a resumed import settles date columns from the start of the file, as the first run did
        resumed = committed > 0
        mapping.lookahead = lambda after: _read_ahead(tab, options.batch_size, 0 if resumed else after, null_columns)
        totals = {k: getattr(h, k) for k in ("created", "updated", "skipped", "flagged", "errors", "rows_read")}
        details = {k: v for k, v in dict(h.details or {}).items() if isinstance(v, int)}
        details["file"] = tab.detected
        details["mapping"] = mapping_report(mapping)
        if mapping.fit:
            details["entity_fit"] = mapping.fit  # automatic mapping: columns each entity would map
        if mapping.dates:
            details["date_formats"] = date_report(mapping)
        plan = None if options.dry_run else shards.plan(store, h, options, account_id, path, name, failed_dir)
        if plan is not None:
            # the file is written by parallel shards: one import, its counters summed by the shards' batches
            shards.record(store, plan, {k: v for k, v in details.items() if not isinstance(v, int)})
            if shards_as_steps:
                with store.begin() as conn:
                    return _result(history.row(conn, import_id), elapsed=time.monotonic() - t0)
            failed = shards.FailedParts(plan, tab.columns)
            shards.run(store, plan, on_progress=on_progress, should_stop=should_stop)
            if _identity(path) != seen:
                raise ImportFailed(_CHANGED.format(name=name))
            final = failed.finish()
            with store.begin() as conn:
                history.update(conn, import_id, status="completed", finished_at=_now(), failed_rows_path=str(final))
                return _result(history.row(conn, import_id), elapsed=time.monotonic() - t0)
        failed = FailedRows(failed_dir, import_id, name, tab.columns, committed)
        if committed == 0:
            failed.count = 0
        with store.engine.connect() as conn, serialized_batches(conn):
            writer = None
            outer = conn.begin() if options.dry_run else None

            def step() -> Any:
                """A transaction of its own; inside a dry run's one outer transaction, none."""
                # a dry run is one transaction rolled back at the end (sqlite savepoints would commit it)
                return conn.begin() if outer is None else contextlib.nullcontext()

            def prepared(start_after: int = committed) -> Iterator[tuple[Any, Any]]:
                return prepared_batches(
                    tab,
                    mapping,
                    options,
                    size=options.batch_size,
                    start_after=start_after,
                    null_columns=null_columns,
                    auto_advance=auto_advance,
                    account_settings=account_settings,
                )

            try:
                for raw, prep in prefetch(prepared):
                    if should_stop is not None and should_stop():
                        raise _Stopped()
                    batch_at = f"rows {committed + 1}-{raw.last_row}"
                    if writer is None:
                        columns = [c for c in prep.table.column_names if c != "rnd"]
                        writer = ImportWriter(
                            conn,
                            entity=options.entity,
                            account_id=account_id,
                            import_id=import_id,
                            actor=options.actor,
                            columns=columns,
                            json_spec=prep.json,
                            on_duplicate=options.on_duplicate,
                            duplicate_keys=options.duplicate_keys,
                            create_missing_jobs=options.create_missing_jobs,
                            default_stage=default_stage,
                            form_name=options.form_name,
                            case_sensitive_keys=options.case_sensitive_keys,
                        )
                        with step():
                            writer.create_stage()
                    row_errors: dict[int, list[tuple[str, str]]] = {}
                    rows = raw.rows.to_pylist() if prep.errors else None
                    for i, col, reason in prep.errors:
                        row_errors.setdefault(rows[i], []).append((col, reason))
                    table = prep.table.append_column("row_no", raw.rows)
                    if row_errors:
                        keep = pc.invert(pc.is_in(raw.rows, value_set=pa.array(list(row_errors), pa.int64())))
                        table = table.filter(keep)
                    with step():
                        writer.refresh_statistics()
                    with step():
                        outcome = writer.write_batch(table) if table.num_rows else None
                        if outcome is not None:
                            for row_no, col, reason in outcome.errors:
                                row_errors.setdefault(row_no, []).append((col, reason))
                        batch_errors = len(row_errors) + len(raw.issues)
                        read = raw.num_rows + len(raw.issues)
                        if batch_errors and options.error_policy == "abort":
                            first = min([*row_errors, *(i.row for i in raw.issues)])
                            why = row_errors.get(first) or [
                                next((i.column, i.reason) for i in raw.issues if i.row == first)
                            ]
                            col, reason = why[0]
                            where = f", column {col!r}" if col else ""
                            failed.add(raw, row_errors)
                            raise _Abort(f"{name}: row {first}{where}: {reason} (error_policy abort)")
                        total_err, total_read = totals["errors"] + batch_errors, totals["rows_read"] + read
                        if (
                            options.error_policy == "threshold"
                            and total_read
                            and total_err / total_read > options.error_threshold
                        ):
                            failed.add(raw, row_errors)
                            raise _Abort(
                                f"{name}: {total_err} of {total_read} rows failed, more than the threshold "
                                f"{options.error_threshold:.0%} (error_policy threshold); last batch ended at row {raw.last_row}"
                            )
                        if outcome is not None:
                            totals["created"] += outcome.counts["created"]
                            totals["updated"] += outcome.counts["updated"]
                            totals["skipped"] += outcome.counts["skipped"] + outcome.counts["flagged"]
                            totals["flagged"] += outcome.counts["flagged"]
                            for k, v in outcome.details.items():
                                details[k] = details.get(k, 0) + v
                            if options.dry_run and len(sample) < 20:
                                sample.extend(writer.sample(20 - len(sample)))
                        for k, v in raw.counts.items():
                            details[k] = details.get(k, 0) + v
                        totals["errors"] = total_err
                        totals["rows_read"] = total_read
                        if mapping.dates:
                            details["date_formats"] = date_report(mapping)
                        failed.add(raw, row_errors)
                        if not options.dry_run:
                            history.update(conn, import_id, rows_committed=raw.last_row, details=details, **totals)
                    committed = raw.last_row
                    batch_at = ""
                    batches += 1
                    if on_progress is not None:
                        on_progress(
                            ImportProgress(
                                import_id=import_id,
                                rows_read=totals["rows_read"],
                                created=totals["created"],
                                updated=totals["updated"],
                                skipped=totals["skipped"],
                                errors=totals["errors"],
                                batches_committed=batches,
                            )
                        )
            finally:
                if outer is not None:
                    outer.rollback()
                if writer is not None and outer is None:
                    with conn.begin():
                        writer.drop_stage()
        if not options.dry_run and _identity(path) != seen:
            raise ImportFailed(_CHANGED.format(name=name))
        final = failed.finish()
        with store.begin() as conn:
            values: dict[str, Any] = {"status": "completed", "finished_at": _now(), "failed_rows_path": str(final)}
            if options.dry_run:
                values.update(rows_committed=committed, details=details, **totals)
            history.update(conn, import_id, **values)
            end_if_all_failed(conn, import_id, failed_rows_reasons(final))
            return _result(history.row(conn, import_id), elapsed=time.monotonic() - t0, sample=sample)
    except (_Stopped, shards.Stopped):
        if failed is not None:
            failed.close()  # the part file stays: the resumed import appends to it
        with store.begin() as conn:
            _cancelled(conn, import_id, "stopped on request")
            return _result(history.row(conn, import_id), elapsed=time.monotonic() - t0, sample=sample)
    except (_Abort, shards.Aborted) as exc:
        final_path = failed.finish() if failed is not None else None
        with store.begin() as conn:
            _failed(conn, import_id, exc.message, failed_rows_path=str(final_path) if final_path else None)
            result = _result(history.row(conn, import_id), elapsed=time.monotonic() - t0, sample=sample)
        raise ImportFailed(exc.message, import_id=import_id, result=result) from None
    except ImportFailed as exc:
        if failed is not None:
            failed.close()
        exc.import_id = import_id
        with store.begin() as conn:
            _failed(conn, import_id, exc.message)
            exc.result = _result(history.row(conn, import_id), elapsed=time.monotonic() - t0)
        raise
    except BaseException as exc:
        # crash, cancellation or transient fault: committed batches stay, a re-run resumes
        if failed is not None:
            failed.close()
        if batch_at:
            add_context(exc, f"the batch at {batch_at}")
        try:
            with store.begin() as conn:
                if isinstance(exc, Exception):
                    why = describe_error(exc, url=store.engine.url)
                    _failed(conn, import_id, why)
                else:
                    _cancelled(
                        conn,
                        import_id,
                        f"interrupted ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"[:1900],
                    )
        except Exception:
            pass
        raise


def file_identity(path: str | Path) -> list[int]:
    """What tells a file replaced or changed from the one an import started with (device, inode, size, mtime)."""
    return list(_identity(Path(path)))


def _shard_plan(
    store: Any, import_id: uuid.UUID, path: Path, options: ImportOptions, failed_dir: Path
) -> tuple[Any, shards.Plan]:
    with store.begin() as conn:
        h = history.row(conn, import_id)
    p = shards.plan(store, h, options, h.account_id, path, h.file or path.name, failed_dir)
    if p is None:
        raise ValueError(f"import {import_id} is not sharded")
    return h, p


def _columns(p: shards.Plan) -> list[str]:
    return _open_file(p.path, p.name, p.options, p.import_id).columns


def write_import_shard(
    store: Any,
    import_id: uuid.UUID,
    k: int,
    path: str | Path,
    options: ImportOptions,
    *,
    failed_rows_dir: str | Path,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Write shard K of sharded import IMPORT_ID (started by `run_import(..., shards_as_steps=True)`);
    its counters (this call's).

    Resumes after the shard's committed position, so a retry, a re-run or a second worker given
    the same shard writes no row twice (each shard holds its own lock while it is written). Stops
    before its next batch when `should_stop` says so or the import has ended (another shard
    failed it). The shards of one import hold the account's sharded-import lock shared: an import
    writing all its shards in one place waits for them, and they for it.

    `error_policy: abort` names the file's first bad row, as an import writing its shards in one
    place does: a shard that meets a bad row records it on the import (`details.abort`, the
    earliest recorded wins) and returns with `aborted_at`; the others write their batches up to
    that row (one may meet an earlier one) and return with `stopped_before`; the finishing step
    (`finish_sharded_import`) then fails the import naming the earliest. No shard waits for
    another, so shards queued behind this one on a busy executor still run.

    Raises:
        ImportFailed: the error policy's threshold was passed: the import is failed and its
            failed-rows file merged.
        shards.Stopped: stopped on request, or the import ended elsewhere.
    """
    h, p = _shard_plan(store, import_id, Path(path), options, Path(failed_rows_dir))
    mine: dict[str, int] = {}

    def state() -> tuple[bool, int | None]:
        # (the import ended, the earliest row a shard's abort recorded)
        with store.engine.connect() as conn:
            row = history.row(conn, import_id)
        return row.status != "processing", _abort_of(row.details).get("row")

    def stop() -> bool:
        return (should_stop is not None and should_stop()) or state()[0]

    def past(row: int) -> bool:
        # only `abort` records a row: other policies read nothing more per batch
        if options.error_policy != "abort":
            return False
        at = state()[1]
        return at is not None and row > at

    def report(counts: dict[str, int]) -> None:
        mine.update(counts)
        if on_progress is not None:
            on_progress(dict(counts))

    if h.status != "processing":
        raise shards.Stopped()
    try:
        with shards.account_turn(store, h.account_id, shared=True):
            shards.write_shard(store, p, k, stop=stop, report=report, past=past)
    except shards.Stopped:
        ended, at = state()
        if at is not None and not ended and not (should_stop is not None and should_stop()):
            return {**mine, "stopped_before": at}  # past another shard's bad row: done, as far as it goes
        raise
    except shards.Aborted as exc:
        if exc.row is not None:
            _record_abort(store, import_id, exc.row, exc.message)
            return {**mine, "aborted_at": exc.row}
        with store.begin() as conn:
            _failed(conn, import_id, exc.message)
        # the other shards stop before their next batch, seeing the import ended; their parts are complete then
        shards.wait_for_shards(store, p)
        final = shards.FailedParts(p, _columns(p)).finish()
        with store.begin() as conn:
            history.update(conn, import_id, failed_rows_path=str(final))
            result = _result(history.row(conn, import_id), elapsed=0.0)
        raise ImportFailed(exc.message, import_id=import_id, result=result) from None
    return mine


def _failed(conn: sa.Connection, import_id: uuid.UUID, message: str, **values: Any) -> None:
    """End the import's history row failed now with MESSAGE (and VALUES, such as its failed-rows file)."""
    history.update(conn, import_id, status="failed", finished_at=_now(), error_message=message, **values)


def _abort_of(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The abort a shard recorded on a sharded import ({row, message}), or {}."""
    return dict((details or {}).get("abort") or {})


def _record_abort(store: Any, import_id: uuid.UUID, row: int, message: str) -> None:
    """Record that a shard's error policy aborted at ROW, unless a shard recorded an earlier row."""
    with store.begin() as conn:
        h = conn.execute(sa.select(import_history).where(import_history.c.id == import_id).with_for_update()).one()
        first = _abort_of(h.details)
        if not first or row < int(first["row"]):
            history.update(conn, import_id, details={**(h.details or {}), "abort": {"row": row, "message": message}})


def finish_sharded_import(
    store: Any,
    import_id: uuid.UUID,
    path: str | Path,
    options: ImportOptions,
    *,
    failed_rows_dir: str | Path,
    identity: list[int] | None = None,
) -> ImportResult:
    """End sharded import IMPORT_ID once `write_import_shard` wrote every shard: the failed-rows parts
    merged into one file, the history row completed.

    IDENTITY: `file_identity` of the file when the import started; a file replaced or changed
    since fails the import, as an unsharded import does.

    Raises:
        ImportFailed: a shard's error policy aborted at a row (the earliest any shard met is named),
            a shard is behind the others (not written to the end), or the file changed.
    """
    t0 = time.monotonic()
    path = Path(path)
    h, p = _shard_plan(store, import_id, path, options, Path(failed_rows_dir))
    if h.status == "completed":
        return _result(h, elapsed=0.0)
    abort = _abort_of(h.details)
    if abort and h.status == "processing":
        # every shard stopped at or before it: the parts are complete, the file's first bad row is known
        final = shards.FailedParts(p, _columns(p)).finish()
        with store.begin() as conn:
            _failed(conn, import_id, abort["message"], failed_rows_path=str(final))
            result = _result(history.row(conn, import_id), elapsed=time.monotonic() - t0)
        raise ImportFailed(abort["message"], import_id=import_id, result=result)
    try:
        if identity is not None and list(_identity(path)) != list(identity):
            raise ImportFailed(_CHANGED.format(name=p.name))
        columns = _columns(p)
        # every shard commits every batch of the file (its share of it, maybe none): written to the end, they agree
        committed = {k: int(at) for k, at in (h.details or {})["shards"]["committed"].items()}
        behind = sorted(int(k) + 1 for k, at in committed.items() if at < max(committed.values()))
        if len(committed) < p.count or behind:
            raise ImportFailed(
                f"{p.name}: not every shard of {p.count} is written to the end of the file "
                f"(positions {committed}); a re-run resumes them"
            )
    except ImportFailed as exc:
        exc.import_id = import_id
        with store.begin() as conn:
            _failed(conn, import_id, exc.message)
            exc.result = _result(history.row(conn, import_id), elapsed=time.monotonic() - t0)
        raise
    final = shards.FailedParts(p, columns).finish()
    with store.begin() as conn:
        history.update(conn, import_id, status="completed", finished_at=_now(), failed_rows_path=str(final))
        return _result(history.row(conn, import_id), elapsed=time.monotonic() - t0)


def fail_import(store: Any, import_id: uuid.UUID, message: str) -> None:
    """Mark an unfinished import failed with MESSAGE (its committed batches stay; a re-run resumes)."""
    with store.begin() as conn:
        if history.row(conn, import_id).status == "processing":
            _failed(conn, import_id, message[:1900])


def record_file_moved(store: Any, old: str | Path, new: str | Path, sha256: str) -> int:
    """Point the history rows of this content that name `old` at `new`, where the file is now; how many."""
    with store.begin() as conn:
        return history.move_source(conn, str(old), str(new), sha256)


def list_imports(
    store: Any, account_id: uuid.UUID, *, type: str | None = None, limit: int = 50, dagster_run_id: str | None = None
) -> list[dict]:
    """Import history, newest first: date/time, type, file, counts and status, plus id and failed_rows_path.

    `dagster_run_id`: only the import(s) that Dagster run wrote (one, or none when it failed first).

    Each dict: id, started_at, type, file, created, updated, skipped, errors, status,
    flagged, rows_read, dry_run, failed_rows_path, error_message, finished_at.
    """
    with store.engine.connect() as conn:
        return history.listing(conn, account_id, entity=type, limit=limit, dagster_run_id=dagster_run_id)


def get_import(store: Any, account_id: uuid.UUID, import_id: uuid.UUID) -> dict | None:
    """The whole history row of one import of the account (None when there is none), its reason included."""
    with store.engine.connect() as conn:
        row = history.row_of_account(conn, account_id, import_id)
    return None if row is None else dict(row._mapping)


def rollback_import(
    store: Any,
    account_id: uuid.UUID,
    import_id: uuid.UUID,
    *,
    actor: str,
    force: bool = False,
    dagster_run_id: str | None = None,
) -> dict:
    """Undo an import: delete what it created, restore what it updated, audit both.

    Created records are deleted (hard delete, so a re-import can create them again), with
    an `import.rollback.delete` audit row holding the deleted record. Updated records get the
    before-image of their first update by this import back (`import.rollback.restore`).
    Candidates and jobs the import created but that other records now use are kept, and so are
    applications other records point at (recollection requests, contracts). Records something
    else changed after the import (another import, a bulk job: any later audit row) are
    conflicts, left as they are and counted, unless `force`. The import is a change set and so
    is its rollback (`connectors.store.changes.rollback`: set-based, one transaction, recorded
    with `dagster_run_id`); the history row ends `rolled_back` with the counts in its details.

    An import already rolled back is refused, except with `force` when its rollback left
    conflicts: that second pass undoes what the first left (records restored then are not
    restored again).

    Returns:
        {"import_id", "status", "deleted", "restored", "kept", "conflicts"}: counts per entity.

    Raises:
        ImportFailed: unknown import, a dry run, or already rolled back.
    """
    now = _now()
    with store.engine.connect() as conn, serialized_batches(conn), conn.begin():
        row = history.row_of_account(conn, account_id, import_id)
        if row is None:
            raise ImportFailed(f"no import {import_id} in this account", import_id=import_id)
        if row.dry_run:
            raise ImportFailed(f"import {import_id} was a dry run: nothing to roll back", import_id=import_id)
        details = dict(row.details or {})
        left = sum((details.get("rollback") or {}).get("conflicts", {}).values()) if row.status == "rolled_back" else 0
        if row.status == "rolled_back" and not (force and left):
            hint = f"; {left} conflict(s) were left as they are: --force (force: true) undoes them" if left else ""
            raise ImportFailed(f"import {import_id} is already rolled back{hint}", import_id=import_id)
        try:
            counts = changes.rollback(
                conn, import_id, account_id=account_id, actor=actor, force=force, dagster_run_id=dagster_run_id
            ).counts
        except changes.RollbackRefused as exc:
            raise ImportFailed(f"cannot roll back import {import_id}: {exc}", import_id=import_id) from exc
        history.resolve_flags(conn, import_id, now)
        if row.status == "rolled_back":
            # a forced second pass over what the first one left
            details["rollback_passes"] = [*details.get("rollback_passes", [details["rollback"]]), counts]
        details["rollback"] = counts
        history.update(conn, import_id, status="rolled_back", finished_at=now, details=details)
    return {"import_id": import_id, "status": "rolled_back", **counts}
