"""exports-create, exports-get and exports-download over HTTP: an export_job run per export, its file to its
account only."""

from __future__ import annotations

import csv
import io
import uuid

import dagster as dg
import httpx
import pytest

from connectors.store import RecordStore
from tests.api.helpers import error, result, wait_for_run
from tests.exports.conftest import seed

pytestmark = pytest.mark.slow


def _wait(client: httpx.Client, export_id: str) -> dict:
    import time

    # generous: the run is launched by `dagster job launch` (a code server, then a run worker), which a
    # loaded machine can hold up for minutes; the test is about the outcome, not the time
    deadline = time.monotonic() + 600
    while True:
        export = result(client.get("/api/exports-get", params={"id": export_id}))
        if export["status"] in ("completed", "failed", "cancelled"):
            return export
        assert time.monotonic() < deadline, export
        time.sleep(0.2)


def test_an_export_round_trip_and_its_file_to_its_account_only(
    client: httpx.Client,
    other_client: httpx.Client,
    store: RecordStore,
    account: uuid.UUID,
    api_instance: dg.DagsterInstance,
) -> None:
    ds = seed(store, account, n=12)
    # the other account holds look-alike records (same job codes)
    other = store.ensure_account(f"t-{uuid.uuid4().hex[:10]}")
    seed(store, other, n=6)
    created = result(
        client.post(
            "/api/exports-create",
            json={
                "entity": "applications",
                "where": ["stage in review,offer", {"field": "job_code", "op": "=", "value": "ENG-1"}],
                "columns": "external_id:Ref,candidate_email,tags",
                "format": "csv",
            },
        )
    )
    assert created["status"] == "pending" and created["entity"] == "applications"
    done = _wait(client, created["id"])
    assert done["status"] == "completed", done
    expected = {
        a["external_id"]
        for a in ds.apps.values()
        if a["stage"] in ("review", "offer")
        and a["deleted_at"] is None
        and a["job_id"] is not None
        and ds.jobs[a["job_id"]]["code"] == "ENG-1"
    }
    assert done["rows"] == len(expected) and expected
    assert done["filter"] == "applications where stage is one of review, offer and job_code is ENG-1"
    assert wait_for_run(api_instance, created["id"]).status == dg.DagsterRunStatus.SUCCESS

    response = client.get("/api/exports-download", params={"id": created["id"]})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert done["file_name"] in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["Ref"] for r in rows} == expected and list(rows[0]) == ["Ref", "candidate_email", "tags"]

    # another account sees neither the export nor its file
    assert error(other_client.get("/api/exports-get", params={"id": created["id"]}), 404)["code"] == "not_found"
    assert error(other_client.get("/api/exports-download", params={"id": created["id"]}), 404)["code"] == "not_found"
    # a bulk job's run is not an export, whoever asks
    assert error(client.get("/api/exports-get", params={"id": str(uuid.uuid4())}), 404)["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"account": "someone-else"}, "unknown field(s): account (the account is the token's)"),
        ({"out_dir": "/tmp"}, "unknown field(s): out_dir"),
        ({"where": ["account_id=00000000-0000-0000-0000-000000000001"]}, "unknown field 'account_id'"),
        ({"columns": ["account_id"]}, "column 'account_id'"),
        ({"where": ["stage>review"]}, "> applies to timestamps and numbers, not text"),
        ({"format": "pdf"}, "format: Input should be 'csv', 'xlsx' or 'parquet'"),
        ({"entity": "invoices"}, "unknown entity 'invoices'"),
    ],
)
def test_exports_create_refuses_with_422_and_launches_nothing(
    client: httpx.Client, api_instance: dg.DagsterInstance, body: dict, message: str
) -> None:
    before = len(api_instance.get_run_records())
    err = error(client.post("/api/exports-create", json=body), 422)
    assert err["code"] == "invalid_request" and message in err["message"]
    assert len(api_instance.get_run_records()) == before


def test_exports_need_a_token(anonymous: httpx.Client) -> None:
    assert error(anonymous.post("/api/exports-create", json={}), 401)["code"] == "unauthorized"
    assert error(anonymous.get("/api/exports-get", params={"id": str(uuid.uuid4())}), 401)["code"] == "unauthorized"
