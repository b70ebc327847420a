"""Dates: human formats by default, day/month order from the whole column, ambiguity named."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipelines.imports.engine import ImportOptions, run_import
from pipelines.imports.mapping import DateColumn, parse_datetimes
from tests.imports.helpers import rows, write

HEADER = "Application ID,Email,Job Code,Applied At\n"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected", "label"),
    [
        ("2026-04-05T14:30:00Z", _utc(2026, 4, 5, 14, 30), "ISO 8601"),
        ("2026-04-05 14:30", _utc(2026, 4, 5, 14, 30), "ISO 8601"),
        ("April 5, 2026", _utc(2026, 4, 5), "Month D, YYYY"),
        ("april 5th, 2026", _utc(2026, 4, 5), "Month D, YYYY"),
        ("Sunday, April 5, 2026", _utc(2026, 4, 5), "Month D, YYYY"),
        ("Apr 5, 2026 2:30 PM", _utc(2026, 4, 5, 14, 30), "Month D, YYYY"),
        ("5 Apr 2026", _utc(2026, 4, 5), "D Month YYYY"),
        ("05 April 2026 14:30", _utc(2026, 4, 5, 14, 30), "D Month YYYY"),
        ("2026/04/05", _utc(2026, 4, 5), "YYYY/MM/DD"),
        ("2026/04/05 14:30", _utc(2026, 4, 5, 14, 30), "YYYY/MM/DD"),
        ("Sun, 05 Apr 2026 14:30:00 +0200", _utc(2026, 4, 5, 12, 30), "RFC 2822"),
        ("Sun, 05 Apr 2026 14:30:00 GMT", _utc(2026, 4, 5, 14, 30), "RFC 2822"),
        ("46117", _utc(2026, 4, 5), "Excel serial date"),
        ("46117.604166667", _utc(2026, 4, 5, 14, 30), "Excel serial date"),
        ("05/05/2026", _utc(2026, 5, 5), "NN/NN/YYYY"),
    ],
)
def test_unambiguous_formats_parse_by_default(value: str, expected: datetime, label: str) -> None:
    col = DateColumn("When")
    out, ambiguous = parse_datetimes(pa.array([value]), (), "UTC", col)
    assert out[0].as_py() == expected and not ambiguous[0].as_py()
    assert col.used == {label}


@pytest.mark.parametrize("value", ["12345", "99999", "2026-13-45", "April 31, 2026", "yesterday", "1/2/26"])
def test_implausible_values_stay_unparsed(value: str) -> None:
    out, ambiguous = parse_datetimes(pa.array([value]), (), "UTC", DateColumn("When"))
    assert out[0].as_py() is None and not ambiguous[0].as_py()


def _file(tmp_path, dates: list[str]):
    return write(tmp_path / "apps.csv", HEADER + "".join(f'A-{i},a{i}@x.io,ENG-1,"{d}"\n' for i, d in enumerate(dates)))


def _applied(store, account) -> dict:
    return {
        a.external_id: a.applied_at.replace(tzinfo=UTC) if a.applied_at.tzinfo is None else a.applied_at
        for a in rows(store, "applications", account)
    }


@pytest.mark.parametrize(
    ("settler", "order", "first"),
    [
        ("13/04/2026 09:00", "day first", _utc(2026, 3, 4, 14, 30)),
        ("04/13/2026 09:00", "month first", _utc(2026, 4, 3, 14, 30)),
    ],
    ids=["day-first", "month-first"],
)
def test_the_whole_column_settles_the_day_month_order_before_the_first_batch(
    store, account, tmp_path, settler, order, first
) -> None:
    # the settling value is in the last batch; the first batches are written in its order
    dates = ["04/03/2026 14:30", "01/02/2026 08:00", "05/06/2026 10:00", "April 5, 2026", "2026-04-05", settler]
    r = run_import(store, account, _file(tmp_path, dates), ImportOptions(batch_size=2), failed_rows_dir=tmp_path)
    assert (r.created, r.errors) == (6, 0)
    assert _applied(store, account)["A-0"] == first
    said = r.details["date_formats"]["Applied At"]
    assert f"read {order}" in said and "settled by row 6" in said and "Month D, YYYY" in said and "ISO 8601" in said


def test_an_ambiguous_column_rejects_its_ambiguous_rows_and_asks_for_a_format(store, account, tmp_path) -> None:
    dates = ["04/03/2026 14:30", "05/05/2026", "April 5, 2026"]
    dry = run_import(store, account, _file(tmp_path, dates), ImportOptions(dry_run=True), failed_rows_dir=tmp_path)
    assert (
        "ambiguous" in dry.details["date_formats"]["Applied At"]
        and "set format:" in dry.details["date_formats"]["Applied At"]
    )

    r = run_import(store, account, _file(tmp_path, dates), ImportOptions(), failed_rows_dir=tmp_path)
    assert (r.created, r.errors) == (2, 1)
    with open(r.failed_rows_path, newline="") as f:
        [bad] = list(csv.DictReader(f))
    assert (bad["_row"], bad["_column"]) == ("1", "Applied At")
    assert bad["_error"].startswith(
        "'04/03/2026 14:30' could be day/month or month/day and no value of column 'Applied At' settles it: "
        'set format: "%d/%m/%Y %H:%M"'
    )

    # the format asked for settles it
    mapping = {
        "columns": {
            "Application ID": "external_id",
            "Email": "email",
            "Job Code": "job_code",
            "Applied At": {"target": "applied_at", "formats": ["%m/%d/%Y %H:%M", "%m/%d/%Y", "%B %d, %Y"]},
        }
    }
    r = run_import(
        store, account, _file(tmp_path, dates), ImportOptions(mapping=mapping, force=True), failed_rows_dir=tmp_path
    )
    assert (r.errors, _applied(store, account)["A-0"]) == (0, _utc(2026, 4, 3, 14, 30))


def test_values_against_the_settled_order_are_rejected_by_name(store, account, tmp_path) -> None:
    r = run_import(
        store, account, _file(tmp_path, ["13/04/2026", "04/13/2026"]), ImportOptions(), failed_rows_dir=tmp_path
    )
    assert (r.created, r.errors) == (1, 1)
    with open(r.failed_rows_path, newline="") as f:
        [bad] = list(csv.DictReader(f))
    assert bad["_error"].startswith("cannot read '04/13/2026' as a date: write it as ISO 8601")
    assert "values in the other order were rejected" in r.details["date_formats"]["Applied At"]


@pytest.mark.parametrize(
    ("first_batch", "reads_ahead", "order"),
    [
        (["2026-04-05", "April 5, 2026"], False, None),
        (["13/04/2026", "04/03/2026"], False, "dmy"),
        (["04/03/2026", "05/05/2026"], True, "mdy"),
    ],
    ids=["no-nn-values", "settled-at-once", "ambiguous-reads-ahead"],
)
def test_the_file_is_read_ahead_only_when_a_batch_needs_an_order(first_batch, reads_ahead, order) -> None:
    from pipelines.imports.mapping import apply_mapping, bind_mapping

    m = bind_mapping(None, ["Email", "Applied At"], "applications")
    calls: list[int] = []

    class Raw:
        table = pa.table({"Email": ["x@x.io"], "Applied At": ["01/20/2026"]})
        rows = pa.array([7], pa.int64())

    def lookahead(after: int):
        calls.append(after)
        yield Raw()

    m.lookahead = lookahead
    table = pa.table({"Email": ["a@x.io", "b@x.io"], "Applied At": first_batch})
    apply_mapping(m, table, pa.array([1, 2], pa.int64()))
    assert (calls == [2]) is reads_ahead and m.dates["Applied At"].order == order


@pytest.mark.parametrize(
    ("values", "order"),
    [
        (["31/31/2026", "13/04/2026"], "dmy"),
        (["31/31/2026", "04/13/2026"], "mdy"),
        (["00/13/2026", "32/01/2026", "05/05/2026"], None),
    ],
    ids=["impossible-then-day-first", "impossible-then-month-first", "only-impossible"],
)
def test_only_a_possible_date_settles_the_order(values: list[str], order: str | None) -> None:
    column = DateColumn("Applied At")
    column.observe(pa.array(values), pa.array(range(1, len(values) + 1), pa.int64()))
    assert column.order == order
