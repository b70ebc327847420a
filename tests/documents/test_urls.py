"""Job postings from URLs, against a local HTTP server: JSON-LD, main text, and each way a fetch fails."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.documents import urls
from connectors.documents.errors import DocumentError
from connectors.store import RecordStore, schema
from connectors.store import documents as store_docs
from pipelines.documents.engine import import_documents
from pipelines.imports.engine import list_imports
from tests.documents import pdfgen

POSTING = {
    "@context": "https://schema.org",
    "@type": "JobPosting",
    "title": "Senior Data Engineer",
    "description": "<p>Build pipelines in <b>Python</b> and SQL.</p><ul><li>Apache Spark</li><li>Kafka</li></ul>",
    "jobLocation": {"@type": "Place", "address": {"addressLocality": "Berlin", "addressCountry": "DE"}},
}
WITH_JSONLD = f"""<html><head><title>Careers at Acme</title>
<script type="application/ld+json">{json.dumps(POSTING)}</script></head>
<body><nav>Home | Jobs</nav><h1>Senior Data Engineer</h1><p>Apply now.</p></body></html>"""
PLAIN = """<html><head><title>Platform Engineer - Acme</title></head><body>
<nav><a href="/">Home</a> <a href="/jobs">Jobs</a></nav>
<article><h1>Platform Engineer</h1>
<p>Location: Lisbon, Portugal</p>
<p>We are looking for a platform engineer to run our Kubernetes clusters and build tooling in Go, Terraform and Python.
You will own the deployment pipeline, on-call rotations and the developer experience of forty engineers.</p>
<p>Experience with PostgreSQL and Linux administration is a plus. We offer a hybrid setup and a learning budget.</p>
</article><footer>© Acme</footer></body></html>"""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: str, ctype: str = "text/html; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/jobs/data-engineer":
            self._send(200, WITH_JSONLD)
        elif self.path == "/jobs/platform":
            self._send(200, PLAIN)
        elif self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/jobs/platform")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(3)
            self._send(200, PLAIN)
        elif self.path == "/huge":
            # 50 MB without a Content-Length: the client must stop reading by itself
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            chunk = b"<p>" + b"x" * (1 << 20) + b"</p>"
            try:
                for _ in range(50):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 2**20))
            self.end_headers()
        else:
            self._send(404, "<html><body>Not found</body></html>")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_posting_with_json_ld_takes_its_fields_from_it(server: str) -> None:
    page = urls.fetch(f"{server}/jobs/data-engineer")
    post = urls.parse_posting(page.body.decode(), page.final_url)
    assert (post.title, post.location, post.from_jsonld) == ("Senior Data Engineer", "Berlin, DE", True)
    assert post.description.splitlines()[:2] == ["Build pipelines in", "Python"]


def test_a_posting_without_json_ld_is_read_from_its_main_text(server: str) -> None:
    page = urls.fetch(f"{server}/moved")
    post = urls.parse_posting(page.body.decode(), page.final_url)
    assert page.final_url.endswith("/jobs/platform")
    assert post.from_jsonld is False
    assert post.title == "Platform Engineer"
    assert post.location == "Lisbon, Portugal"
    assert "Kubernetes clusters" in post.description and "Home" not in post.description


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "kind", "says"),
    [
        ("/nowhere", "fetch_failed", "HTTP 404"),
        ("/loop", "fetch_failed", "more than 5 redirects"),
        ("/slow", "timeout", "within 1 s"),
        ("/huge", "too_large", "larger than the 5,242,880 bytes"),
        ("/huge-declared", "too_large", "52,428,800 bytes"),
    ],
)
def test_fetch_failures_are_named(server: str, path: str, kind: str, says: str) -> None:
    with pytest.raises(DocumentError) as err:
        urls.fetch(f"{server}{path}", timeout=1.0)
    assert err.value.kind == kind
    assert says in str(err.value)


def test_only_http_and_https_are_fetched() -> None:
    with pytest.raises(DocumentError, match="only http and https"):
        urls.fetch("file:///etc/passwd")


@pytest.mark.slow
def test_one_launch_mixes_urls_and_pdfs_into_jobs(
    server: str, store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    jd = pdfgen.write(
        tmp_path / "qa-lead.pdf",
        pdfgen.build([[["Job title: QA Lead", "Location: Remote", "", "Selenium, JUnit and Jenkins experience."]]]),
    )
    result = import_documents(
        store,
        account,
        kind="job",
        paths=[jd],
        urls_=[f"{server}/jobs/data-engineer", f"{server}/jobs/platform", f"{server}/nowhere"],
        documents_dir=tmp_path / "stored",
        failed_rows_dir=tmp_path / "failed",
        fetch=partial(urls.fetch, timeout=2.0),
    )

    assert (result.created, result.errors) == (3, 1)
    j = schema.jobs
    with store.engine.connect() as c:
        jobs = {r.title: r for r in c.execute(sa.select(j).where(j.c.account_id == account))}
        de = jobs["Senior Data Engineer"]
        skills = [s["name"] for s in store_docs.skills_of(c, "job_description", de.id)]
        qa_skills = [s["name"] for s in store_docs.skills_of(c, "job_description", jobs["QA Lead"].id)]
    assert set(jobs) == {"Senior Data Engineer", "Platform Engineer", "QA Lead"}
    assert (de.location, de.origin, de.source_url) == ("Berlin, DE", "uploaded", f"{server}/jobs/data-engineer")
    assert skills == ["Python", "SQL", "Spark", "Kafka"]
    assert (jobs["QA Lead"].location, qa_skills) == ("Remote", ["Selenium", "JUnit", "Jenkins"])
    row = list_imports(store, account, type="jobs", limit=1)[0]
    assert (row["file"], row["created"], row["errors"]) == ("qa-lead.pdf + 3 URLs", 3, 1)


@pytest.mark.slow
def test_a_urls_only_launch_is_listed_with_no_file(
    server: str, store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    import_documents(
        store,
        account,
        kind="job",
        urls_=[f"{server}/jobs/data-engineer"],
        documents_dir=tmp_path / "stored",
        failed_rows_dir=tmp_path / "failed",
    )
    row = list_imports(store, account, type="jobs", limit=1)[0]
    assert (row["file"], row["created"]) == ("--", 1)


@pytest.mark.slow
def test_a_posting_partition_re_runs_from_the_stored_page(
    server: str, store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    import dagster as dg

    from pipelines.documents.assets import document_partitions, document_skills
    from resources import RecordStoreResource

    result = import_documents(
        store,
        account,
        kind="job",
        urls_=[f"{server}/jobs/data-engineer"],
        documents_dir=tmp_path / "stored",
        failed_rows_dir=tmp_path / "failed",
    )
    [doc] = result.documents
    with store.engine.connect() as c:
        c.execute(sa.delete(schema.job_skills).where(schema.job_skills.c.document_id == doc.document_id))
        c.commit()
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        instance.add_dynamic_partitions(document_partitions.name, [doc.partition_key])
        rerun = dg.materialize(
            [document_skills],
            instance=instance,
            partition_key=doc.partition_key,
            resources={
                "record_store": RecordStoreResource(database_url=store.engine.url.render_as_string(hide_password=False))
            },
        )

    assert rerun.success
    assert doc.partition_key.startswith("job_description/127.0.0.1_jobs_data-engineer@")
    with store.engine.connect() as c:
        assert [s["name"] for s in store_docs.skills_of(c, "job_description", doc.record_id)] == [
            "Python",
            "SQL",
            "Spark",
            "Kafka",
        ]
