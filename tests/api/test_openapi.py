"""The OpenAPI schema is served at /api/openapi.json and published, current, as docs/openapi.json."""

from __future__ import annotations

import json

import httpx

from pipelines.api.openapi import DOCS_PATH, render


def test_docs_openapi_json_is_current() -> None:
    assert DOCS_PATH.exists(), "run `bulkops api --write-openapi docs/openapi.json`"
    assert DOCS_PATH.read_text() == render(), (
        "docs/openapi.json is stale: run `bulkops api --write-openapi docs/openapi.json`"
    )


def test_the_server_publishes_the_same_schema(anonymous: httpx.Client) -> None:
    response = anonymous.get("/api/openapi.json")
    assert response.status_code == 200
    served = response.json()
    assert served == json.loads(DOCS_PATH.read_text())
    assert served["paths"].keys() == {
        "/api/health",
        "/api/bulk-jobs-create",
        "/api/bulk-jobs-get",
        "/api/bulk-jobs-list",
        "/api/bulk-jobs-cancel",
        "/api/bulk-jobs-preview",
        "/api/bulk-jobs-confirm",
        "/api/bulk-jobs-rollback",
        "/api/bulk-jobs-failed-records",
        "/api/exports-create",
        "/api/exports-get",
        "/api/exports-download",
        "/api/stats-get",
        "/api/change-sets-failed-records",
    }
    create = served["paths"]["/api/bulk-jobs-create"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateJobRequest"
    }
    assert set(create["responses"]) >= {"200", "400", "401", "403", "413", "422"}
    assert served["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An account's API token (`bulkops tokens create ACCOUNT`).",
    }
