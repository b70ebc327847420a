"""The interface every sync connector implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa


class SyncSourceError(Exception):
    """The external system failed or refused (after the connector's own retries); the message
    names the connection's system, never its secrets. `transient`: it may answer later (down,
    unreachable, overloaded), so the run is worth retrying."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Position:
    """Where an incremental read stands: the cursor value and the key of the last row read.

    The next read starts after (value, key): rows with a greater cursor, or an equal cursor and a
    greater key. `value` and `key` are JSON-able (ISO text for timestamps).
    """

    value: Any
    key: Any

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "key": self.key}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Position | None:
        if not data:
            return None
        return cls(data.get("value"), data.get("key"))


@dataclass
class Batch:
    """Rows read from a source: text columns, and the position after its last row."""

    table: pa.Table
    last: Position | None


class Connector(Protocol):
    """A source and/or target of a sync."""

    def columns(self) -> list[str]:
        """The source's column (field) names, as the mapping binds them."""
        ...

    def read_batches(self, since: Position | None, batch_size: int) -> Iterator[Batch]:
        """The rows changed after SINCE (all rows when None), in (cursor, key) order."""
        ...

    def read_keys(self, batch_size: int) -> Iterator[list[str]]:
        """Every key the source holds now (for delete handling), in batches."""
        ...

    def write_batches(self, rows: list[dict[str, Any]], *, batch: str | None = None) -> tuple[int, int]:
        """Write ROWS (column -> value) to the system (a sync out); (inserted, updated).

        BATCH names the batch (the run and its number): a batch sent again after a resume is
        recognised where the system allows (a folder replaces the batch's file, an API gets the
        same Idempotency-Key, a database upserts by key).
        """
        ...

    def close(self) -> None: ...


def jsonable(value: Any) -> Any:
    """A cursor or key value as JSON holds it (timestamps as ISO 8601 text)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def text_table(columns: list[str], rows: list[tuple]) -> pa.Table:
    """ROWS as an Arrow table of text columns (timestamps in ISO 8601, NULL kept)."""
    import pyarrow as pa  # here: the sync definitions load with every run worker, Arrow only where rows are read

    arrays = []
    for values in zip(*rows, strict=True) if rows else [() for _ in columns]:
        arrays.append(_text_array(list(values)))
    return pa.table(arrays, names=columns)


def _text_array(values: list[Any]) -> pa.Array:
    # Arrow converts and casts a column at once; Python per value only for what it cannot type
    import pyarrow as pa

    try:
        arr = pa.array(values)
        if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            return pa.array([None if v is None else v.isoformat() for v in values], pa.string())
        return arr if pa.types.is_string(arr.type) else arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
