"""Document imports in Dagster: the drop-folder sensor, one run for many documents, a partition per document."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import RecordStore, schema
from pipelines.documents.assets import (
    READABLE_CHECK,
    SKILLS_KEY,
    document_import_job,
    document_partitions,
    document_skills,
)
from pipelines.documents.sensors import build_document_sensor
from pipelines.imports.engine import list_imports
from resources import RecordStoreResource
from tests.documents import pdfgen

pytestmark = pytest.mark.slow


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def slug(store: RecordStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    store.ensure_account(name)
    monkeypatch.setenv("BULKOPS_ACCOUNT", name)
    monkeypatch.setenv("BULKOPS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BULKOPS_DOCUMENTS_DIR", str(tmp_path / "var" / "documents"))
    return name


def _run(instance: dg.DagsterInstance, store_url: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return document_import_job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )


def _skill_events(instance: dg.DagsterInstance, event_type: dg.DagsterEventType) -> list:
    records = (
        instance.fetch_materializations(SKILLS_KEY, limit=100).records
        if event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        else instance.fetch_observations(SKILLS_KEY, limit=100).records
    )
    return [r.asset_materialization or r.asset_observation for r in records]


def test_dropped_resumes_share_one_run_and_each_gets_a_partition(
    tmp_path: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    root = tmp_path / "dropzone"
    folder = root / "resumes"
    one = pdfgen.write(folder / "one.pdf", pdfgen.resume_pdf(41, ["Python", "Docker"]))
    two = pdfgen.write(folder / "two.pdf", pdfgen.resume_pdf(42, ["Java"]))
    bad = pdfgen.write(folder / "scan-of-nothing.pdf", b"%PDF-1.4\nnot really")
    pdfgen.write(folder / "three.pdf.part", pdfgen.resume_pdf(43))
    now = time.time()
    writing = pdfgen.write(folder / "still-writing.pdf", pdfgen.resume_pdf(44))
    # the clock says 30 s later; the file still being written changed just "now" (in the future)
    os.utime(writing, (now + 40, now + 40))
    shas = {p.name: _sha(p) for p in (one, two)}
    clock = [now + 30]
    sensor = build_document_sensor("resume", clock=lambda: clock[0], settle_seconds=10, root=root)

    tick = sensor(dg.build_sensor_context(instance=instance))
    [request] = tick.run_requests
    assert sorted(Path(p).name for p in request.run_config["ops"]["import_documents"]["config"]["paths"]) == [
        "one.pdf",
        "scan-of-nothing.pdf",
        "two.pdf",
    ]
    result = _run(instance, store_url, request)

    assert result.success
    keys = instance.get_dynamic_partitions(document_partitions.name)
    assert len(keys) == 3 and all(k.startswith("resume/") for k in keys)
    mats = _skill_events(instance, dg.DagsterEventType.ASSET_MATERIALIZATION)
    assert sorted(m.metadata["skills"].value for m in mats) == [2, 3]
    [obs] = _skill_events(instance, dg.DagsterEventType.ASSET_OBSERVATION)
    assert obs.metadata["status"].value == "failed"
    assert "truncated" in obs.metadata["reason"].value
    # the failed document's partition fails its `readable` check; the others have no check event
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.partition) == (READABLE_CHECK, False, obs.partition)
    assert check.partition.startswith("resume/scan-of-nothing.pdf@")
    assert "truncated" in check.metadata["reason"].value
    assert sorted(p.name for p in (folder / "processed").iterdir()) == [
        f"one@{shas['one.pdf'][:12]}.pdf",
        f"two@{shas['two.pdf'][:12]}.pdf",
    ]
    assert [p.name.split("@")[0] for p in (folder / "failed").iterdir()] == ["scan-of-nothing"]
    assert not bad.exists() and writing.exists() and (folder / "three.pdf.part").exists()
    row = list_imports(store, store.account_id(slug), limit=1)[0]
    assert (row["type"], row["created"], row["errors"]) == ("candidates", 2, 1)

    # the same PDF dropped again: one more run, recorded as a skipped document
    pdfgen.write(folder / "one.pdf", pdfgen.resume_pdf(41, ["Python", "Docker"]))
    clock[0] = now + 120
    again = sensor(dg.build_sensor_context(instance=instance, cursor=tick.cursor))
    [redrop] = list(again.run_requests)
    paths = redrop.run_config["ops"]["import_documents"]["config"]["paths"]
    assert [Path(p).name for p in paths] == ["one.pdf", "still-writing.pdf"]
    assert _run(instance, store_url, redrop).success
    row = list_imports(store, store.account_id(slug), limit=1)[0]
    assert (row["created"], row["skipped"]) == (1, 1)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_partition_re_runs_its_document_and_a_failed_one_fails_with_its_reason(
    tmp_path: Path, instance: dg.DagsterInstance, store: RecordStore, store_url: str, slug: str
) -> None:
    good = pdfgen.write(tmp_path / "in" / "cv.pdf", pdfgen.resume_pdf(50, ["Kotlin", "Terraform"]))
    locked = pdfgen.write(tmp_path / "in" / "empty.pdf", b"")
    run_config = {"ops": {"import_documents": {"config": {"kind": "resume", "paths": [str(good), str(locked)]}}}}
    assert _run(instance, store_url, dg.RunRequest(run_config=run_config)).success
    keys = {k.split("/", 1)[1].split("@")[0]: k for k in instance.get_dynamic_partitions(document_partitions.name)}
    with store.engine.connect() as c:
        c.execute(
            sa.delete(schema.candidate_skills).where(schema.candidate_skills.c.account_id == store.account_id(slug))
        )
        c.commit()

    rerun = dg.materialize(
        [document_skills],
        instance=instance,
        partition_key=keys["cv.pdf"],
        resources={"record_store": RecordStoreResource(database_url=store_url)},
    )
    failed = dg.materialize(
        [document_skills],
        instance=instance,
        partition_key=keys["empty.pdf"],
        resources={"record_store": RecordStoreResource(database_url=store_url)},
        raise_on_error=False,
    )

    assert rerun.success
    [mat] = rerun.asset_materializations_for_node("documents__document_skills")
    assert mat.metadata["skills"].value == 3
    [check] = rerun.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.partition) == (READABLE_CHECK, True, keys["cv.pdf"])
    with store.engine.connect() as c:
        n = c.execute(
            sa.select(sa.func.count())
            .select_from(schema.candidate_skills)
            .where(schema.candidate_skills.c.account_id == store.account_id(slug))
        ).scalar()
        status = c.execute(
            sa.select(schema.documents.c.status, schema.documents.c.error_kind, schema.documents.c.attempts).where(
                schema.documents.c.filename == "empty.pdf", schema.documents.c.account_id == store.account_id(slug)
            )
        ).one()
    assert n == 3
    assert not failed.success
    assert tuple(status) == ("failed", "unreadable", 2)
    failure = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "no applicant or job was made from it" in failure.step_failure_data.error.message


def test_a_launch_with_nothing_to_import_fails_saying_so(
    tmp_path: Path, instance: dg.DagsterInstance, store_url: str, slug: str
) -> None:
    (tmp_path / "empty").mkdir()
    run_config = {"ops": {"import_documents": {"config": {"kind": "resume", "paths": [str(tmp_path / "empty")]}}}}

    result = document_import_job.execute_in_process(
        run_config=run_config,
        instance=instance,
        resources={"record_store": RecordStoreResource(database_url=store_url)},
        raise_on_error=False,
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert failure.step_failure_data.user_failure_data.description.startswith("nothing to import: no PDF in")
