"""A folder of CSV or Parquet files (exports another system drops) as a sync source.

Each file is read whole through the importer's reader (`connectors.files`: CSV of any
delimiter and encoding, Parquet, .xlsx, compressed). The incremental position is per file:
(modification time, file name), so a run reads the files written or replaced since the last
completed run, in that order. Only a file's last batch carries the position: a run killed inside
a file reads that file again, and the rows it already wrote are unchanged. Every file must have
the columns of the first (the mapping binds to them).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from connectors.files import FileReadError, open_tabular
from connectors.sync.base import Batch, Position, SyncSourceError

PATTERNS = ("*.csv", "*.parquet", "*.xlsx", "*.csv.gz", "*.zip")


class FolderConnector:
    def __init__(self, path: str, *, key: str, name: str = "files") -> None:
        self.name = name
        self.folder = Path(path)
        self.key = key
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

    def close(self) -> None:
        pass
