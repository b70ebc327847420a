"""Tabular files (CSV, Parquet, .xlsx; gzip, bzip2, xz or zipped) read as a stream of Arrow batches of strings."""

from connectors.files.formats import Source, UnreadableFile, identify
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
