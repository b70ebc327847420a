"""Files people really send, imported end to end on SQLite and PostgreSQL: the rows that land, the history that says how."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile

import openpyxl
import pyarrow as pa
import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines.imports.engine import (
    FileFormatError,
    ImportOptions,
    list_imports,
    run_import,
)
from pipelines.imports.mapping import normalize_header
from pipelines.imports.validation import json_objects
from tests.imports.helpers import count, rows


def _failed(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _history_details(store, import_id) -> dict:
    h = schema.import_history
    with store.engine.connect() as c:
        return dict(c.execute(sa.select(h.c.details).where(h.c.id == import_id)).scalar() or {})


def _people(n: int, bad_line: int | None = None) -> bytes:
    """A UTF-8 candidates file of n rows (accented names); the row on `bad_line` holds cp1252 bytes."""
    out = [b"Email,First Name,Last Name,City"]
    for i in range(1, n + 1):
        line = len(out) + 1
        if line == bad_line:
            out.append(f"p{i}@example.com,Ren".encode() + b"\xe9e,Caf\xe9,Montr\xe9al")
        else:
            out.append(f"p{i}@example.com,Zoë,Müller,Köln".encode())
    return b"\n".join(out) + b"\n"


def test_undecodable_bytes_reject_one_row_and_the_import_goes_on(store, account, tmp_path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(_people(3000, bad_line=2902))
    r = run_import(
        store, account, path, ImportOptions(entity="candidates", batch_size=1000), failed_rows_dir=tmp_path / "failed"
    )
    assert (r.status, r.created, r.errors, r.rows_read) == ("completed", 2999, 1, 3000)
    assert count(store, "users", account) == 2999
    (bad,) = _failed(r.failed_rows_path)
    assert (bad["_row"], bad["_line"], bad["_column"]) == ("2901", "2902", "First Name")
    assert r"cannot decode byte(s) \xe9 as utf-8 in 'Ren\xe9e'" in bad["_error"] and "line 2902" in bad["_error"]
    assert r"Caf\xe9" in bad["_raw"]
    assert r.details["file"]["encoding"] == "utf-8-sig"


def test_undecodable_bytes_decode_with_the_fallback_when_asked(store, account, tmp_path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(_people(3000, bad_line=2902))
    opts = ImportOptions(entity="candidates", batch_size=1000, decode_fallback="cp1252")
    r = run_import(store, account, path, opts, failed_rows_dir=tmp_path / "failed")
    assert (r.status, r.created, r.errors) == ("completed", 3000, 0)
    user = next(
        u for u in rows(store, "users", account, "email_normalized") if u.email_normalized == "p2901@example.com"
    )
    assert (user.first_name, user.last_name, user.data["city"]) == ("Renée", "Café", "Montréal")
    assert _history_details(store, r.import_id)["rows_decoded_with_fallback"] == 1


def test_a_latin1_file_with_one_byte_in_its_last_row_imports_and_says_which_encoding(store, account, tmp_path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"Email,First Name,Notes\na@example.com,Ann,plain\nb@example.com,Bo,\xa9 2026 Bo")
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 2, 0)
    assert [u.data["notes"] for u in rows(store, "users", account, "email_normalized")] == ["plain", "© 2026 Bo"]
    assert _history_details(store, r.import_id)["file"]["encoding"] == "cp1252"


def _csv_bytes(text: str) -> bytes:
    return text.encode("utf-8")


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _xlsx(rows_: list[list]) -> bytes:
    wb = openpyxl.Workbook()
    for r in rows_:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


JOBS = "Code,Title,Location\nENG-1,Engineer,Oslo\nENG-2,Designer,Paris\n"


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        pytest.param(gzip.compress(JOBS.encode()), {"format": "csv", "compression": "gzip"}, id="gzip"),
        pytest.param(
            _zip({"jobs.csv": JOBS.encode()}), {"format": "csv", "compression": "zip", "member": "jobs.csv"}, id="zip"
        ),
        pytest.param(
            _xlsx(
                [
                    ["Jobs of 2026"],
                    ["Code", "Title", "Location"],
                    ["ENG-1", "Engineer", "Oslo"],
                    ["ENG-2", "Designer", "Paris"],
                ]
            ),
            {"format": "xlsx", "sheet": "Sheet", "header_line": 2},
            id="xlsx",
        ),
    ],
)
def test_compressed_files_and_workbooks_named_csv_import(
    store, account, tmp_path, content: bytes, expect: dict
) -> None:
    path = tmp_path / "jobs.csv"
    path.write_bytes(content)
    r = run_import(store, account, path, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 2, 0)
    assert [(j.code, j.title, j.location) for j in rows(store, "jobs", account, "code")] == [
        ("ENG-1", "Engineer", "Oslo"),
        ("ENG-2", "Designer", "Paris"),
    ]
    assert expect.items() <= _history_details(store, r.import_id)["file"].items()


def test_a_pdf_named_csv_is_refused_by_name_in_the_history(store, account, tmp_path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    with pytest.raises(FileFormatError, match=r"^jobs\.csv: this is a PDF document"):
        run_import(store, account, path, ImportOptions(entity="jobs"), failed_rows_dir=tmp_path)
    (h,) = list_imports(store, account)
    assert h["status"] == "failed" and h["error_message"].startswith("jobs.csv: this is a PDF document")


def test_ten_thousand_columns_land_in_data(store, account, tmp_path) -> None:
    extra = [f"Q{i}" for i in range(1, 10_000)]
    path = tmp_path / "wide.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Email", *extra])
        w.writerow(["a@example.com", *(f"v{i}" for i in range(1, 10_000))])
        w.writerow(["b@example.com", *("" if i % 2 else f"w{i}" for i in range(1, 10_000))])
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 2, 0)
    a, b = rows(store, "users", account, "email_normalized")
    assert a.data == {f"q{i}": f"v{i}" for i in range(1, 10_000)}
    assert b.data == {f"q{i}": f"w{i}" for i in range(2, 10_000, 2)}


TRICKY = [
    'say "hi"',
    "back\\slash",
    "two\nlines",
    "tab\there",
    "bell\x07",
    "emoji 🎉 ünï",
    "",
    "  padded  ",
    '{"json": 1}',
    "C:\\path\\",
]


def test_extra_data_keeps_every_value_as_written(store, account, tmp_path) -> None:
    # the record's data before packing: each unmapped column under its normalised header, blanks left out
    path = tmp_path / "apps.csv"
    header = ["Application ID", "Email", "Job Code", *(f"Extra {i}" for i in range(len(TRICKY))), "extra-0"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerow(["A-1", "a@example.com", "ENG-1", *TRICKY, "last wins"])
    r = run_import(store, account, path, ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 1, 0)
    expected = {normalize_header(f"Extra {i}"): v.strip() for i, v in enumerate(TRICKY) if v.strip()}
    expected["extra_0"] = "last wins"
    (app,) = rows(store, "applications", account)
    assert app.data == expected
    (form,) = rows(store, "form_submissions", account, "submitted_at")
    assert form.answers == expected
    with store.engine.connect() as c:
        after = c.execute(
            sa.select(schema.audit_log.c.after).where(
                schema.audit_log.c.entity_type == "applications", schema.audit_log.c.change_set_id == r.import_id
            )
        ).scalar()
    after = json.loads(after) if isinstance(after, str) else after
    assert after["data"] == expected


def test_header_shapes_import_and_are_reported(store, account, tmp_path) -> None:
    path = tmp_path / "candidates.csv"
    path.write_bytes(
        b"#one: line one\r#two: line two\rCandidates export,,,,\r\r"
        b"Email,First Name,,Email,Notes,\r"
        b'a@example.com,Ann,x,a2@example.com,"two\rlines",\r'
        b"b@example.com,Bo,,,plain,\r"
    )
    dry = run_import(store, account, path, ImportOptions(entity="candidates", dry_run=True), failed_rows_dir=tmp_path)
    read = dry.details["file"]
    assert read["header_line"] == 5 and read["title_rows"] == ["#one: line one", "#two: line two", "Candidates export"]
    assert read["renamed_columns"] == {"column_3": "", "Email_2": "Email"} and read["dropped_columns"] == [6]
    assert count(store, "users", account) == 0
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 2, 0)
    ann, bo = rows(store, "users", account, "email_normalized")
    assert (ann.first_name, ann.data) == ("Ann", {"column_3": "x", "email_2": "a2@example.com", "notes": "two\rlines"})
    assert (bo.first_name, bo.data) == ("Bo", {"notes": "plain"})
    assert _history_details(store, r.import_id)["file"]["renamed_columns"] == {"column_3": "", "Email_2": "Email"}


def test_skip_rows_and_comment_options_import(store, account, tmp_path) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text("Export,by,admin,2026\nEmail,First Name,Last Name,Notes\n# reviewed,,,\na@example.com,Ann,Lee,ok\n")
    r = run_import(
        store, account, path, ImportOptions(entity="candidates", skip_rows=1, comment="#"), failed_rows_dir=tmp_path
    )
    assert (r.status, r.created, r.errors) == ("completed", 1, 0)
    assert [(u.first_name, u.data) for u in rows(store, "users", account, "email_normalized")] == [
        ("Ann", {"notes": "ok"})
    ]


def test_a_cell_over_the_limit_rejects_its_row_naming_column_and_size(store, account, tmp_path) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text(
        "Email,Notes\na@example.com,short\nb@example.com," + "n" * (5 * 1024 * 1024) + "\nc@example.com,fine\n"
    )
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 2, 1)
    (bad,) = _failed(r.failed_rows_path)
    assert (bad["_row"], bad["_line"], bad["_column"]) == ("2", "3", "Notes")
    assert "5,242,880 bytes, over the limit of 131,072 bytes per cell" in bad["_error"] and len(bad["_raw"]) < 1000
    bigger = run_import(
        store,
        account,
        path,
        ImportOptions(entity="candidates", force=True, max_cell_bytes=6 << 20),
        failed_rows_dir=tmp_path,
    )
    assert (bigger.errors, count(store, "users", account)) == (0, 3)


def test_null_spellings_are_empty_in_mapped_fields_and_kept_in_data(store, account, tmp_path) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text("Email,First Name,Phone,Notes\nN/A,Ann,-,x\na@example.com,NULL,N/A,N/A\nb@example.com,Bo,none,-\n")
    r = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    assert (r.status, r.created, r.errors) == ("completed", 2, 1)
    (bad,) = _failed(r.failed_rows_path)
    assert (bad["_row"], bad["_column"], bad["_error"]) == ("1", "email", "email is required and this row has none")
    a, b = rows(store, "users", account, "email_normalized")
    assert (a.first_name, a.phone, a.data) == (None, None, {"notes": "N/A"})
    assert (b.first_name, b.phone, b.data) == ("Bo", None, {"notes": "-"})


def test_packed_json_objects_equal_the_values_for_any_text() -> None:
    import random

    import pyarrow as pa

    from pipelines.imports.validation import json_objects

    rnd = random.Random(3)
    alphabet = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x01", "\x1f", "é", "🎉", "a", " ", "/", "\u2028"]
    cols = {
        f"k{i}": [
            None if rnd.random() < 0.2 else "".join(rnd.choices(alphabet, k=rnd.randint(0, 8))) for _ in range(300)
        ]
        for i in range(150)
    }
    out = json_objects([(k, pa.array(v, pa.string())) for k, v in cols.items()], 300).to_pylist()
    for i, text in enumerate(out):
        assert json.loads(text) == {k: v[i] for k, v in cols.items() if v[i] is not None}


def test_abort_on_an_undecodable_row_names_file_row_and_column(store, account, tmp_path) -> None:
    from pipelines.imports.engine import ImportFailed

    path = tmp_path / "people.csv"
    path.write_bytes(_people(30, bad_line=12))
    with pytest.raises(
        ImportFailed, match=r"^people\.csv: row 11, column 'First Name': line 12: cannot decode byte\(s\) \\xe9"
    ):
        run_import(
            store,
            account,
            path,
            ImportOptions(entity="candidates", error_policy="abort", batch_size=5),
            failed_rows_dir=tmp_path,
        )
    assert count(store, "users", account) == 10  # the batches before it stay committed


@pytest.mark.parametrize("extra_columns", [1, 2, 150], ids=["one", "two", "many"])
def test_rows_whose_unmapped_cells_are_all_empty_keep_their_place(extra_columns: int) -> None:
    # pyarrow's join with null_handling="skip" dropped such rows, and the batch failed on its length
    items = [(f"k{i}", pa.array(["v", None, None, "w"])) for i in range(extra_columns)]
    objects = [json.loads(v) for v in json_objects(items, 4).to_pylist()]
    assert [len(o) for o in objects] == [extra_columns, 0, 0, extra_columns]
