"""Tenancy through the API's monitoring endpoints (bulk jobs and exports: tests/api/test_jobs.py,
test_exports.py): a token of one account never reads or counts another's records."""

from __future__ import annotations

import uuid

import httpx

from connectors.store import RecordStore
from tests.api.helpers import error, result
from tests.monitoring.helpers import add_bulk_job, add_import


def test_stats_count_only_the_token_s_own_account(
    client: httpx.Client, other_client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    add_import(store, account, created=7, errors=2, status="completed")
    add_bulk_job(store, account, processed=40, failed=1)
    mine = result(client.get("/api/stats-get", params={"since": "7d"}))
    theirs = result(other_client.get("/api/stats-get", params={"since": "7d"}))
    assert mine["total"]["records"] == 7 + 2 + 40
    assert theirs["total"]["records"] == 0
    assert theirs["by_operation"] == []
    assert theirs["account"] != mine["account"]
    # naming the other account in the query changes nothing: the token decides
    again = other_client.get("/api/stats-get", params={"since": "7d", "account": mine["account"]})
    if again.status_code == 200:
        assert result(again)["account"] == theirs["account"] and result(again)["total"]["records"] == 0
    else:
        assert again.status_code in (403, 404, 422)


def test_an_imports_failed_records_are_not_found_from_another_account(
    client: httpx.Client, other_client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    import_id = add_import(store, account, errors=2)
    # the owner is told about it (here: no failed-rows file was kept), the other account is told nothing
    assert client.get("/api/change-sets-failed-records", params={"id": str(import_id)}).status_code == 409
    assert error(other_client.get("/api/change-sets-failed-records", params={"id": str(import_id)}), 404)["code"] == (
        "not_found"
    )
