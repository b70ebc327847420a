"""A million entity ids in one job: accepted, stored, counted (on PostgreSQL, the production store;
the embedded SQLite store is shown 100,000, which takes it as long as PostgreSQL takes a million)."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from tests.api.helpers import result

MILLION = 1_000_000


def test_a_million_ids_are_accepted(base_url: str, token: str, store_url: str) -> None:
    n = MILLION if store_url.startswith("postgresql") else MILLION // 10
    ids = [str(uuid.uuid4()) for _ in range(n)]
    body = json.dumps({"entity_type": "applications", "operation": "delete", "entity_ids": ids}).encode()
    assert len(body) > 38 * n

    # storing a million items takes the service a while on a busy 2-core machine
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        response = client.post("/api/bulk-jobs-create", content=body)
        job = result(response)
        print(f"create with {n:,} ids ({len(body) / 1e6:.1f} MB): {time.perf_counter() - started:.1f} s")
        print(f"  server timing: {response.headers['Server-Timing']}")
        # the ids exist nowhere: stop the run rather than have it report a million misses
        result(client.post("/api/bulk-jobs-cancel", json={"id": job["id"]}))

        assert job["total_count"] == n
        assert "entity_ids" not in job
        stored = result(client.get("/api/bulk-jobs-get", params={"id": job["id"], "include_entity_ids": "true"}))
    assert len(stored["entity_ids"]) == n
    assert (stored["entity_ids"][0], stored["entity_ids"][-1]) == (ids[0], ids[-1])
