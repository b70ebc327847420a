"""The import engine: file -> mapping -> validation -> record store, in committed batches.

Public API (the Dagster layer, the sensor and the CLI call only these):
    run_import, rollback_import, list_imports, file_sha256,
    ImportOptions (re-exported), ImportProgress, ImportResult,
    ImportFailed, MappingError, FileFormatError.
Additions to the brief's contract: ImportOptions.force (re-import identical content) and
ImportOptions.form_name; ImportResult.flagged and ImportResult.details.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.imports.errors import FileFormatError, ImportFailed, MappingError
from pipelines.imports.options import ImportOptions

__all__ = [
    "FileFormatError",
    "ImportFailed",
    "ImportOptions",
    "ImportProgress",
    "ImportResult",
    "MappingError",
    "file_sha256",
    "list_imports",
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
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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
) -> ImportResult:
    """Import one file into the account's records (see docs/imports.md)."""
    raise NotImplementedError


def rollback_import(store: Any, account_id: uuid.UUID, import_id: uuid.UUID, *, actor: str) -> dict:
    """Undo an import: delete what it created, restore what it updated, audit both."""
    raise NotImplementedError


def list_imports(store: Any, account_id: uuid.UUID, *, type: str | None = None, limit: int = 50) -> list[dict]:
    """Import history, newest first: seed 002's columns plus id and failed_rows_path."""
    raise NotImplementedError
