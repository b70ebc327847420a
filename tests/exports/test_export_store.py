"""Exports on the record store (SQLite and PostgreSQL): every filter kind, every format read back field by
field, spreadsheet safety, no partial file, tenancy."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from connectors.files import writers
from connectors.files.csvsafe import is_formula
from connectors.store import schema
from connectors.store.export import (
    ExportError,
    ExportSpec,
    FilterError,
    copy,
    export,
    file_name,
    make_filter,
    name_pattern,
    parse_columns,
    parse_condition,
    prune,
)
from tests.exports.conftest import Dataset
from tests.faults import skip_unless

COLUMNS = "id,external_id,stage,status,source,applied_at,candidate_email,candidate_first_name,job_code,job_title,tags"


def _ids(ds: Dataset, tmp_path: Path, *where: str, include_deleted: bool = False) -> set[str]:
    spec = ExportSpec(
        "applications",
        ds.account_id,
        make_filter(where, include_deleted=include_deleted),
        tuple(parse_columns("id")),
    )
    result = export(ds.store.engine, spec, tmp_path / f"{uuid.uuid4().hex}.csv")
    with open(result.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert result.rows == len(rows)
    return {r["id"] for r in rows}


def _expect(ds: Dataset, pred, *, include_deleted: bool = False) -> set[str]:
    return {str(a["id"]) for a in ds.apps.values() if (include_deleted or a["deleted_at"] is None) and pred(a)}


def _job_code(ds: Dataset, a: dict) -> str | None:
    return ds.jobs[a["job_id"]]["code"] if a["job_id"] else None


FILTERS = {
    "equality": (["stage=review"], lambda ds, a: a["stage"] == "review"),
    "inequality": (["stage!=review"], lambda ds, a: a["stage"] != "review"),
    "status": (["status=on_hold"], lambda ds, a: a["status"] == "on_hold"),
    "in list": (["stage in review, offer"], lambda ds, a: a["stage"] in ("review", "offer")),
    "not in list": (["stage not in review,offer"], lambda ds, a: a["stage"] not in ("review", "offer")),
    "empty": (["source="], lambda ds, a: a["source"] is None),
    "set": (["source!="], lambda ds, a: a["source"] is not None),
    "contains, any case": (["source~linked"], lambda ds, a: "linkedin" in (a["source"] or "").lower()),
    "contains a wildcard character literally": (["source~%"], lambda ds, a: "%" in (a["source"] or "")),
    "date from": (
        ["applied_at>=2026-01-05"],
        lambda ds, a: a["applied_at"] is not None and a["applied_at"] >= datetime(2026, 1, 5, tzinfo=UTC),
    ),
    "date range, whole last day": (
        ["applied_at>=2026-01-03", "applied_at<=2026-01-06"],
        lambda ds, a: a["applied_at"] is not None and 3 <= a["applied_at"].day <= 6,
    ),
    "date after a day": (
        ["applied_at>2026-01-06"],
        lambda ds, a: a["applied_at"] is not None and a["applied_at"].day > 6,
    ),
    "on a day": (["applied_at=2026-01-04"], lambda ds, a: a["applied_at"] is not None and a["applied_at"].day == 4),
    "timestamp before": (
        ["applied_at<2026-01-04T09:30:00Z"],
        lambda ds, a: a["applied_at"] is not None and a["applied_at"].day < 4,
    ),
    "job shorthand": (["job=ENG-1"], lambda ds, a: _job_code(ds, a) == "ENG-1"),
    "job title contains": (["job_title~opér"], lambda ds, a: _job_code(ds, a) == "OPS-2"),
    "candidate email": (
        ["candidate_email=c4@example.com"],
        lambda ds, a: ds.candidates[a["candidate_id"]]["email"] == "c4@example.com",
    ),
    "tag": (["tags=urgent"], lambda ds, a: "urgent" in ds.tags.get(a["id"], [])),
    "any of tags": (["tags in urgent,vip"], lambda ds, a: bool(ds.tags.get(a["id"]))),
    "without tag": (["tags!=vip"], lambda ds, a: "vip" not in ds.tags.get(a["id"], [])),
    "untagged": (["tags="], lambda ds, a: not ds.tags.get(a["id"])),
    "several together": (
        ["stage in review,interview", "applied_at>=2026-01-02", "job=OPS-2"],
        lambda ds, a: (
            a["stage"] in ("review", "interview")
            and a["applied_at"] is not None
            and a["applied_at"].day >= 2
            and _job_code(ds, a) == "OPS-2"
        ),
    ),
    "external id equality on a registry field": (["external_id=A5"], lambda ds, a: a["external_id"] == "A5"),
}


@pytest.mark.parametrize("kind", list(FILTERS))
def test_every_filter_kind_selects_exactly_its_records(dataset: Dataset, tmp_path: Path, kind: str) -> None:
    where, pred = FILTERS[kind]
    expected = _expect(dataset, lambda a: pred(dataset, a))
    assert expected, f"{kind}: the dataset must hold matching records"
    assert _ids(dataset, tmp_path, *where) == expected


def test_deleted_records_only_on_request(dataset: Dataset, tmp_path: Path) -> None:
    assert _ids(dataset, tmp_path) == _expect(dataset, lambda a: True)
    everything = _ids(dataset, tmp_path, include_deleted=True)
    assert everything == {str(i) for i in dataset.apps}
    assert len(everything) == len(_expect(dataset, lambda a: True)) + 1


def test_typed_conditions_equal_their_text() -> None:
    typed = make_filter(
        [
            {"field": "stage", "op": "in", "value": ["review", "offer"]},
            {"field": "applied_at", "op": ">=", "value": "2026-01-01"},
        ]
    )
    text = make_filter(["stage in review,offer", "applied_at>=2026-01-01"])
    assert typed == text
    assert (
        text.words("applications")
        == "applications where stage is one of review, offer and applied_at on or after 2026-01-01"
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["colour=red"], "unknown field 'colour' for applications: choose one of id,"),
        (
            ["account_id=00000000-0000-0000-0000-000000000000"],
            "unknown field 'account_id' for applications (the export's account",
        ),
        (["stage>review"], "filter on 'stage': > applies to timestamps and numbers, not text"),
        (["applied_at>=soon"], "filter on 'applied_at': 'soon' is not a date"),
        (["id=42"], "filter on 'id': '42' is not a uuid value"),
        (["applied_at~2026"], "`~` (contains) applies to text fields, not datetime"),
        (["data=x"], "a JSON field cannot be filtered on"),
        ([{"field": "stage", "op": "like", "value": "x"}], "unknown operator 'like'"),
        (["stage"], "filter 'stage' is not FIELD OP VALUE"),
    ],
)
def test_a_bad_filter_is_one_line_naming_it(dataset: Dataset, tmp_path: Path, where, message: str) -> None:
    with pytest.raises(FilterError) as err:
        export(
            dataset.store.engine, ExportSpec("applications", dataset.account_id, make_filter(where)), tmp_path / "x.csv"
        )
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_column_is_refused(dataset: Dataset, tmp_path: Path) -> None:
    spec = ExportSpec("applications", dataset.account_id, columns=tuple(parse_columns("id,colour")))
    with pytest.raises(FilterError, match="column 'colour': unknown field 'colour'"):
        export(dataset.store.engine, spec, tmp_path / "x.csv")


def _expected_rows(ds: Dataset) -> dict[str, dict]:
    out = {}
    for a in ds.apps.values():
        if a["deleted_at"] is not None:
            continue
        cand = ds.candidates[a["candidate_id"]]
        job = ds.jobs.get(a["job_id"]) or {}
        out[str(a["id"])] = {
            "id": str(a["id"]),
            "external_id": a["external_id"],
            "stage": a["stage"],
            "status": a["status"],
            "source": a["source"],
            "applied_at": a["applied_at"],
            "candidate_email": cand["email"],
            "candidate_first_name": cand["first_name"],
            "job_code": job.get("code"),
            "job_title": job.get("title"),
            "tags": ", ".join(ds.tags[a["id"]]) if a["id"] in ds.tags else None,
        }
    return out


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def test_csv_reads_back_field_by_field_without_escaping(dataset: Dataset, tmp_path: Path) -> None:
    spec = ExportSpec("applications", dataset.account_id, columns=tuple(parse_columns(COLUMNS)), escape=False)
    result = export(dataset.store.engine, spec, tmp_path / "a.csv")
    with open(result.path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    expected = _expected_rows(dataset)
    assert result.rows == len(rows) == len(expected)
    for row in rows:
        want = expected[row["id"]]
        for name, value in want.items():
            text = _iso(value) if name == "applied_at" else ("" if value is None else value)
            assert row[name] == text, (name, row[name], text)


def test_csv_neutralises_formulas_by_default_and_writes_a_bom_on_request(dataset: Dataset, tmp_path: Path) -> None:
    spec = ExportSpec(
        "applications",
        dataset.account_id,
        columns=tuple(parse_columns("id,source,candidate_first_name:=name")),
        bom=True,
    )
    result = export(dataset.store.engine, spec, tmp_path / "a.csv")
    raw = result.path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with open(result.path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header == ["id", "source", "'=name"]
    expected = _expected_rows(dataset)
    seen_payloads = 0
    for row in rows:
        for name, cell in zip(("source", "candidate_first_name"), row[1:], strict=True):
            original = expected[row[0]][name] or ""
            assert not is_formula(cell), cell
            if is_formula(original):
                seen_payloads += 1
                assert cell == "'" + original
            else:
                assert cell == original
    assert seen_payloads >= 4
    assert "-5" in {r[1] for r in rows} | {r[2] for r in rows}  # a plain number is left as it is


def test_parquet_reads_back_typed(dataset: Dataset, tmp_path: Path) -> None:
    spec = ExportSpec(
        "applications",
        dataset.account_id,
        columns=tuple(parse_columns(COLUMNS + ",data")),
        format="parquet",
        batch_rows=5,
    )
    result = export(dataset.store.engine, spec, tmp_path / "a.parquet")
    table = pq.read_table(result.path)
    assert str(table.schema.field("applied_at").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("tags").type) == "list<element: string>"
    rows = table.to_pylist()
    expected = _expected_rows(dataset)
    assert result.rows == len(rows) == len(expected)
    for row in rows:
        want = expected[row["id"]]
        # tags: a list, sorted; untagged: an empty list
        want["tags"] = dataset.tags.get(uuid.UUID(row["id"]), [])
        for name, value in want.items():
            assert row[name] == value, (name, row[name], value)
        assert json.loads(row["data"]) == {"note": dataset.apps[uuid.UUID(row["id"])]["data"]["note"]}


def test_parquet_in_many_blocks_and_row_groups_reads_back_the_same(
    dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COPY's stream (PostgreSQL) or the cursor's batches (SQLite) parsed a few rows at a time (each block
    ending at a row's end, text with line breaks and quotes included) and written in many row groups hold
    the same rows as one block and one row group."""
    spec = ExportSpec(
        "applications", dataset.account_id, columns=tuple(parse_columns(COLUMNS)), format="parquet", batch_rows=3
    )
    whole = pq.read_table(export(dataset.store.engine, spec, tmp_path / "whole.parquet").path)
    monkeypatch.setattr(copy, "CHUNK_BYTES", 200)
    monkeypatch.setattr(writers, "ROW_GROUP_BYTES", 1000)
    result = export(dataset.store.engine, spec, tmp_path / "parts.parquet")
    parts = pq.ParquetFile(result.path)
    assert parts.metadata.num_row_groups > 1
    assert sorted(parts.read().to_pylist(), key=lambda r: r["id"]) == sorted(whole.to_pylist(), key=lambda r: r["id"])
    assert len(whole) == result.rows == len(_expected_rows(dataset))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_tags_are_a_list_in_parquet_and_one_text_elsewhere(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    """A tag holding the text form's separator stays one tag in Parquet; a tag that starts like a formula
    is neutralised in CSV like any other cell."""
    app = next(a for a in dataset.apps.values() if a["id"] in dataset.tags and a["deleted_at"] is None)
    extra = ["=1+1", "Paris, France"]
    with dataset.store.begin() as conn:
        conn.execute(
            sa.insert(schema.tags),
            [
                {"account_id": dataset.account_id, "entity_type": "applications", "entity_id": app["id"], "tag": t}
                for t in extra
            ],
        )
    tags = sorted(dataset.tags[app["id"]] + extra)
    spec = ExportSpec(
        "applications", dataset.account_id, columns=tuple(parse_columns("id,tags")), format=fmt, batch_rows=3
    )
    result = export(dataset.store.engine, spec, tmp_path / f"a.{fmt}")
    if fmt == "parquet":
        got = {r["id"]: r["tags"] for r in pq.read_table(result.path).to_pylist()}
        want = {r: dataset.tags.get(uuid.UUID(r), []) for r in got} | {str(app["id"]): tags}
    elif fmt == "csv":
        with open(result.path, newline="", encoding="utf-8") as f:
            got = {r["id"]: r["tags"] for r in csv.DictReader(f)}
        want = {r: ", ".join(dataset.tags.get(uuid.UUID(r), [])) for r in got} | {str(app["id"]): "'" + ", ".join(tags)}
    else:
        sheet = openpyxl.load_workbook(result.path, read_only=True).worksheets[0]
        got = {r[0]: r[1] for r in sheet.iter_rows(min_row=2, values_only=True)}
        want = {r: ", ".join(dataset.tags.get(uuid.UUID(r), [])) or None for r in got} | {
            str(app["id"]): ", ".join(tags)
        }
    assert got == want
    assert len(got) == result.rows == len(_expected_rows(dataset))


def test_xlsx_reads_back_with_text_cells_never_formulas(dataset: Dataset, tmp_path: Path) -> None:
    spec = ExportSpec("applications", dataset.account_id, columns=tuple(parse_columns(COLUMNS)), format="xlsx")
    result = export(dataset.store.engine, spec, tmp_path / "a.xlsx")
    book = openpyxl.load_workbook(result.path)
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    assert header == COLUMNS.split(",")
    expected = _expected_rows(dataset)
    payloads = 0
    for cells in sheet.iter_rows(min_row=2):
        row = dict(zip(header, cells, strict=True))
        want = expected[row["id"].value]
        for name, value in want.items():
            cell = row[name]
            assert cell.data_type != "f", (name, cell.value)
            if name == "applied_at":
                assert cell.value == (None if value is None else value.replace(tzinfo=None))
            else:
                # a carriage return is stored as the OOXML escape _x000D_, which Excel reads back and openpyxl does not
                got = cell.value.replace("_x000D_", "\r") if isinstance(cell.value, str) else cell.value
                assert got == value, (name, cell.value, value)
            if is_formula(value):
                payloads += 1
                assert cell.data_type == "s"
    assert payloads >= 4
    assert sheet.max_row - 1 == result.rows == len(expected)


def test_xlsx_splits_sheets_past_the_row_limit(dataset: Dataset, tmp_path: Path) -> None:
    spec = ExportSpec(
        "applications", dataset.account_id, columns=tuple(parse_columns("id")), format="xlsx", sheet_rows=4
    )
    result = export(dataset.store.engine, spec, tmp_path / "a.xlsx")
    book = openpyxl.load_workbook(result.path)
    # 3 data rows and the header per sheet
    assert result.sheets == len(book.worksheets) == -(-result.rows // 3)
    ids = [c.value for ws in book.worksheets for (c,) in ws.iter_rows(min_row=2)]
    assert all(ws.cell(1, 1).value == "id" for ws in book.worksheets)
    assert sorted(ids) == sorted(_expected_rows(dataset))


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_a_cancelled_export_leaves_no_file(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    class Cancelled(BaseException):
        pass

    def cancel(rows: int) -> None:
        raise Cancelled

    spec = ExportSpec("applications", dataset.account_id, format=fmt, batch_rows=2)
    with pytest.raises(Cancelled):
        export(dataset.store.engine, spec, tmp_path / f"a.{fmt}", on_batch=cancel)
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def _mounted(folder: Path, options: str):
    """A tmpfs at FOLDER with OPTIONS (root only), unmounted afterwards."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    skip_unless(done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextlib.contextmanager
def _read_only(folder: Path):
    if os.geteuid() == 0:
        # root writes through permissions: a read-only file system refuses it too
        with _mounted(folder, "ro,size=64k"):
            yield folder
        return
    folder.mkdir()
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def test_a_read_only_folder_fails_clearly_with_no_file(dataset: Dataset, tmp_path: Path) -> None:
    with _read_only(tmp_path / "ro") as folder:
        with pytest.raises(ExportError, match=r"cannot write to the export folder .*ro: permission denied"):
            export(dataset.store.engine, ExportSpec("applications", dataset.account_id), folder / "a.csv")
        assert list(folder.iterdir()) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_a_full_tmpfs_fails_clearly_with_no_file(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    skip_unless(os.geteuid() == 0, "mounting a tmpfs needs root")
    with _mounted(tmp_path / "small", "size=64k") as folder:
        filler = folder / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.close(fd)
        with pytest.raises(ExportError, match="No space left on device; no file was left"):
            export(
                dataset.store.engine, ExportSpec("applications", dataset.account_id, format=fmt), folder / f"a.{fmt}"
            )
        assert [p.name for p in folder.iterdir()] == ["filler"]


def test_a_full_disk_fails_clearly_with_no_file(dataset: Dataset, tmp_path: Path) -> None:
    skip_unless(Path("/dev/full").exists(), "no /dev/full")
    # every write to /dev/full fails with ENOSPC: the writer fails as on a full disk
    from connectors.files import writers

    class FullDisk(writers.CsvWriter):
        def __init__(self, path, headers, kinds, **kw):
            super().__init__(path, headers, kinds, **kw)
            self._file.close()
            self._file = open("/dev/full", "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = __import__("csv").writer(self._file)

    original = writers.WRITERS["csv"]
    writers.WRITERS["csv"] = FullDisk
    try:
        with pytest.raises(ExportError, match="No space left on device; no file was left"):
            export(
                dataset.store.engine, ExportSpec("applications", dataset.account_id, batch_rows=1), tmp_path / "a.csv"
            )
    finally:
        writers.WRITERS["csv"] = original
    assert list(tmp_path.iterdir()) == []


def test_an_export_holds_its_account_records_only(dataset: Dataset, tmp_path: Path) -> None:
    # the other account has the same job codes: joins and filters stay in the account
    ids = _ids(dataset, tmp_path, "job=ENG-1")
    assert ids == _expect(dataset, lambda a: _job_code(dataset, a) == "ENG-1")
    everything = _ids(dataset, tmp_path, include_deleted=True)
    assert everything == {str(i) for i in dataset.apps}


def test_a_related_record_of_another_account_is_never_joined(dataset: Dataset, tmp_path: Path) -> None:
    # an application pointing (wrongly) at another account's job and candidate shows neither
    from connectors.store import schema

    with dataset.store.engine.connect() as conn:
        job = conn.execute(sa.select(schema.jobs).where(schema.jobs.c.account_id == dataset.other_account_id)).first()
        user = conn.execute(
            sa.select(schema.users).where(schema.users.c.account_id == dataset.other_account_id)
        ).first()
    app_id = uuid.uuid4()
    with dataset.store.begin() as conn:
        conn.execute(
            schema.applications.insert().values(
                id=app_id, account_id=dataset.account_id, candidate_id=user.id, job_id=job.id, external_id="X-1"
            )
        )
    spec = ExportSpec(
        "applications",
        dataset.account_id,
        make_filter(["external_id=X-1"]),
        tuple(parse_columns("id,job_code,job_title,candidate_email")),
        escape=False,
    )
    result = export(dataset.store.engine, spec, tmp_path / "x.csv")
    assert result.path.read_text(encoding="utf-8").splitlines()[1] == f"{app_id},,,"
    assert _ids(dataset, tmp_path, f"job_code={job.code}", "external_id=X-1") == set()


@pytest.mark.parametrize("entity", ["candidates", "jobs", "contracts", "contacts"])
def test_every_registry_entity_exports_with_its_defaults(dataset: Dataset, tmp_path: Path, entity: str) -> None:
    result = export(dataset.store.engine, ExportSpec(entity, dataset.account_id), tmp_path / "e.csv")
    expected = {"candidates": 12, "contacts": 12, "jobs": 2, "contracts": 0}[entity]
    assert result.rows == expected
    assert "id" in result.headers and "account_id" not in result.headers


def test_file_names_and_retention(tmp_path: Path) -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert file_name("{preset}-{date}", "xlsx", now=now, preset="weekly") == "weekly-2026-03-04.xlsx"
    with pytest.raises(ExportError, match=r"unknown field \{when\}"):
        file_name("{when}", "csv")
    with pytest.raises(ExportError, match="without folders"):
        file_name("../{entity}", "csv", entity="jobs")
    pattern = name_pattern("{preset}-{date}", "csv", preset="weekly")
    assert pattern == "weekly-*.csv"
    paths = []
    for day in range(1, 6):
        p = tmp_path / file_name("{preset}-{date}", "csv", now=now.replace(day=day), preset="weekly")
        p.write_text("x")
        os.utime(p, ns=(time.time_ns(), day * 10**9))
        paths.append(p)
    keep = tmp_path / "other.csv"
    keep.write_text("not ours")
    gone = prune(tmp_path, pattern, keep=2)
    assert sorted(gone) == paths[:3]
    assert sorted(tmp_path.iterdir()) == sorted([*paths[3:], keep])


def test_text_conditions_parse() -> None:
    assert parse_condition("applied_at >= 2026-01-01").op == ">="
    assert parse_condition("stage IN a, b").value == ["a", "b"]
    assert parse_condition("source~a=b").value == "a=b"


@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx"])
def test_the_preview_is_the_files_first_rows_as_text(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    spec = ExportSpec(
        "applications",
        dataset.account_id,
        columns=tuple(parse_columns("id,source,applied_at,tags")),
        format=fmt,
        preview_rows=50,
    )
    result = export(dataset.store.engine, spec, tmp_path / f"a.{fmt}")
    expected = _expected_rows(dataset)
    assert len(result.preview) == len(expected) == result.rows
    assert sum(is_formula(expected[row["id"]]["source"]) for row in result.preview) >= 1
    for row in result.preview:
        want = expected[row["id"]]
        assert row["applied_at"] == _iso(want["applied_at"])
        assert row["tags"] == (want["tags"] or "")
        source = want["source"] or ""
        # CSV shows the cell as written (neutralised); the other formats hold the value itself
        assert row["source"] == ("'" + source if fmt == "csv" and is_formula(source) else source)
