"""Syncs out to a folder of files and to a JSON API: whole files only, the API's auth, retries and 429s."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from connectors.store import RecordStore, changes, schema
from connectors.sync.folder import FolderConnector
from pipelines.syncs.config import SyncConfigError, load_connection
from pipelines.syncs.engine import SyncFailed, make_connector, run_sync
from tests.syncs.ats_server import TOKEN, State, ats_server
from tests.syncs.conftest import BASE, write_connection
from tests.syncs.test_sql_sync import store_slug

# real databases and a local server: each test takes seconds
pytestmark = pytest.mark.slow

apps = schema.applications
OUT_MAPPING = {"columns": {"id": "external_id", "email": "email", "stage": "stage", "channel": "source"}}


@pytest.fixture
def server() -> State:
    with ats_server() as s:
        yield s


def _synced_in(store: RecordStore, account: uuid.UUID, pg_source, tmp_path: Path, monkeypatch, n: int = 5) -> str:
    """N applications in the store, written by a sync in; the account's slug."""
    monkeypatch.setenv("HR_DB_URL", pg_source.url)
    pg_source.add(n)
    slug = store_slug(store, account)
    run_sync(store, load_connection(write_connection(tmp_path / "in", "hr_in", slug, "HR_DB_URL")))
    return slug


def _edit_in_store(store: RecordStore, account: uuid.UUID, key: str, stage: str) -> None:
    with store.begin() as c:
        rec = c.execute(sa.select(apps).where(apps.c.account_id == account, apps.c.external_id == key)).one()
        cs = changes.open_change_set(c, account_id=account, kind="document_import", actor="recruiter")
        c.execute(apps.update().where(apps.c.id == rec.id).values(stage=stage))
        changes.write_audit_rows(
            c, cs, "edit", [("applications", rec.id, {"stage": rec.stage}, {"stage": stage})], now=BASE
        )


def _out_connection(tmp_path: Path, slug: str, name: str, source: dict):  # type: ignore[no-untyped-def]
    spec = {"account": slug, "entity": "applications", "direction": "out", "source": source, "mapping": OUT_MAPPING}
    path = tmp_path / "out" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return load_connection(path)


def _read_folder(folder: Path) -> dict[str, dict]:
    reader = FolderConnector(str(folder), key="id")
    return {r["id"]: r for b in reader.read_batches(None, 100) for r in b.table.to_pylist()}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_sync_out_to_a_folder_writes_whole_files(store, account, pg_source, tmp_path, monkeypatch, fmt) -> None:
    slug = _synced_in(store, account, pg_source, tmp_path, monkeypatch)
    folder = tmp_path / "exports"
    folder.mkdir()
    conn = _out_connection(
        tmp_path, slug, "to_files", {"type": "files", "path": str(folder), "key": "id", "format": fmt}
    )
    _edit_in_store(store, account, "A000002", "review")

    first = run_sync(store, conn)

    assert first.details["out"]["written"] == 5
    [written] = folder.iterdir()  # one batch, one file; no partial file left
    assert written.name == f"to_files-{first.run_id}-00001.{fmt}"
    rows = _read_folder(folder)
    assert sorted(rows) == [f"A{i:06d}" for i in range(1, 6)]
    assert rows["A000002"] == {
        "id": "A000002",
        "email": "person2@example.com",
        "stage": "review",
        "channel": "career site",
    }

    assert run_sync(store, conn).details["out"]["written"] == 0
    assert len(list(folder.iterdir())) == 1
    _edit_in_store(store, account, "A000004", "offer")
    third = run_sync(store, conn)
    assert third.details["out"]["written"] == 1
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("to_files-" + str(first.run_id))) == [
        f"to_files-{third.run_id}-00001.{fmt}"
    ]
    assert _read_folder(folder)["A000004"]["stage"] == "offer"
    assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]


def test_a_sync_out_to_an_api_posts_batches_through_429s_500s_and_dropped_connections(
    store, account, pg_source, tmp_path, monkeypatch, server
) -> None:
    base, state = server
    slug = _synced_in(store, account, pg_source, tmp_path, monkeypatch, n=7)
    monkeypatch.setenv("API_USER", TOKEN)
    source = {
        "type": "http",
        "url": f"{base}/inbox",
        "key": "id",
        "username": {"env": "API_USER"},
        "write": {"method": "POST", "records": "records"},
    }
    spec = {"account": slug, "entity": "applications", "direction": "out", "source": source, "mapping": OUT_MAPPING}
    spec["batch_size"] = 4
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    conn = load_connection(path)
    connector = make_connector(conn)
    waits: list[float] = []
    connector.sleep = waits.append
    # the first batch meets a rate limit, a server error and a dropped connection; the second is applied
    # but its answer is lost, so it is sent again under the same Idempotency-Key
    state.faults = ["429", "500", "drop", None, "lost"]

    result = run_sync(store, conn, connector=connector)

    assert result.details["out"] == {**result.details["out"], "written": 7, "inserted": 7}
    assert waits == [3.0, 1.0, 2.0, 0.5]
    assert [(m, p, k) for m, p, k, _ in state.received] == [
        ("POST", "/v1/inbox", f"{result.run_id}-00001"),
        ("POST", "/v1/inbox", f"{result.run_id}-00002"),
    ]
    sent = [r for _, _, _, body in state.received for r in body["records"]]
    assert sorted(r["id"] for r in sent) == [f"A{i:06d}" for i in range(1, 8)]
    assert all(set(r) == {"id", "email", "stage", "channel"} for r in sent)
    connector.close()


def test_a_sync_out_puts_each_record_at_its_own_url_and_a_refusal_fails_the_run(
    store, account, pg_source, tmp_path, monkeypatch, server
) -> None:
    base, state = server
    slug = _synced_in(store, account, pg_source, tmp_path, monkeypatch, n=3)
    monkeypatch.setenv("API_USER", TOKEN)
    source = {
        "type": "http",
        "url": f"{base}/inbox",
        "key": "id",
        "username": {"env": "API_USER"},
        "write": {"method": "PUT", "url": f"{base}/inbox/{{key}}"},
    }
    conn = _out_connection(tmp_path, slug, "to_api", source)
    result = run_sync(store, conn)
    assert result.details["out"] == {**result.details["out"], "written": 3, "updated": 3}
    assert sorted((m, p) for m, p, _, _ in state.received) == [("PUT", f"/v1/inbox/A{i:06d}") for i in range(1, 4)]
    assert state.received[0][3]["email"].startswith("person")

    _edit_in_store(store, account, "A000002", "review")
    monkeypatch.setenv("API_USER", "wrong")
    with pytest.raises(SyncFailed) as failed:
        run_sync(store, conn)
    assert "refused the PUT: HTTP 401 (check the credentials)" in failed.value.message
    assert "wrong" not in failed.value.message


def test_which_sources_a_sync_can_write(tmp_path) -> None:
    def load(source: dict, direction: str, **extra):  # type: ignore[no-untyped-def]
        spec = {"account": "demo", "entity": "applications", "direction": direction, "source": source, **extra}
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        return load_connection(path, check_env=False)

    files = {"type": "files", "path": str(tmp_path), "key": "id"}
    assert load(files, "out", mapping=OUT_MAPPING).direction == "out"
    with pytest.raises(SyncConfigError, match="a files source is synced in, out"):
        load(files, "two_way", mapping=OUT_MAPPING)
    with pytest.raises(SyncConfigError, match="needs a mapping"):
        load(files, "out")
    with pytest.raises(SyncConfigError, match="format 'xml': csv or parquet"):
        load({**files, "format": "xml"}, "out", mapping=OUT_MAPPING)
    api = {"type": "http", "url": "http://x/y", "key": "id"}
    assert load({**api, "write": {"method": "patch"}}, "two_way", mapping=OUT_MAPPING).direction == "two_way"
    with pytest.raises(SyncConfigError, match="write method 'DELETE'"):
        load({**api, "write": {"method": "DELETE"}}, "out", mapping=OUT_MAPPING)
    with pytest.raises(SyncConfigError, match="a lever source is synced in"):
        load({"type": "lever", "token": "t", "resource": "opportunities"}, "out")
