"""Tabular files (CSV, Parquet) read as a stream of Arrow batches of strings."""

from connectors.files.reader import FileReadError, RawBatch, RowIssue, TabularFile, detect_encoding, open_tabular, sniff_delimiter

__all__ = ["FileReadError", "RawBatch", "RowIssue", "TabularFile", "detect_encoding", "open_tabular", "sniff_delimiter"]
