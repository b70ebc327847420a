"""The streaming reader on real files: encodings, delimiters, quoted newlines, ragged, empty."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.files import FileReadError, open_tabular

TEXT = 'Name;City\nZoë Müller;Köln\n"Café, ""Le""\nBistro";Paris\n'


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [
        pytest.param("utf-8", "utf-8-sig", id="utf8"),
        pytest.param("utf-8-sig", "utf-8-sig", id="utf8-bom"),
        pytest.param("utf-16", "utf-16", id="utf16-bom"),
        pytest.param("cp1252", "cp1252", id="cp1252"),
    ],
)
def test_encodings_are_detected(tmp_path: Path, encoding: str, expected: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(TEXT.encode(encoding))
    f = open_tabular(path)
    assert (f.encoding, f.delimiter, f.columns) == (expected, ";", ["Name", "City"])
    (batch,) = list(f.batches(100))
    assert batch.table.column("Name").to_pylist() == ["Zoë Müller", 'Café, "Le"\nBistro']
    assert batch.rows.to_pylist() == [1, 2] and batch.lines.to_pylist() == [2, 3]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_delimiters_are_sniffed(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        delimiter.join(["a", "b", "c"]) + "\n" + delimiter.join(["1", "2,5" if delimiter != "," else "2", "3"]) + "\n"
    )
    f = open_tabular(path)
    assert f.delimiter == delimiter and f.columns == ["a", "b", "c"]


def test_ragged_rows_are_reported_with_numbers(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('a,b,c\n1,2,3\n"x\ny",2\n4,5,6,,\n7,8,9,10\n\n11,12,13\n')
    f = open_tabular(path)
    batches = list(f.batches(2))
    good = [r for b in batches for r in b.rows.to_pylist()]
    issues = [(i.row, i.line, i.reason) for b in batches for i in b.issues]
    assert good == [1, 3, 5]
    assert issues == [(2, 3, "expected 3 columns, found 2"), (4, 6, "expected 3 columns, found 4")]
    assert batches[-1].last_row == 5


def test_resume_skips_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a\n" + "".join(f"{i}\n" for i in range(1, 11)))
    (batch,) = list(open_tabular(path).batches(100, start_after=7))
    assert batch.table.column("a").to_pylist() == ["8", "9", "10"]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"], ids=["zero-bytes", "blank-lines", "bom-only"])
def test_empty_files_are_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    with pytest.raises(FileReadError, match="empty"):
        open_tabular(path)


def test_header_only_file_has_no_batches(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b\n")
    f = open_tabular(path)
    assert f.columns == ["a", "b"] and list(f.batches(10)) == []


def test_parquet_streams_batches_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"Email": ["a@x.org", "b@x.org", "c@x.org"], "Years": [1, 2, 3]}), path, row_group_size=2)
    batches = list(open_tabular(path).batches(2, start_after=1))
    assert [b.table.column("Years").to_pylist() for b in batches] == [["2"], ["3"]] or [
        v for b in batches for v in b.table.column("Years").to_pylist()
    ] == ["2", "3"]
    assert [r for b in batches for r in b.rows.to_pylist()] == [2, 3]


def test_a_parquet_file_with_a_corrupt_row_group_names_the_file_and_the_last_good_row(tmp_path: Path) -> None:
    path = tmp_path / "damaged.parquet"
    emails = [f"c{i}@x.org" for i in range(200)]
    pq.write_table(pa.table({"Email": emails}), path, row_group_size=100, compression="none")
    second = pq.ParquetFile(path).metadata.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    # the second row group's column chunk overwritten: its page header no longer parses
    start = second.dictionary_page_offset or second.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    batches = open_tabular(path).batches(100)
    assert next(batches).table.column("Email").to_pylist() == emails[:100]
    with pytest.raises(FileReadError) as err:
        next(batches)
    assert str(err.value).startswith("damaged.parquet: cannot read parquet data after row 100:")


def test_undecodable_bytes_reject_their_row_with_the_exact_line(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n" + b"x,y\n" * 30000 + b"\xff\xfe\xfa,1\n" + b"z,2\n")
    f = open_tabular(path, encoding="utf-8")
    batches = list(f.batches(1000))
    issues = [i for b in batches for i in b.issues]
    assert [(i.row, i.line, i.column) for i in issues] == [(30001, 30002, "a")]
    assert "\\xff\\xfe\\xfa" in issues[0].reason and "line 30002" in issues[0].reason
    assert sum(b.num_rows for b in batches) == 30001 and batches[-1].last_row == 30002
