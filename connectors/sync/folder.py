"""A folder of CSV or Parquet files (exports another system drops) as a sync source.

Each file is read whole through the importer's reader (`connectors.files`: CSV of any
delimiter and encoding, Parquet, .xlsx, compressed). The incremental position is per file:
(modification time, file name), so a run reads the files written or replaced since the last
completed run, in that order. Only a file's last batch carries the position: a run killed inside
a file reads that file again, and the rows it already wrote are unchanged. Every file must have
the columns of the first (the mapping binds to them).

A sync out (`write_batches`) writes each batch as a new CSV or Parquet file, under a temporary
name renamed when complete: the folder never holds a partial file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from connectors.files import FileReadError, open_tabular
from connectors.sync.base import Batch, Position, SyncSourceError

PATTERNS = ("*.csv", "*.parquet", "*.xlsx", "*.csv.gz", "*.zip")


FORMATS = ("csv", "parquet")


class FolderConnector:
    def __init__(self, path: str, *, key: str, name: str = "files", write_format: str = "csv") -> None:
        self.name = name
        self.folder = Path(path)
        self.key = key
        # what a sync out writes
        self.format = write_format
        if not self.folder.is_dir():
            raise SyncSourceError(f"{name}: no folder {path}", transient=True)
        self._columns: list[str] | None = None

    def _files(self) -> list[tuple[str, str, Path]]:
        found = {p for pattern in PATTERNS for p in self.folder.glob(pattern) if p.is_file()}
        out = []
        for p in found:
            at = datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat()
            out.append((at, p.name, p))
        return sorted(out)

    def _open(self, path: Path):  # type: ignore[no-untyped-def]
        try:
            return open_tabular(path)
        except FileReadError as exc:
            raise SyncSourceError(f"{self.name}: {exc}") from None

    def columns(self) -> list[str]:
        if self._columns is None:
            files = self._files()
            self._columns = self._open(files[0][2]).columns if files else [self.key]
        return self._columns

    def read_batches(self, since: Position | None, batch_size: int) -> Iterator[Batch]:
        columns = self.columns()
        after = None if since is None else (str(since.value), str(since.key))
        for at, name, path in self._files():
            if after is not None and (at, name) <= after:
                continue
            tab = self._open(path)
            if tab.columns != columns:
                raise SyncSourceError(f"{self.name}: {name} has other columns than the folder's first file")
            pending = None
            for raw in tab.batches(batch_size):
                if pending is not None:
                    yield Batch(pending.table, None)
                pending = raw
            if pending is not None:
                yield Batch(pending.table, Position(at, name))

    def read_keys(self, batch_size: int) -> Iterator[list[str]]:
        for _, _, path in self._files():
            for raw in self._open(path).batches(batch_size):
                if self.key in raw.table.column_names:
                    yield [k for k in raw.table.column(self.key).to_pylist() if k is not None]

    def write_batches(self, rows: list[dict[str, Any]], *, batch: str | None = None) -> tuple[int, int]:
        """Write ROWS (column -> value) as one new file of the folder; (rows written, 0).

        The file is written under a temporary name (`.<name>.partial`, which no reader picks up)
        and renamed when complete, so the folder never holds a partial file. BATCH names the file
        (`<connection>-<batch>.csv`): a batch sent again replaces its file instead of adding one.
        """
        if not rows:
            return 0, 0
        columns = list(dict.fromkeys(c for r in rows for c in r))
        table = pa.table({c: pa.array([_cell(r.get(c)) for r in rows], pa.string()) for c in columns})
        stem = f"{self.name}-{batch or datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
        final = self.folder / f"{stem}.{self.format}"
        partial = self.folder / f".{final.name}.partial"
        try:
            if self.format == "parquet":
                pq.write_table(table, partial)
            else:
                pacsv.write_csv(table, partial)
            os.replace(partial, final)
        except OSError as exc:
            raise SyncSourceError(f"{self.name}: writing {final.name} failed: {exc.strerror}", transient=True) from None
        finally:
            partial.unlink(missing_ok=True)
        return len(rows), 0

    def close(self) -> None:
        pass


def _cell(value: Any) -> str | None:
    """A value as the text a file holds (timestamps in ISO 8601)."""
    if value is None:
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)
