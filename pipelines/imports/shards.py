"""Sharded imports: one file written by N shards in parallel, as one import.

Each row belongs to one shard, by a hash of its identity key (the normalised email; a job's code,
else the external id, when the entity has no email), so two shards never write the same
candidate, and rows repeating a key meet in one shard, where duplicate matching works as in an
unsharded import. Every shard reads the whole file and writes its own rows, batch by batch; each
batch commits together with the shard's position in the file and the import's counters, which
the shards add to under the history row's lock. One history row and one change set hold them all:
audit and rollback are the import's. A re-run resumes each shard after its own position.

On PostgreSQL the shards are worker processes; their batches share the account's write lock (an
unsharded import's batch waits for them and they for it), a sharded import holds the account's
sharded-import lock for its whole run (two sharded imports of one account take turns), and a
shard's batch that creates jobs takes them in turn with the other shards. On SQLite, which has
one writer, the shards run one after another in the calling process.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import heapq
import multiprocessing
import os
import queue
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from connectors.store import RecordStore, history
from connectors.store.dialect import IMPORT_SHARD, SHARDED_IMPORT, dialect_of
from connectors.store.errors import add_context, describe_error
from connectors.store.imports import ImportWriter, serialized_batches
from connectors.store.schema import import_history

COUNTERS = ("created", "updated", "skipped", "flagged", "errors", "rows_read")
# the worker processes stop at their next batch when asked; past this they are terminated
STOP_GRACE_S = 60.0


class Stopped(Exception):
    """A shard stopped on request (`should_stop`), after its committed batches."""


class Aborted(Exception):
    """The error policy aborted a shard; the message says at which row (ROW: the bad row, for `abort`)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row


def _first_abort(aborted: list[Aborted]) -> Aborted:
    """Of the shards' aborts, the one at the earliest row of the file (a threshold's, with no row, first)."""
    return min(aborted, key=lambda a: -1 if a.row is None else a.row)


class ShardFailed(Exception):
    """A shard failed or its process died; the committed batches of every shard stay."""


@dataclass(frozen=True)
class Plan:
    """What every shard of one import needs (pickled to the worker processes)."""

    url: str
    account_id: uuid.UUID
    import_id: uuid.UUID
    path: Path
    name: str
    options: Any  # ImportOptions
    failed_dir: Path
    count: int
    base: int  # rows an unsharded run of this import committed before it was sharded
    committed: tuple[int, ...]  # each shard's position when this run started

    def state(self) -> dict[str, Any]:
        """The shards' part of the history row's details."""
        return {"count": self.count, "base": self.base, "committed": {str(k): p for k, p in enumerate(self.committed)}}

    def part(self, k: int) -> Path:
        return self.failed_dir / f".{self.import_id}.shard{k}of{self.count}.failed.csv.part"


def plan(
    store: Any, h: sa.Row, options: Any, account_id: uuid.UUID, path: Path, name: str, failed_dir: Path
) -> Plan | None:
    """The shard plan of import row H: the one it was started with when it resumes, else from `options.shards`.

    None: the import is not sharded.
    """
    before = (h.details or {}).get("shards")
    if before:
        count, base = int(before["count"]), int(before["base"])
        committed = tuple(max(base, int(before["committed"].get(str(k), 0))) for k in range(count))
    elif options.shards > 1:
        count, base = options.shards, h.rows_committed
        committed = (base,) * count
    else:
        return None
    url = store.engine.url.render_as_string(hide_password=False)
    return Plan(url, account_id, h.id, path, name, options, failed_dir, count, base, committed)


def record(store: Any, p: Plan, described: dict[str, Any]) -> None:
    """Put DESCRIBED (how the file was read and mapped) and, on a first run, the shard plan in the history row's details.

    Under the row's lock, over what is there now: a worker of an earlier run may still be
    committing a batch (its counts and position stay).
    """
    with store.begin() as conn:
        h = conn.execute(sa.select(import_history).where(import_history.c.id == p.import_id).with_for_update()).one()
        details = {**dict(h.details or {}), **described}
        details.setdefault("shards", p.state())
        history.update(conn, p.import_id, details=details)


def shard_numbers(table: pa.Table, rows: pa.Array, count: int, case_sensitive: bool) -> list[int]:
    """The shard of each row of a prepared batch: a hash of its identity key, else of its row number."""
    names = table.column_names
    key = next((c for c in ("email_norm", "code", "external_id") if c in names), None)
    if key is None:
        return [r % count for r in rows.to_pylist()]
    values = table.column(key)
    if key != "email_norm" and not case_sensitive:
        values = pc.utf8_lower(values)
    return [
        zlib.crc32(v.encode()) % count if v else r % count
        for v, r in zip(values.to_pylist(), rows.to_pylist(), strict=True)
    ]


@contextlib.contextmanager
def _turn(store: Any, p: Plan, k: int) -> Iterator[int]:
    """Hold shard K's lock while it is written; the shard's committed position, read once the lock is held.

    A worker left running by a parent that was killed writes its current batch, sees the parent
    gone and stops; the re-run's worker for the same shard waits for it here, then starts after
    the batch it committed.
    """
    with store.engine.connect() as conn:
        d, key = dialect_of(conn), f"{p.import_id}:{k}"
        d.session_lock(conn, IMPORT_SHARD, key)
        conn.commit()
        try:
            with conn.begin():
                state = (history.row(conn, p.import_id).details or {}).get("shards") or {}
            yield max(p.base, int((state.get("committed") or {}).get(str(k), 0)))
        finally:
            try:
                with conn.begin():
                    d.session_unlock(conn, IMPORT_SHARD, key)
            except Exception:
                conn.invalidate()  # never back to the pool holding the lock


def wait_for_shards(store: Any, p: Plan) -> None:
    """Wait until no shard of P is being written (each writer stops at its next batch once the import has ended)."""
    if store.engine.dialect.name != "postgresql":
        return
    for k in range(p.count):
        with store.engine.connect() as conn:
            d, key = dialect_of(conn), f"{p.import_id}:{k}"
            d.session_lock(conn, IMPORT_SHARD, key)
            d.session_unlock(conn, IMPORT_SHARD, key)
            conn.commit()


def write_shard(
    store: Any,
    p: Plan,
    k: int,
    *,
    stop: Callable[[], bool],
    report: Callable[[dict[str, int]], None],
    past: Callable[[int], bool] = lambda row: False,
) -> None:
    """Write shard K of plan P: its rows after its committed position, batch by batch.

    `report` gets the shard's counters (this run's) after each committed batch. `past(row)`: the
    batch starting at ROW lies after another shard's aborted row, so the shard stops before it.

    Raises:
        Stopped: `stop()` or `past` said so before a batch.
        Aborted: the error policy aborted at one of the shard's rows.
    """
    with _turn(store, p, k) as start:
        _write_shard(store, p, k, start, stop=stop, report=report, past=past)


def _write_shard(
    store: Any,
    p: Plan,
    k: int,
    start: int,
    *,
    stop: Callable[[], bool],
    report: Callable[[dict[str, int]], None],
    past: Callable[[int], bool],
) -> None:
    from pipelines.imports import engine
    from pipelines.imports.mapping import date_report

    options, name = p.options, p.name
    tab = engine._open_file(p.path, name, options, p.import_id)
    with store.begin() as conn:
        from connectors.store import accounts

        account_settings = accounts.settings(conn, p.account_id)
    mapping, default_stage, auto_advance, null_columns = engine._bind(tab, name, options, account_settings, p.import_id)
    # every shard reads the file in batches of the same rows (so dates settle as in an unsharded
    # import, and each holds no more than one) and writes its share of each, about 1/count
    size = options.batch_size
    mapping.lookahead = lambda after: engine._read_ahead(tab, size, 0 if start > 0 else after, null_columns)
    failed = engine.FailedRows(p.failed_dir, p.import_id, name, tab.columns, start, part=p.part(k))
    mine = dict.fromkeys(COUNTERS, 0)
    mine["batches"] = 0
    position, batch_at = start, ""

    def prepared() -> Iterator[tuple[Any, Any]]:
        return engine.prepared_batches(
            tab,
            mapping,
            options,
            size=size,
            start_after=start,
            null_columns=null_columns,
            auto_advance=auto_advance,
            account_settings=account_settings,
        )

    try:
        with store.engine.connect() as conn, serialized_batches(conn):
            writer = None
            try:
                for raw, prep in engine.prefetch(prepared):
                    if stop() or past(position + 1):
                        raise Stopped()
                    batch_at = f"rows {position + 1}-{raw.last_row} (shard {k + 1} of {p.count})"
                    of = shard_numbers(prep.table, raw.rows, p.count, options.case_sensitive_keys)
                    rows = raw.rows.to_pylist()
                    row_errors: dict[int, list[tuple[str, str]]] = {}
                    for i, col, reason in prep.errors:
                        if of[i] == k:
                            row_errors.setdefault(rows[i], []).append((col, reason))
                    keep = [s == k and rows[i] not in row_errors for i, s in enumerate(of)]
                    n_mine = sum(1 for s in of if s == k)
                    raw_k = dataclasses.replace(raw, issues=[i for i in raw.issues if i.row % p.count == k])
                    table = prep.table.append_column("row_no", raw.rows).filter(pa.array(keep, pa.bool_()))
                    if writer is None:
                        writer = ImportWriter(
                            conn,
                            entity=options.entity,
                            account_id=p.account_id,
                            import_id=p.import_id,
                            actor=options.actor,
                            columns=[c for c in prep.table.column_names if c != "rnd"],
                            json_spec=prep.json,
                            on_duplicate=options.on_duplicate,
                            duplicate_keys=options.duplicate_keys,
                            create_missing_jobs=options.create_missing_jobs,
                            default_stage=default_stage,
                            form_name=options.form_name,
                            case_sensitive_keys=options.case_sensitive_keys,
                            shard=True,
                        )
                        with conn.begin():
                            writer.create_stage()
                    if table.num_rows:
                        with conn.begin():
                            writer.refresh_statistics()
                    with conn.begin():
                        outcome = writer.write_batch(table) if table.num_rows else None
                        if outcome is not None:
                            for row_no, col, reason in outcome.errors:
                                row_errors.setdefault(row_no, []).append((col, reason))
                        batch = dict.fromkeys(COUNTERS, 0)
                        batch["errors"] = len(row_errors) + len(raw_k.issues)
                        batch["rows_read"] = n_mine + len(raw_k.issues)
                        extra: dict[str, int] = dict(raw.counts) if k == 0 else {}
                        if outcome is not None:
                            batch["created"] = outcome.counts["created"]
                            batch["updated"] = outcome.counts["updated"]
                            batch["skipped"] = outcome.counts["skipped"] + outcome.counts["flagged"]
                            batch["flagged"] = outcome.counts["flagged"]
                            for key, v in outcome.details.items():
                                extra[key] = extra.get(key, 0) + v
                        # the import's counters: every shard adds to them under the row's lock
                        h = conn.execute(
                            sa.select(import_history).where(import_history.c.id == p.import_id).with_for_update()
                        ).one()
                        try:
                            _check_policy(options, name, h, batch, row_errors, raw_k)
                        except Aborted:
                            failed.add(raw_k, row_errors)  # the batch is not written; its bad rows are listed
                            raise
                        details = dict(h.details or {})
                        for key, v in extra.items():
                            details[key] = details.get(key, 0) + v
                        if mapping.dates:
                            details["date_formats"] = date_report(mapping)
                        state = dict(details["shards"])
                        state["committed"] = {**state["committed"], str(k): raw.last_row}
                        details["shards"] = state
                        failed.add(raw_k, row_errors)
                        history.update(
                            conn,
                            p.import_id,
                            details=details,
                            rows_committed=min(state["committed"].values()),
                            **{c: getattr(h, c) + batch[c] for c in COUNTERS},
                        )
                    position, batch_at = raw.last_row, ""
                    for c in COUNTERS:
                        mine[c] += batch[c]
                    mine["batches"] += 1
                    report(dict(mine))
            finally:
                if writer is not None:
                    with contextlib.suppress(Exception), conn.begin():
                        writer.drop_stage()
    except Aborted:
        failed.close()
        raise
    except BaseException as exc:
        failed.close()
        if batch_at:
            add_context(exc, f"the batch at {batch_at}")
        raise
    failed.close()


def _check_policy(options: Any, name: str, h: sa.Row, batch: dict, row_errors: dict, raw: Any) -> None:
    """Raise Aborted when the error policy stops the import at this batch (the threshold over all shards' rows)."""
    if not batch["errors"] or options.error_policy == "skip":
        return
    if options.error_policy == "abort":
        first = min([*row_errors, *(i.row for i in raw.issues)])
        why = row_errors.get(first) or [next((i.column, i.reason) for i in raw.issues if i.row == first)]
        col, reason = why[0]
        where = f", column {col!r}" if col else ""
        raise Aborted(f"{name}: row {first}{where}: {reason} (error_policy abort)", row=first)
    errors, read = h.errors + batch["errors"], h.rows_read + batch["rows_read"]
    if read and errors / read > options.error_threshold:
        raise Aborted(
            f"{name}: {errors} of {read} rows failed, more than the threshold "
            f"{options.error_threshold:.0%} (error_policy threshold); last batch ended at row {raw.last_row}"
        )


def _process(p: Plan, k: int, stop: Any, abort_at: Any, out: Any) -> None:
    """A shard's worker process: write it, then say how it ended on OUT.

    ABORT_AT (shared): the earliest row a shard's `abort` stopped at (0: none yet); this shard
    writes its batches up to it, so the import fails at the file's first bad row whichever shard
    met it first.
    """
    store = RecordStore(p.url, check=False)
    parent = multiprocessing.parent_process()

    def stopping() -> bool:
        # asked to, or the process that started it is gone (killed): a re-run writes the rest
        return stop.is_set() or (parent is not None and not parent.is_alive())

    def past(row: int) -> bool:
        return 0 < abort_at.value < row

    try:
        write_shard(store, p, k, stop=stopping, report=lambda c: out.put(("progress", k, c)), past=past)
        out.put(("end", k, "done", "", None))
    except Stopped:
        # stopped by `past` (another shard aborted at an earlier row), or on request
        out.put(("end", k, "stopped" if stopping() else "past", "", None))
    except Aborted as exc:
        if exc.row is not None:
            with abort_at.get_lock():
                if not 0 < abort_at.value <= exc.row:
                    abort_at.value = exc.row
        out.put(("end", k, "aborted", exc.message, exc.row))
    except BaseException as exc:  # told to the parent, which fails the import
        out.put(("end", k, "failed", describe_error(exc, url=store.engine.url), None))
    finally:
        store.engine.dispose()


def run(
    store: Any,
    p: Plan,
    *,
    on_progress: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Write every shard of P: worker processes on PostgreSQL, one after another on SQLite.

    Raises:
        Stopped: `should_stop` said so; each shard stopped after its committed batches.
        Aborted: the error policy aborted a shard at the earliest bad row of the file (the other
            shards wrote their batches before it, and stopped at the next).
        ShardFailed: a shard failed or its process died, saying which and why.
    """
    from pipelines.imports.engine import ImportProgress

    with store.begin() as conn:
        h = history.row(conn, p.import_id)
    start = {c: getattr(h, c) for c in COUNTERS}
    counts: dict[int, dict[str, int]] = {}

    def progress(k: int, c: dict[str, int]) -> None:
        counts[k] = c
        if on_progress is not None:
            total = {n: start[n] + sum(x[n] for x in counts.values()) for n in COUNTERS}
            batches = sum(x["batches"] for x in counts.values())
            fields = {n: total[n] for n in ("rows_read", "created", "updated", "skipped", "errors")}
            on_progress(ImportProgress(import_id=p.import_id, batches_committed=batches, **fields))

    def stop() -> bool:
        return should_stop is not None and should_stop()

    if store.engine.dialect.name != "postgresql":
        aborted: list[Aborted] = []

        def past(row: int) -> bool:
            return bool(aborted) and row > _first_abort(aborted).row

        for k in range(p.count):
            try:
                write_shard(store, p, k, stop=stop, report=lambda c, k=k: progress(k, c), past=past)
            except Stopped:
                if not aborted:
                    raise
            except Aborted as exc:
                aborted.append(exc)
                if exc.row is None:
                    break
        if aborted:
            raise _first_abort(aborted)
        return
    # two sharded imports of one account take turns: their shards share the account's batch lock
    with account_turn(store, p.account_id):
        _run_processes(p, progress, stop)


@contextlib.contextmanager
def account_turn(store: Any, account_id: uuid.UUID, *, shared: bool = False) -> Iterator[None]:
    """Hold the account's sharded-import lock (PostgreSQL; SQLite has one writer anyway).

    Alone: an import writing all its shards, or the first step of an import whose shards are
    steps (`pipelines/imports/sharded.py`) while it plans them. Shared: one such shard step, so
    the shards of one import write together and an import holding the lock alone waits for them.
    """
    if store.engine.dialect.name != "postgresql":
        yield
        return
    with store.engine.connect() as lock:
        dialect_of(lock).session_lock(lock, SHARDED_IMPORT, str(account_id), shared=shared)
        lock.commit()
        try:
            yield
        finally:
            try:
                dialect_of(lock).session_unlock(lock, SHARDED_IMPORT, str(account_id), shared=shared)
                lock.commit()
            except Exception:
                lock.invalidate()  # never back to the pool holding the lock


def _run_processes(p: Plan, progress: Callable[[int, dict], None], stop: Callable[[], bool]) -> None:
    ctx = multiprocessing.get_context("spawn")
    halt, out, abort_at = ctx.Event(), ctx.Queue(), ctx.Value("q", 0)
    procs = {
        k: ctx.Process(target=_process, args=(p, k, halt, abort_at, out), name=f"import-shard-{k}")
        for k in range(p.count)
    }
    # shard -> how it ended: (kind, message, the row of an abort at a row)
    ended: dict[int, tuple[str, str, int | None]] = {}
    try:
        for proc in procs.values():
            proc.start()
        while len(ended) < p.count:
            try:
                msg = out.get(timeout=0.5)
            except queue.Empty:
                if stop():
                    halt.set()
                for k, proc in procs.items():
                    if k not in ended and not proc.is_alive() and out.empty():
                        # died without a word (killed): the others stop at their next batch
                        ended[k] = ("failed", f"its worker process ended with exit code {proc.exitcode}", None)
                        halt.set()
                continue
            if msg[0] == "progress":
                progress(msg[1], msg[2])
                if stop():
                    halt.set()
            else:
                kind, message, row = msg[2:]
                ended[msg[1]] = (kind, message, row)
                # a stop, a failure or a threshold's abort stops the others; an abort at a row lets
                # them write up to it (`past`)
                if kind in ("stopped", "failed") or (kind == "aborted" and row is None):
                    halt.set()
    finally:
        halt.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs.values():
            if proc.pid is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
                if proc.is_alive():
                    proc.terminate()  # a batch is one transaction: the one it was writing rolls back
                    proc.join()
        out.close()
    outcomes = {kind for kind, _, _ in ended.values()}
    if "aborted" in outcomes:
        raise _first_abort([Aborted(m, row=row) for kind, m, row in ended.values() if kind == "aborted"])
    if "failed" in outcomes:
        k, (_, message, _) = next((k, e) for k, e in sorted(ended.items()) if e[0] == "failed")
        raise ShardFailed(
            f"shard {k + 1} of {p.count} failed: {message}; the committed batches of every shard stay "
            "and a re-run resumes each shard after them"
        )
    if "stopped" in outcomes:
        raise Stopped()


class FailedParts:
    """The failed-rows files of the shards, merged in row order into the import's one file at the end."""

    def __init__(self, p: Plan, columns: list[str]) -> None:
        from pipelines.imports.engine import FailedRows

        self.plan = p
        # rows an unsharded run of this import wrote before it was sharded
        earlier = FailedRows(p.failed_dir, p.import_id, p.name, columns, p.base)
        earlier.close()
        self.parts = [earlier.part, *(p.part(k) for k in range(p.count))]
        self.final, self.header = earlier.final, earlier.header

    def finish(self) -> Path:
        from pipelines.imports.engine import FailedRows

        with FailedRows._writing(self.plan.failed_dir):
            tmp = self.final.with_name(f".{self.final.name}.tmp")
            with contextlib.ExitStack() as files:
                readers = []
                for part in self.parts:
                    if part.exists():
                        reader = csv.reader(files.enter_context(open(part, newline="", encoding="utf-8")))
                        next(reader, None)
                        readers.append(reader)
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    w = csv.writer(f)
                    w.writerow(self.header)
                    w.writerows(heapq.merge(*readers, key=lambda rec: int(rec[0])))
            os.replace(tmp, self.final)
            for part in self.parts:
                part.unlink(missing_ok=True)
        return self.final

    def close(self) -> None:
        """The part files stay: a resumed import appends to them."""
