"""A million entity ids in one job: accepted, stored, counted."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from tests.api.helpers import result

MILLION = 1_000_000


def test_a_million_ids_are_accepted(client: httpx.Client) -> None:
    ids = [str(uuid.uuid4()) for _ in range(MILLION)]
    body = json.dumps({"entity_type": "applications", "operation": "delete", "entity_ids": ids, "mode": "preview"}).encode()
    assert len(body) > 38 * MILLION

    started = time.perf_counter()
    job = result(client.post("/api/bulk-jobs-create", content=body, headers={"Content-Type": "application/json"}))
    elapsed = time.perf_counter() - started
    print(f"create with {MILLION:,} ids ({len(body) / 1e6:.1f} MB): {elapsed:.2f} s")

    assert job["total_count"] == MILLION
    assert "entity_ids" not in job
    stored = result(client.get("/api/bulk-jobs-get", params={"id": job["id"], "include_entity_ids": "true"}))
    assert stored["entity_ids"][0] == ids[0] and stored["entity_ids"][-1] == ids[-1]
    assert len(stored["entity_ids"]) == MILLION
