"""Tabular files (CSV, Parquet, .xlsx; gzip, bzip2, xz or zipped) read as a stream of Arrow batches of strings.

The reader and its names load on first use (module `__getattr__`): code that only writes CSV or
asks what kind a file is does not import Arrow, and neither does a run worker that never reads one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.files.formats import Source, UnreadableFile, identify

if TYPE_CHECKING:
    from connectors.files.reader import (
        MAX_CELL_BYTES,
        NULL_VALUES,
        FileReadError,
        RawBatch,
        RowIssue,
        TabularFile,
        detect_encoding,
        open_tabular,
        sniff_delimiter,
    )

_READER = frozenset(
    {
        "MAX_CELL_BYTES",
        "NULL_VALUES",
        "FileReadError",
        "RawBatch",
        "RowIssue",
        "TabularFile",
        "detect_encoding",
        "open_tabular",
        "sniff_delimiter",
    }
)


def __getattr__(name: str) -> Any:
    if name in _READER:
        from connectors.files import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MAX_CELL_BYTES",
    "NULL_VALUES",
    "FileReadError",
    "RawBatch",
    "RowIssue",
    "Source",
    "TabularFile",
    "UnreadableFile",
    "detect_encoding",
    "identify",
    "open_tabular",
    "sniff_delimiter",
]
