"""CSV reading: whatever delimiter, quoting, encoding and line ending a file was written with, the
reader gives back the cells that were written, on the Arrow path and the Python path alike."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.files.reader import open_tabular

pytestmark = pytest.mark.slow

# any character but NUL and lone surrogates; cells may hold delimiters, quotes and line breaks
CELL = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
NAME = st.from_regex(r"[A-Za-z][A-Za-z0-9 _]{0,10}[A-Za-z0-9]", fullmatch=True)
DIALECT = st.fixed_dictionaries(
    {
        "delimiter": st.sampled_from([",", ";", "\t", "|"]),
        "quote_all": st.booleans(),
        "lineterminator": st.sampled_from(["\n", "\r\n", "\r"]),
    }
)
ENCODING = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252"])


@st.composite
def tables(draw: st.DrawFn, cell: st.SearchStrategy[str] = CELL) -> tuple[list[str], list[list[str]]]:
    header = draw(st.lists(NAME, min_size=2, max_size=5, unique_by=str.lower))
    # the first cell is the row's id: every row has one, as a real file's key column does
    rows = draw(
        st.lists(
            st.lists(cell, min_size=len(header) - 1, max_size=len(header) - 1),
            min_size=1,
            max_size=8,
        )
    )
    return header, [[f"r{i}", *cells] for i, cells in enumerate(rows)]


def _write(path: Path, header: list[str], rows: list[list[str]], dialect: dict, encoding: str) -> None:
    # by hand: the csv module leaves a line break that is not its own line terminator unquoted
    d = dialect["delimiter"]

    def cell(c: str) -> str:
        quoted = dialect["quote_all"] or any(ch in c for ch in (d, '"', "\r", "\n"))
        return '"' + c.replace('"', '""') + '"' if quoted else c

    text = "".join(d.join(cell(c) for c in r) + dialect["lineterminator"] for r in [header, *rows])
    path.write_bytes(text.encode(encoding))


def _read(path: Path, **options: object) -> tuple[list[str], list[list[str]]]:
    f = open_tabular(path, **options)
    got: list[list[str]] = []
    for batch in f.batches(3):
        assert not batch.issues, batch.issues
        for row in batch.table.to_pylist():
            got.append([row[c] or "" for c in f.columns])
    return f.columns, got


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


@given(tables(), DIALECT, ENCODING)
def test_the_cells_written_are_the_cells_read_with_the_dialect_given(
    table: tuple[list[str], list[list[str]]], dialect: dict, encoding: str
) -> None:
    header, rows = table
    if not all(_encodable(c, encoding) for r in rows for c in r):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        _write(path, header, rows, dialect, encoding)
        columns, got = _read(path, encoding=encoding, delimiter=dialect["delimiter"])
    assert columns == header
    assert got == rows


# control characters other than tab and line breaks make a short file look binary: detection is allowed to say so
TEXT_CELL = st.text(st.characters(exclude_categories=("Cs", "Cc"), include_characters="\t\r\n"), max_size=12)


@given(tables(TEXT_CELL), DIALECT, st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_the_delimiter_and_a_unicode_encoding_are_detected(
    table: tuple[list[str], list[list[str]]], dialect: dict, encoding: str
) -> None:
    header, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        _write(path, header, rows, dialect, encoding)
        columns, got = _read(path)
    assert columns == header
    assert got == rows
