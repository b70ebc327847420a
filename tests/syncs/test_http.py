"""The HTTP connector and the Greenhouse/Lever presets against a local server shaped like their APIs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from connectors.store import RecordStore, schema
from connectors.sync import SyncSourceError, ats
from pipelines.syncs.config import load_connection
from pipelines.syncs.engine import SyncFailed, run_sync
from tests.syncs.ats_server import TOKEN, State, ats_server, greenhouse_candidate, lever_opportunity

# real databases, Dagster runs and local servers: each test takes seconds
pytestmark = pytest.mark.slow

apps = schema.applications


@pytest.fixture
def server() -> tuple[str, State]:
    with ats_server() as s:
        yield s


def _slug(store: RecordStore, account: uuid.UUID) -> str:
    with store.engine.connect() as c:
        return c.scalar(sa.select(schema.accounts.c.slug).where(schema.accounts.c.id == account))


def _conn(tmp_path: Path, monkeypatch, store, account, system: str, resource: str, entity: str, base: str):
    monkeypatch.setenv("ATS_TOKEN", TOKEN)
    spec = {
        "account": _slug(store, account),
        "entity": entity,
        "source": {"type": system, "token": {"env": "ATS_TOKEN"}, "resource": resource, "base_url": base},
        "batch_size": 3,
    }
    path = tmp_path / f"{system}_{resource}.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return load_connection(path)


def _records(store, account) -> dict:
    with store.engine.connect() as c:
        return {r.external_id: r for r in c.execute(sa.select(apps).where(apps.c.account_id == account))}


def test_greenhouse_applications_through_link_pages_429_500_and_a_dropped_connection(
    store, account, server, tmp_path, monkeypatch
) -> None:
    base, state = server
    state.candidates = [greenhouse_candidate(i, f"2026-01-0{1 + i % 5}T00:00:00Z", apps=1 + i % 2) for i in range(7)]
    conn = _conn(tmp_path, monkeypatch, store, account, "greenhouse", "applications", "applications", base)
    waits: list[float] = []
    connector = ats.greenhouse("applications", TOKEN, base_url=base, sleep=waits.append)
    connector.pagination["page_size"] = 2  # 4 pages of 2, 2, 2, 1 candidates
    state.faults = [None, "429", "500", "drop"]  # page 2 is answered on its fourth try
    result = run_sync(store, conn, connector=connector)
    assert result.counts["created"] == 10  # 7 candidates, 10 applications
    assert waits == [7.0, 1.0, 2.0]  # Retry-After, then backoff
    records = _records(store, account)
    assert records["50010"].stage == "screening"  # "Phone Screen" folds to the declared stage
    assert result.cursor["value"] == "2026-01-05T00:00:00Z"

    # incremental: the API is asked for what changed after the cursor, and gets it
    state.candidates.append(greenhouse_candidate(9, "2026-02-01T00:00:00Z", stage="Offer", apps=2))
    state.requests.clear()
    connector = ats.greenhouse("applications", TOKEN, base_url=base, sleep=waits.append)
    second = run_sync(store, conn, connector=connector)
    assert any("updated_after=2026-01-05T00%3A00%3A00Z" in r for r in state.requests)
    assert second.counts["created"] == 2 and second.counts["records_read"] == 2
    assert _records(store, account)["50090"].stage == "offer"


def test_lever_opportunities_by_next_token_pages(store, account, server, tmp_path, monkeypatch) -> None:
    base, state = server
    state.opportunities = [lever_opportunity(i, 1767225600000 + i) for i in range(5)]
    conn = _conn(tmp_path, monkeypatch, store, account, "lever", "opportunities", "applications", base)
    connector = ats.lever("opportunities", TOKEN, base_url=base, sleep=lambda s: None)
    connector.pagination["page_size"] = 5  # exactly one full page: hasNext is false, no empty page asked
    result = run_sync(store, conn, connector=connector)
    assert result.counts["created"] == 5
    assert sum("/opportunities" in r for r in state.requests) == 1
    rec = _records(store, account)["opp-0003"]
    assert rec.stage == "interview" and rec.source == "LinkedIn"
    again = run_sync(store, conn, connector=ats.lever("opportunities", TOKEN, base_url=base, sleep=lambda s: None))
    assert again.counts["records_read"] == 0


def test_an_api_that_keeps_failing_fails_the_run_after_its_retries_without_its_token(
    store, account, server, tmp_path, monkeypatch
) -> None:
    base, state = server
    state.candidates = [greenhouse_candidate(1, "2026-01-01T00:00:00Z")]
    state.faults = ["500"] * 20
    conn = _conn(tmp_path, monkeypatch, store, account, "greenhouse", "candidates", "candidates", base)
    waits: list[float] = []
    connector = ats.greenhouse("candidates", TOKEN, base_url=base, sleep=waits.append, max_retries=3)
    with pytest.raises(SyncSourceError) as err:
        run_sync(store, conn, connector=connector)
    assert err.value.transient and "HTTP 500" in str(err.value) and TOKEN not in str(err.value)
    assert waits == [0.5, 1.0, 2.0]


def test_wrong_credentials_fail_at_once(store, account, server, tmp_path, monkeypatch) -> None:
    base, _ = server
    conn = _conn(tmp_path, monkeypatch, store, account, "greenhouse", "jobs", "jobs", base)
    connector = ats.greenhouse("jobs", "wrong", base_url=base, sleep=lambda s: None)
    with pytest.raises(SyncFailed, match="HTTP 401 \\(check the credentials\\)"):
        run_sync(store, conn, connector=connector)
