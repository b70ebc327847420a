"""The import history's queries (connectors/store/history.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from connectors.store import RecordStore, history, schema

# the content of each test's imports: its own (moving a file's rows is not account-scoped)
SHA = uuid.uuid4().hex * 2


def _add(store: RecordStore, account: uuid.UUID, *, status: str, minutes: int, **values) -> uuid.UUID:
    import_id = uuid.uuid4()
    with store.begin() as conn:
        history.insert(
            conn,
            id=import_id,
            account_id=account,
            type=values.pop("type", "applications"),
            file="a.csv",
            source_path=f"/drop/{account}.csv",
            content_sha256=values.pop("sha", SHA),
            status=status,
            started_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
            **values,
        )
    return import_id


def test_the_newest_completed_and_the_newest_resumable_import_of_the_same_content(store, account) -> None:
    _add(store, account, status="completed", minutes=0, rows_read=5)
    newest = _add(store, account, status="completed", minutes=1, rows_read=7)
    _add(store, account, status="failed", minutes=2)
    cancelled = _add(store, account, status="cancelled", minutes=3)
    # other content, another entity, a dry run and a rolled-back import are none of these
    _add(store, account, status="processing", minutes=4, sha="cd" * 32)
    _add(store, account, status="processing", minutes=5, type="jobs")
    _add(store, account, status="processing", minutes=6, dry_run=True)
    _add(store, account, status="rolled_back", minutes=7)
    with store.begin() as conn:
        done = history.last_completed(conn, account, "applications", SHA)
        assert (done.id, done.rows_read) == (newest, 7)
        assert history.last_resumable(conn, account, "applications", SHA) == cancelled
        assert history.last_completed(conn, account, "candidates", SHA) is None
        assert history.last_resumable(conn, uuid.uuid4(), "applications", SHA) is None


def test_a_row_is_read_updated_and_only_found_in_its_own_account(store, account) -> None:
    import_id = _add(store, account, status="processing", minutes=0)
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    with store.begin() as conn:
        history.update(conn, import_id, status="completed", created=3, details={"unchanged": 1})
        row = history.row(conn, import_id)
        assert (row.status, row.created, row.details) == ("completed", 3, {"unchanged": 1})
        assert history.row_of_account(conn, account, import_id).id == import_id
        assert history.row_of_account(conn, other, import_id) is None


def test_the_listing_is_newest_first_and_filters_by_entity_and_run(store, account) -> None:
    first = _add(store, account, status="completed", minutes=0, dagster_run_id="run-1")
    second = _add(store, account, status="failed", minutes=1, type="jobs", error_message="row 2: bad")
    with store.begin() as conn:
        rows = history.listing(conn, account)
        assert [r["id"] for r in rows] == [second, first]
        assert set(rows[0]) == set(history.LISTED) and rows[0]["error_message"] == "row 2: bad"
        assert [r["id"] for r in history.listing(conn, account, entity="applications")] == [first]
        assert [r["id"] for r in history.listing(conn, account, dagster_run_id="run-1")] == [first]
        assert [r["id"] for r in history.listing(conn, account, limit=1)] == [second]


def test_a_moved_file_and_the_resolved_flags(store, account) -> None:
    import_id = _add(store, account, status="completed", minutes=0)
    at = datetime(2026, 2, 1, tzinfo=UTC)
    with store.begin() as conn:
        conn.execute(
            schema.import_flags.insert(),
            [
                {
                    "id": uuid.uuid4(),
                    "account_id": account,
                    "import_id": import_id,
                    "row_number": n,
                    "entity_type": "applications",
                    "reason": "duplicate",
                    "created_at": at,
                    "resolved_at": at if n == 3 else None,
                }
                for n in (1, 2, 3)
            ],
        )
        assert history.move_source(conn, f"/drop/{account}.csv", f"/done/{account}.csv", SHA) == 1
        assert history.move_source(conn, f"/drop/{account}.csv", f"/done/{account}.csv", SHA) == 0
        assert history.row(conn, import_id).source_path == f"/done/{account}.csv"
        assert history.resolve_flags(conn, import_id, at) == 2
        assert history.resolve_flags(conn, import_id, at) == 0
