"""kill -9 of a document import's run worker mid-batch (the session's `dagster dev`): the run fails, and
the daemon's retry resumes the same import and imports every resume once, with no applicant duplicated.

The run is stopped at a known point without timing assumptions: one resume belongs to an applicant who
is already in the account, and the test holds that applicant's row `FOR UPDATE`, so the run waits inside
its batch of records, after reading the PDFs, until the test kills it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from connectors.store import schema
from pipelines import runs
from tests.dagster_deployment import Deployment
from tests.documents import pdfgen
from tests.faults import WAIT_S, history, kill_run, new_account, process_gone, row_locked, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

RESUMES = 4


def test_a_killed_document_import_run_is_retried_and_no_applicant_is_duplicated(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(deployment.home))
    monkeypatch.setenv("BULKOPS_VAR_DIR", deployment.env["BULKOPS_VAR_DIR"])
    monkeypatch.delenv("BULKOPS_DAGSTER_GRAPHQL_URL", raising=False)
    acct = new_account(deployment.store_url)
    folder = tmp_path / "resumes"
    for i in range(1, RESUMES + 1):
        pdfgen.write(folder / f"cv-{i}.pdf", pdfgen.resume_pdf(i))
    # the last resume's applicant is already in the account: the import updates that row
    _, _, email = pdfgen.person(RESUMES)
    known = uuid.uuid4()
    with acct.store.begin() as conn:
        conn.execute(
            schema.users.insert().values(
                id=known, account_id=acct.id, email=email, email_normalized=email, first_name="Before"
            )
        )
    run_config = {
        "ops": {"import_documents": {"config": {"paths": [str(folder)], "account": acct.slug, "workers": 1}}},
        "resources": {"record_store": {"config": {"database_url": deployment.store_url}}},
    }
    with deployment.instance() as instance:
        with row_locked(acct.store, schema.users, known) as lock:
            run_id = runs.launch_run(
                "document_import_job",
                run_config=run_config,
                tags={"bulkops/document_kind": "resume"},
                instance=instance,
            )
            try:
                wait_for(lock.waiters, "the import to wait on the held applicant")
                [before] = history(acct)
                assert (before.status, before.rows_committed) == ("processing", 0)
                pids = kill_run(instance, run_id)
                wait_for(lambda: all(process_gone(p) for p in pids), "the run worker to die")
            finally:
                lock.release()
        assert runs.wait_for_run(run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.FAILURE

        # run retries (dagster.local.yaml) re-execute a run whose worker crashed
        def retry() -> dg.DagsterRun | None:
            found = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/root_run_id": run_id}))
            return found[0] if found else None

        retried = wait_for(retry, "the daemon to retry the killed run")
        assert runs.wait_for_run(retried.run_id, instance=instance, timeout=WAIT_S) == dg.DagsterRunStatus.SUCCESS

    [done] = history(acct)
    assert done.id == before.id, "the retry resumed the killed import"
    assert (done.status, done.dagster_run_id) == ("completed", retried.run_id)
    assert (done.created, done.updated, done.errors) == (RESUMES - 1, 1, 0)
    u, d = schema.users, schema.documents
    with acct.store.engine.connect() as c:
        emails = c.execute(sa.select(u.c.email_normalized).where(u.c.account_id == acct.id)).scalars().all()
        docs = c.execute(sa.select(d.c.filename, d.c.candidate_id, d.c.status).where(d.c.account_id == acct.id)).all()
    # every applicant once, the one already there updated in place
    assert sorted(emails) == sorted(pdfgen.person(i)[2] for i in range(1, RESUMES + 1))
    assert sorted(doc.filename for doc in docs) == [f"cv-{i}.pdf" for i in range(1, RESUMES + 1)]
    assert {doc.status for doc in docs} == {"completed"}
    assert len({doc.candidate_id for doc in docs}) == RESUMES and known in {doc.candidate_id for doc in docs}
    acct.store.dispose()
