"""Exports: an account's records of any registry entity, filtered, streamed into CSV, Parquet or .xlsx.

- `filters`: the filter language (also the selection of bulk operations by filter);
- `fields`: what an entity's export can select and filter on, from the registry and the schema;
- `query`: the SELECT (related fields joined, account always in the WHERE) and its streaming;
- `run`: one export, written under a temporary name and renamed when complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.store.export.fields import UnknownField, catalog
from connectors.store.export.filters import Condition, Filter, FilterError, condition_from, make_filter, parse_condition
from connectors.store.export.query import Column, build_query, parse_columns, stream_rows

if TYPE_CHECKING:
    from connectors.store.export.run import (
        DEFAULT_NAME,
        ExportError,
        ExportResult,
        ExportSpec,
        export,
        file_name,
        name_pattern,
        prune,
    )

# `run` (and the file writers, with Arrow) loads on first use: bulk jobs select records by the
# filter language without importing the writers
_RUN = frozenset(
    {"DEFAULT_NAME", "ExportError", "ExportResult", "ExportSpec", "export", "file_name", "name_pattern", "prune"}
)


def __getattr__(name: str) -> Any:
    if name in _RUN:
        from connectors.store.export import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_NAME",
    "Column",
    "Condition",
    "ExportError",
    "ExportResult",
    "ExportSpec",
    "Filter",
    "FilterError",
    "UnknownField",
    "build_query",
    "catalog",
    "condition_from",
    "export",
    "file_name",
    "make_filter",
    "name_pattern",
    "parse_columns",
    "parse_condition",
    "prune",
    "stream_rows",
]
