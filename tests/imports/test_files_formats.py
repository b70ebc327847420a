"""Files people really send, read by the reader alone: containers, workbooks, refusals, encodings, header shapes, limits."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import random
import zipfile
from datetime import datetime
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.files import FileReadError, open_tabular, reader

CSV = "Email,Name,City\na@example.com,Zoë,Köln\nb@example.com,Bo,Paris\n"


def _rows(f, **kw) -> list[dict]:
    return [r for b in f.batches(100, **kw) for r in b.table.to_pylist()]


def _issues(f, **kw) -> list:
    return [i for b in f.batches(100, **kw) for i in b.issues]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _xlsx(sheets: dict[str, list[list]]) -> bytes:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for r in rows:
            ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "compression"),
    [
        pytest.param(gzip.compress(CSV.encode()), "gzip", id="gzip"),
        pytest.param(bz2.compress(CSV.encode()), "bz2", id="bzip2"),
        pytest.param(lzma.compress(CSV.encode()), "xz", id="xz"),
        pytest.param(_zip({"export/apps.csv": CSV.encode(), "__MACOSX/._apps.csv": b"junk"}), "zip", id="zip-one-file"),
    ],
)
def test_compressed_files_named_csv_are_read_by_their_bytes(tmp_path: Path, content: bytes, compression: str) -> None:
    path = tmp_path / "apps.csv"
    path.write_bytes(content)
    f = open_tabular(path)
    assert (f.format, f.detected["compression"], f.columns) == ("csv", compression, ["Email", "Name", "City"])
    assert _rows(f) == [
        {"Email": "a@example.com", "Name": "Zoë", "City": "Köln"},
        {"Email": "b@example.com", "Name": "Bo", "City": "Paris"},
    ]


def test_a_zip_of_several_files_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "apps.csv"
    path.write_bytes(_zip({"a.csv": CSV.encode(), "b.csv": CSV.encode()}))
    with pytest.raises(FileReadError, match=r"apps\.csv: the zip archive holds 2 files \(a\.csv, b\.csv\)"):
        open_tabular(path)


def test_workbooks_are_read_whatever_their_name_first_sheet_or_named(tmp_path: Path) -> None:
    path = tmp_path / "apps.csv"
    path.write_bytes(
        _xlsx(
            {
                "Applicants": [
                    ["Applicants export"],
                    [],
                    ["Email", "Years", "Applied At", "Active"],
                    ["a@example.com", 3, datetime(2026, 4, 3, 14, 30), True],
                    ["b@example.com", 2.5, datetime(2026, 4, 5), None],
                ],
                "Jobs": [["Code", "Title"], ["ENG-1", "Engineer"]],
            }
        )
    )
    f = open_tabular(path)
    assert (f.format, f.detected["sheet"], f.detected["header_line"], f.columns) == (
        "xlsx",
        "Applicants",
        3,
        ["Email", "Years", "Applied At", "Active"],
    )
    batch = next(f.batches(100))
    assert batch.table.to_pylist() == [
        {"Email": "a@example.com", "Years": "3", "Applied At": "2026-04-03T14:30:00", "Active": "true"},
        {"Email": "b@example.com", "Years": "2.5", "Applied At": "2026-04-05", "Active": ""},
    ]
    assert (batch.rows.to_pylist(), batch.lines.to_pylist()) == ([1, 2], [4, 5])  # line = the sheet's row number
    assert _rows(open_tabular(path, sheet="Jobs")) == [{"Code": "ENG-1", "Title": "Engineer"}]
    with pytest.raises(FileReadError, match=r"no sheet named 'Nope' \(sheets: 'Applicants', 'Jobs'\)"):
        open_tabular(path, sheet="Nope")


def test_a_zipped_workbook_is_read(tmp_path: Path) -> None:
    path = tmp_path / "apps.zip"
    path.write_bytes(_zip({"apps.xlsx": _xlsx({"S": [["Email"], ["a@example.com"]]})}))
    f = open_tabular(path)
    assert (f.format, f.detected["compression"], _rows(f)) == ("xlsx", "zip", [{"Email": "a@example.com"}])


OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 200 + "Workbook".encode("utf-16-le") + b"\x00" * 300


@pytest.mark.parametrize(
    ("content", "what"),
    [
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "this is a PDF document", id="pdf"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40, r"this is an image \(PNG\)", id="png"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40, r"this is an image \(JPEG\)", id="jpeg"),
        pytest.param(OLE2, r"this is an old Excel \.xls workbook.*save it as \.xlsx or CSV", id="xls"),
        pytest.param(b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "this is an HTML page", id="html"),
        pytest.param(
            _zip({"word/document.xml": b"<w/>", "[Content_Types].xml": b"<x/>"}),
            r"this is a Word document \(\.docx\)",
            id="docx",
        ),
        pytest.param(b"Rar!\x1a\x07\x01\x00" + b"\x00" * 40, "this is a RAR archive", id="rar"),
        pytest.param(bytes(range(256)) * 8, "this is binary data", id="binary"),
        # few NULs and control bytes, mostly high bytes: random data, not text in some encoding
        pytest.param(random.Random(7).randbytes(100), "this is binary data", id="random-bytes"),
        pytest.param(gzip.compress(b"%PDF-1.4\n..."), r"the gzip content is a PDF document", id="gzipped-pdf"),
    ],
)
def test_what_cannot_be_read_is_refused_by_what_it_is(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "candidates.csv"
    path.write_bytes(content)
    with pytest.raises(FileReadError, match=rf"^candidates\.csv: {what}"):
        open_tabular(path)


def test_a_parquet_name_on_bytes_that_are_not_parquet_says_so(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    path.write_bytes(random.Random(3).randbytes(3000))
    with pytest.raises(
        FileReadError, match=r"^export\.parquet: not a Parquet file \(a Parquet file starts with PAR1\)"
    ):
        open_tabular(path)


@pytest.mark.parametrize("trailing_newline", [True, False], ids=["newline", "no-newline"])
def test_latin1_byte_in_the_last_row_is_detected(tmp_path: Path, trailing_newline: bool) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"Name,Note\nAnn,plain\nBo,\xa9 2026" + (b"\n" if trailing_newline else b""))
    f = open_tabular(path)
    assert f.encoding == "cp1252" and _rows(f)[-1] == {"Name": "Bo", "Note": "© 2026"}


def test_a_legacy_byte_far_past_the_sample_is_found_by_the_whole_file_scan(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"Name,Note\n" + b"Ann,plain ascii\n" * 20000 + b"Bo,caf\xe9\n")
    f = open_tabular(path)
    assert f.encoding == "cp1252" and _rows(f)[-1]["Note"] == "café" and not _issues(f)


def test_cyrillic_legacy_text_gets_the_detectors_encoding(tmp_path: Path) -> None:
    text = "Имя,Город\n" + "".join(f"Иван Петров {i},Москва и Санкт-Петербург\n" for i in range(30))
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode("cp1251"))
    f = open_tabular(path)
    assert f.columns == ["Имя", "Город"] and _rows(f)[0]["Город"] == "Москва и Санкт-Петербург"


def test_utf8_with_a_few_cp1252_bytes_rejects_just_those_rows_or_decodes_them_with_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes("Name,City\nZoë,Köln\n".encode() + b"Caf\xe9 \xabX\xbb,Paris\n" + "Åsa,Malmö\n".encode())
    f = open_tabular(path)
    assert f.encoding == "utf-8-sig"
    (issue,) = _issues(f)
    assert (issue.row, issue.line, issue.column) == (2, 3, "Name")
    assert r"\xe9\xab" in issue.reason and r"\xbb" in issue.reason and "line 3" in issue.reason
    assert [r["Name"] for r in _rows(f)] == ["Zoë", "Åsa"]
    fixed = open_tabular(path, decode_fallback="cp1252")
    batches = list(fixed.batches(100))
    assert [r["Name"] for b in batches for r in b.table.to_pylist()] == ["Zoë", "Café «X»", "Åsa"]
    assert sum(b.counts.get("rows_decoded_with_fallback", 0) for b in batches) == 1


def test_title_rows_and_comment_preamble_above_the_header_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("#one: line one\n#two: line two\nApplicants export,,\n\nEmail,Name,City\na@example.com,Ann,Oslo\n")
    f = open_tabular(path)
    assert (f.columns, f.detected["header_line"]) == (["Email", "Name", "City"], 5)
    assert f.detected["title_rows"] == ["#one: line one", "#two: line two", "Applicants export"]
    assert _rows(f) == [{"Email": "a@example.com", "Name": "Ann", "City": "Oslo"}]
    lines = [b.lines.to_pylist() for b in f.batches(10)]
    assert lines == [[6]]


def test_skip_rows_and_comment_options(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("Report,2026,final\nEmail,Name,City\n# a note,,\na@example.com,Ann,Oslo\n")
    f = open_tabular(path, skip_rows=1, comment="#")
    assert f.columns == ["Email", "Name", "City"] and _rows(f) == [
        {"Email": "a@example.com", "Name": "Ann", "City": "Oslo"}
    ]
    assert [b.lines.to_pylist() for b in f.batches(10)] == [[4]]


def test_a_header_whose_first_cell_is_hash_stays_the_header(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("#,Email,Name\n1,a@example.com,Ann\n")
    assert open_tabular(path).columns == ["#", "Email", "Name"]


def test_blank_and_duplicate_header_names_are_made_unique_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("Email,Name,,Email, Name \na@x.org,Ann,x,b@x.org,Bo\n")
    f = open_tabular(path)
    assert f.columns == ["Email", "Name", "column_3", "Email_2", "Name_2"]
    assert f.detected["renamed_columns"] == {"column_3": "", "Email_2": "Email", "Name_2": " Name "}


def test_trailing_delimiters_drop_the_empty_last_column_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("Email,Name,\na@x.org,Ann,\nb@x.org,Bo,\nc@x.org,Cy,oops\n")
    f = open_tabular(path)
    assert (f.columns, f.detected["dropped_columns"]) == (["Email", "Name"], [3])
    assert [r["Name"] for r in _rows(f)] == ["Ann", "Bo"]
    (issue,) = _issues(f)
    assert issue.row == 3 and "trailing empty column" in issue.reason


def test_mac_cr_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'Email,Note\ra@x.org,"two\rlines"\rb@x.org,x\r')
    f = open_tabular(path)
    batch = next(f.batches(10))
    assert batch.table.column("Note").to_pylist() == ["two\rlines", "x"] and batch.lines.to_pylist() == [2, 4]


BIG = "x" * 30_001  # a workbook cell holds at most 32,767 characters


def _big_files(tmp_path: Path) -> dict[str, Path]:
    rows = [["a@x.org", "ok"], ["b@x.org", BIG], ["c@x.org", "fine"]]
    csv_path = tmp_path / "big.csv"
    csv_path.write_text("Email,Notes\n" + "".join(f"{e},{n}\n" for e, n in rows))
    pq_path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"Email": [r[0] for r in rows], "Notes": [r[1] for r in rows]}), pq_path)
    xl_path = tmp_path / "big.xlsx"
    xl_path.write_bytes(_xlsx({"S": [["Email", "Notes"], *rows]}))
    return {"csv": csv_path, "parquet": pq_path, "xlsx": xl_path}


@pytest.mark.parametrize("kind", ["csv", "csv-arrow", "parquet", "xlsx"])
def test_a_cell_over_the_limit_rejects_its_row_the_same_on_every_path(tmp_path: Path, monkeypatch, kind: str) -> None:
    monkeypatch.setattr(reader, "ARROW_CSV", kind == "csv-arrow")
    path = _big_files(tmp_path)[kind.split("-")[0]]
    f = open_tabular(path, max_cell_bytes=30_000)
    assert [r["Email"] for r in _rows(f)] == ["a@x.org", "c@x.org"]
    (issue,) = _issues(f)
    assert (issue.row, issue.column) == (2, "Notes")
    assert "30,001 bytes, over the limit of 30,000 bytes per cell (max_cell_bytes)" in issue.reason
    assert [r["Email"] for r in _rows(open_tabular(path))] == ["a@x.org", "b@x.org", "c@x.org"]  # under 128 KiB


def test_the_default_cell_limit_is_128_kib(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("Email,Notes\na@x.org," + "y" * (128 * 1024) + "\nb@x.org," + "z" * (5 * 1024 * 1024) + "\n")
    f = open_tabular(path)
    assert [r["Email"] for r in _rows(f)] == ["a@x.org"]
    assert "5,242,880 bytes, over the limit of 131,072 bytes" in _issues(f)[0].reason


def test_an_unterminated_quote_running_to_the_end_of_a_big_file_rejects_that_row(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('Email,Notes\na@x.org,ok\nb@x.org,"' + "y" * (3 * 1024 * 1024))
    f = open_tabular(path)
    assert [r["Email"] for r in _rows(f)] == ["a@x.org"]
    (issue,) = _issues(f)
    assert issue.row == 2 and "over the limit of 131,072 bytes per cell" in issue.reason


def test_a_row_of_thousands_of_columns_is_read_whole(tmp_path: Path) -> None:
    n = 5_000
    path = tmp_path / "wide.csv"
    header = "Email," + ",".join(f"c{i}" for i in range(n))
    path.write_text(
        header + "\n" + "".join(f"p{r}@x.org," + ",".join(str(i) for i in range(n)) + "\n" for r in range(3))
    )
    rows = _rows(open_tabular(path))
    assert len(rows) == 3 and len(rows[0]) >= n + 1 and rows[2]["c4999"] == "4999"


def test_null_spellings_empty_only_the_columns_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("Email,Phone,Notes\nN/A,-,N/A\n NULL ,none,NULL\nNa@x.org,Na,Na\n")
    f = open_tabular(path)
    rows = _rows(f, null_columns=["Email", "Phone"])
    assert rows == [
        {"Email": "", "Phone": "", "Notes": "N/A"},
        {"Email": "", "Phone": "", "Notes": "NULL"},
        {"Email": "Na@x.org", "Phone": "Na", "Notes": "Na"},
    ]
    custom = open_tabular(path, null_values=("-",))
    assert [r["Email"] for r in _rows(custom, null_columns=["Email", "Phone"])] == ["N/A", " NULL ", "Na@x.org"]


def test_an_undecodable_byte_in_the_header_is_read_with_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"Email,Pr\xe9nom\n" + "a@x.org,Zoë\n".encode())
    f = open_tabular(path)
    assert (f.encoding, f.columns, f.detected["header_decoded_as"]) == ("utf-8-sig", ["Email", "Prénom"], "cp1252")
    assert _rows(f) == [{"Email": "a@x.org", "Prénom": "Zoë"}]


def test_parquet_and_workbooks_inside_gzip_or_zip_are_spooled_and_read(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"Email": ["a@x.org"], "Years": [3]}), buf)
    zipped = tmp_path / "a.csv"
    zipped.write_bytes(_zip({"data/a.parquet": buf.getvalue()}))
    f = open_tabular(zipped)
    assert (f.format, f.detected["compression"], _rows(f)) == ("parquet", "zip", [{"Email": "a@x.org", "Years": "3"}])
    gz = tmp_path / "b.csv"
    gz.write_bytes(gzip.compress(_xlsx({"S": [["Email"], ["b@x.org"]]})))
    g = open_tabular(gz)
    assert (g.format, g.detected["compression"], _rows(g)) == ("xlsx", "gzip", [{"Email": "b@x.org"}])
    spooled = g.source.path
    assert spooled.exists()
    del g
    import gc

    gc.collect()
    assert not spooled.exists()  # the temporary copy goes with the reader


def test_one_western_byte_after_long_ascii_lines_is_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"Name,Note\n" + (b"Ann," + b"x" * 2000 + b"\n") * 600 + b"Bo,caf\xe9\n")
    f = open_tabular(path)
    assert f.encoding == "cp1252" and _rows(f)[-1]["Note"] == "café"
