"""Guard rails through the HTTP API: declared values, failed jobs, safe CSV, paging, offline docs."""

from __future__ import annotations

import csv
import io
import re
import uuid

import httpx
import sqlalchemy as sa

from connectors.files import csvsafe
from connectors.store import RecordStore, accounts, registry, schema
from tests.api.helpers import create, error, result, seed_applications, wait_for


def test_a_status_outside_the_value_set_is_a_422_naming_the_allowed_values(
    client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    ids = seed_applications(store, account, 2)
    body = {
        "entity_type": "applications",
        "operation": "status_update",
        "entity_ids": ids,
        "params": {"status": "banana"},
    }
    problem = error(client.post("/api/bulk-jobs-create", json=body), 422)
    assert problem["code"] == "invalid_request"
    assert problem["details"] == {"field": "status", "value": "banana", "allowed": list(registry.APPLICATION_STATUSES)}
    assert result(client.get("/api/bulk-jobs-list")) == []

    accounts.set_value_set(store, account, "applications.status", ["active", "banana"])
    job = wait_for(client, create(client, **body)["id"])
    assert (job["status"], job["params"]) == ("completed", {"status": "banana"})


def test_failed_records_csv_neutralises_formulas_and_streams_every_record(
    client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    missing = [str(uuid.uuid4()) for _ in range(12_000)]
    job = wait_for(client, create(client, entity_type="applications", operation="delete", entity_ids=missing)["id"])
    assert (job["status"], job["failed_count"]) == ("failed", 12_000)
    assert job["error_message"] == "all 12000 records failed: not found (12000)"
    items = schema.bulk_job_items
    with store.begin() as conn:
        conn.execute(
            items.update()
            .where(items.c.bulk_job_id == uuid.UUID(job["id"]), items.c.seq == 7)
            .values(error="@SUM(1+1)*cmd|' /C calc'!A0")
        )

    with client.stream("GET", "/api/bulk-jobs-failed-records", params={"id": job["id"]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert "content-length" not in response.headers  # streamed, not built in memory first
        text = response.read().decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["entity_id", "error", "seq", "status", "_original"]
    assert [r[0] for r in rows[1:]] == missing
    assert rows[8][1] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert csvsafe.restore_row(rows[0], rows[8])["error"] == "@SUM(1+1)*cmd|' /C calc'!A0"
    assert not any(csvsafe.is_formula(cell) for row in rows for cell in row)


def test_paging_by_the_last_job_id_returns_every_job_once(
    client: httpx.Client, store: RecordStore, account: uuid.UUID
) -> None:
    made = [
        create(
            client,
            entity_type="applications",
            operation="delete",
            entity_ids=seed_applications(store, account, 1),
            mode="preview",
        )["id"]
        for _ in range(3)
    ]
    t = schema.bulk_jobs
    with store.begin() as conn:
        same = conn.scalar(sa.select(t.c.created_at).where(t.c.id == uuid.UUID(made[0])))
        conn.execute(t.update().where(t.c.id.in_([uuid.UUID(m) for m in made])).values(created_at=same))
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while page := result(client.get("/api/bulk-jobs-list", params=params)):
        seen += [j["id"] for j in page]
        params["before"] = page[-1]["id"]
    assert sorted(seen) == sorted(made) and len(seen) == 3
    assert error(client.get("/api/bulk-jobs-list", params={"before": str(uuid.uuid4())}), 404)["code"] == "not_found"
    # a timestamp with an offset means the same instant in UTC
    created = result(client.get("/api/bulk-jobs-get", params={"id": made[0]}))["created_at"]
    assert created.endswith("Z") and re.search(r"\.\d{6}Z$", created)
    later = result(client.post("/api/bulk-jobs-list", json={"before": "2999-01-01T02:00:00+02:00"}))
    assert len(later) == 3


def test_the_docs_page_loads_every_asset_from_this_server(anonymous: httpx.Client) -> None:
    page = anonymous.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text and "http://" not in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {a.rsplit("/", 1)[-1] for a in assets} == {"swagger-ui.css", "swagger-ui-bundle.js", "favicon.png"}
    kinds = {"css": "text/css", "js": "text/javascript", "png": "image/png"}
    for asset in assets:
        assert asset.startswith("/api/"), asset
        response = anonymous.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(kinds[asset.rsplit(".", 1)[-1]])
        assert len(response.content) > 1000
    # Swagger UI 5 reads OpenAPI 3.1, the version the API publishes
    bundle = anonymous.get(next(a for a in assets if a.endswith(".js"))).text
    assert re.search(r'"5\.\d+\.\d+"', bundle)
    assert "url: '/api/openapi.json'" in page.text
    assert anonymous.get("/api/openapi.json").json()["openapi"].startswith("3.1")
