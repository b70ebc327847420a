"""CSV files people open in a spreadsheet: cells that would run as formulas are neutralised.

A cell starting with `=`, `+`, `-`, `@`, tab, carriage return or `|` is a formula (or a DDE
payload) to Excel, LibreOffice and Google Sheets (OWASP "CSV injection"). Such a cell is written
with a `'` in front, so the spreadsheet shows it as text. Plain numbers (`-5`, `+1.5e3`) are left
alone: a spreadsheet reads them as numbers, nothing runs.

The original stays recoverable: every file written by `SafeCsvWriter` ends with a column
`_original` holding, for the cells of that row it changed, a JSON object `{column: original}`
(empty when it changed none). `restore_row` gives the original row back.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from typing import IO, Any

TRIGGERS = frozenset("=+-@\t\r|")
ORIGINAL_COLUMN = "_original"
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def is_formula(value: Any) -> bool:
    """True for a string a spreadsheet would evaluate: it starts with a trigger and is not a plain number."""
    return isinstance(value, str) and value[:1] in TRIGGERS and _NUMBER.fullmatch(value) is None


def neutralise(value: Any) -> Any:
    """`value` with a `'` in front when it is a formula; anything else unchanged."""
    return "'" + value if is_formula(value) else value


def neutralise_row(header: Sequence[str], values: Sequence[Any]) -> tuple[list[Any], str]:
    """The row with its formula cells neutralised, and the `_original` cell for it.

    Args:
        header: the column names of `values`, position for position.
        values: one row's cells.

    Returns:
        (cells, original): `original` is "" when no cell changed, else a JSON object of the
        changed cells' original values by column name.
    """
    changed: dict[str, str] = {}
    cells = list(values)
    for i, value in enumerate(cells):
        if is_formula(value):
            changed[header[i] if i < len(header) else str(i)] = value
            cells[i] = "'" + value
    return cells, (json.dumps(changed, ensure_ascii=False) if changed else "")


def restore_row(header: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """A row read back from a `SafeCsvWriter` file as {column: original value}, `_original` applied."""
    row = dict(zip(header, values, strict=False))
    original = row.pop(ORIGINAL_COLUMN, "")
    if original:
        row.update(json.loads(original))
    return row


class SafeCsvWriter:
    """A `csv.writer` that neutralises formula cells and appends the `_original` column.

    Args:
        f: a text file opened with `newline=""` (or any object with `write`).
        header: the column names; the file's header row is `header + ["_original"]`.
        write_header: False when appending to a file that has its header already.
        **fmtparams: passed to `csv.writer` (e.g. `lineterminator="\\n"`).
    """

    def __init__(self, f: IO[str], header: Sequence[str], *, write_header: bool = True, **fmtparams: Any) -> None:
        self.header = list(header)
        self._writer = csv.writer(f, **fmtparams)
        if write_header:
            self._writer.writerow([*self.header, ORIGINAL_COLUMN])

    def writerow(self, values: Sequence[Any]) -> None:
        self.writerows((values,))

    def writerows(self, rows: Iterable[Sequence[Any]]) -> None:
        write = self._writer.writerow
        for values in rows:
            # the common case (no cell starts with a trigger) costs one pass and no copy
            if any(type(v) is str and v[:1] in TRIGGERS for v in values):
                cells, original = neutralise_row(self.header, values)
                write([*cells, original])
            else:
                write([*values, ""])
