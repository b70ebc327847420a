"""Statistics of bulk operations, computed in SQL from the change sets, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from connectors.store import RecordStore, stats
from tests.monitoring.helpers import NOW, add_bulk_job, add_import, add_rollback, slug


def _stats(store: RecordStore, account: uuid.UUID, **kw) -> stats.Stats:
    with store.engine.connect() as conn:
        return stats.operation_stats(conn, account_id=account, now=NOW, **kw)


@pytest.mark.slow
def test_counts_rates_durations_and_records_per_kind_and_account(store: RecordStore, account: uuid.UUID) -> None:
    # twenty imports of 1..20 s: mean 10.5 s, nearest-rank p95 19 s
    for s in range(1, 21):
        add_import(store, account, seconds=float(s), created=3)
    add_import(store, account, status="failed", seconds=100.0, created=1, errors=2)
    add_import(store, account, status="processing", seconds=None, created=7)
    # started before the window: only its being in progress counts
    add_import(store, account, status="processing", started=timedelta(days=30), seconds=None, created=1000)
    add_import(store, account, started=timedelta(days=30), seconds=1.0, created=1000)
    add_bulk_job(store, account, seconds=40.0, processed=10, failed=4)
    add_bulk_job(store, account, status="failed", seconds=60.0, processed=2, failed=2)
    add_bulk_job(store, account, status="pending", mode="preview", seconds=None, processed=0)
    imp = add_import(store, account, status="rolled_back", seconds=5.0, created=4)
    add_rollback(store, account, imp, seconds=3.0)

    result = _stats(store, account, since=timedelta(days=7))

    by_op = {row["operation"]: row for row in result.groups["by_operation"]}
    imports = by_op["import"]
    assert (imports["in_progress"], imports["succeeded"], imports["failed"]) == (2, 21, 1)
    # 20 imports 1..20 s, one of 5 s (rolled back, it succeeded), one failed at 100 s
    durations = sorted([*range(1, 21), 5, 100])
    assert imports["mean_seconds"] == pytest.approx(sum(durations) / 22, abs=0.01)
    assert imports["p95_seconds"] == pytest.approx(durations[-(-95 * 22 // 100) - 1], abs=0.01)
    assert imports["success_rate"] == pytest.approx(21 / 22, abs=1e-4)
    assert imports["records"] == 20 * 3 + 3 + 7 + 4
    assert imports["failed_records"] == 2
    assert imports["records_per_day"] == pytest.approx(imports["records"] / 7, abs=0.01)
    bulk = by_op["bulk_job.status_update"]
    assert (bulk["succeeded"], bulk["failed"], bulk["waiting"], bulk["in_progress"]) == (1, 1, 1, 0)
    assert (bulk["records"], bulk["failed_records"], bulk["success_rate"]) == (12, 6, 0.5)
    assert bulk["mean_seconds"] == pytest.approx(50.0, abs=0.01)
    assert bulk["p95_seconds"] == pytest.approx(60.0, abs=0.01)
    rollback = by_op["rollback"]
    assert (rollback["succeeded"], rollback["records"]) == (1, 5)
    assert rollback["mean_seconds"] == pytest.approx(3.0, abs=0.01)
    # the per-kind-and-account rows are this account's, the total adds every kind up
    assert {row["account"] for row in result.groups["by_operation_and_account"]} == {slug(store, account)}
    total = result.groups["total"]
    assert total["succeeded"] == 21 + 1 + 1 and total["failed"] == 2 and total["in_progress"] == 2


def test_the_window_and_the_account_narrow_what_is_counted(store: RecordStore, account: uuid.UUID) -> None:
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    add_import(store, account, started=timedelta(hours=2), created=5)
    add_import(store, account, started=timedelta(days=2), created=50)
    add_import(store, other, started=timedelta(hours=2), created=500)

    day = _stats(store, account, since=timedelta(days=1))
    week = _stats(store, account, since=timedelta(days=7))

    assert day.groups["total"]["records"] == 5 and day.groups["total"]["succeeded"] == 1
    assert week.groups["total"]["records"] == 55 and week.groups["total"]["succeeded"] == 2
    assert day.groups["total"]["records_per_day"] == 5.0
    assert day.account == slug(store, account)


def test_an_account_without_operations_has_zero_counts_and_no_rates(store: RecordStore, account: uuid.UUID) -> None:
    total = _stats(store, account).groups["total"]
    assert total["succeeded"] == total["in_progress"] == total["records"] == 0
    assert total["success_rate"] is None and total["mean_seconds"] is None and total["p95_seconds"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_windows_are_read_from_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert stats.parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "-1d", "0d", "7y"])
def test_a_bad_window_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match="7d"):
        stats.parse_window(text)


@pytest.mark.slow
def test_a_real_rollback_and_a_document_import_count_their_records(
    store: RecordStore, account: uuid.UUID, tmp_path
) -> None:
    from connectors.store import changes
    from pipelines.imports.engine import ImportOptions, rollback_import, run_import

    path = tmp_path / "people.csv"
    path.write_text("Email,First Name\na@example.com,A\nb@example.com,B\nc@example.com,C\n")
    imported = run_import(store, account, path, ImportOptions(entity="candidates"), failed_rows_dir=tmp_path)
    rollback_import(store, account, imported.import_id, actor="test")
    with store.begin() as conn:
        doc = changes.open_change_set(conn, account_id=account, kind="document_import")
        changes.finish_change_set(conn, doc, status="failed", counts={"records": 7, "failed": 2})

    with store.engine.connect() as conn:
        result = stats.operation_stats(conn, account_id=account)

    by_op = {row["operation"]: row for row in result.groups["by_operation"]}
    assert (by_op["import"]["records"], by_op["import"]["succeeded"]) == (3, 1)
    assert (by_op["rollback"]["records"], by_op["rollback"]["succeeded"]) == (3, 1)
    assert (by_op["document_import"]["records"], by_op["document_import"]["failed_records"]) == (7, 2)
    assert by_op["document_import"]["failed"] == 1
