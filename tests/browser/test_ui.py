"""The analyst's work in a real browser: headless Debian Chromium, driven by Playwright, on the session's `dagster dev`.

One test walks the steps in order, each a function of its own that takes the `Ui` and what earlier
steps made: a new file imported from the Launchpad of `import_new_file_job`, a bulk status update by
filter from the Launchpad of `bulk_operation_job` (preview, then execute that plan; the rows checked),
an export launched from the Launchpad of `export_job` (its file checked against the store), and
`bulk_operations_stats` materialized from its asset page (its metadata read on the page). Screenshots go to the test's temporary folder, or to docs/screenshots/ with BULKOPS_SCREENSHOTS=1.

No browser is downloaded: Playwright drives the system's Chromium (`CHROMIUM`, Debian's `chromium`
package, which `.ci/run` installs). Every wait is a Playwright auto-waiting locator or `expect`, or
a poll of the deployment; none is a fixed sleep.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect, sync_playwright

from connectors.store import RecordStore, schema
from tests.dagster_deployment import ROOT, Deployment
from tests.faults import WAIT_S, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("dagster_dev")]

CHROMIUM = os.environ.get("BULKOPS_CHROMIUM", "/usr/bin/chromium")
# the README's screenshots are rewritten only on request (BULKOPS_SCREENSHOTS=1), so a test run leaves the tree clean
PUBLISHED = ROOT / "docs" / "screenshots"
WAIT_MS = WAIT_S * 1000
SAMPLE = ROOT / "samples" / "applications.csv"
SAMPLE_MAPPING = ROOT / "samples" / "applications.mapping.yaml"
TERMINAL = re.compile(r"^(Success|Failure|Canceled)$")

RUN_STATUS = "query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"


@dataclass
class Ui:
    """A browser page on the deployment, and where its screenshots go."""

    page: Page
    deployment: Deployment
    failures: Path

    def open(self, path: str) -> None:
        self.page.goto(self.deployment.url + path)

    def screenshot(self, name: str) -> None:
        folder = PUBLISHED if os.environ.get("BULKOPS_SCREENSHOTS") == "1" else self.failures / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=folder / name)

    def fill_launchpad(self, job: str, config_yaml: str) -> None:
        """Open JOB's Launchpad and replace the config in its YAML editor (CodeMirror) by CONFIG_YAML."""
        self.open(f"/locations/bulkops/jobs/{job}/playground")
        editor = self.page.locator(".CodeMirror")
        expect(editor, f"the Launchpad of {job} shows its scaffolded config").to_contain_text("ops", timeout=WAIT_MS)
        editor.click()
        self.page.keyboard.press("Control+A")
        # one input event, like a paste: CodeMirror does not re-indent it line by line as it would typed keys
        self.page.keyboard.insert_text(config_yaml)
        # Launch Run is disabled while the new config is validated; enabled with "No errors", it is valid
        launch = self.page.get_by_role("button", name="Launch Run")
        expect(launch, f"the Launchpad of {job} validates the config").to_be_enabled(timeout=WAIT_MS)
        expect(self.page.get_by_text("No errors"), f"the Launchpad of {job} accepts the config").to_be_visible()

    def launch(self) -> str:
        """Click Launch Run on the Launchpad; the id of the run the UI opens."""
        self.page.get_by_role("button", name="Launch Run").click()
        self.page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=WAIT_MS)
        return self.page.url.rsplit("/runs/", 1)[1].split("?")[0]

    def wait_for_success(self, run_id: str, what: str) -> None:
        """On the run's page, wait until its status is final, then insist it is Success (here and in GraphQL)."""
        if f"/runs/{run_id}" not in self.page.url:
            self.open(f"/runs/{run_id}")
        status = self.page.get_by_text(TERMINAL).first
        expect(status, f"{what}: run {run_id} reaches a final status on its page").to_be_visible(timeout=WAIT_MS)
        shown = status.inner_text()
        known = self.deployment.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get("status")
        assert (shown, known) == ("Success", "SUCCESS"), (
            f"{what}: run {run_id} shows {shown!r} on its page and is {known} in GraphQL; "
            f"its events: {self.deployment.url}/runs/{run_id}"
        )


@contextlib.contextmanager
def step(ui: Ui, name: str) -> Iterator[None]:
    """Name the step in any failure, and keep a screenshot of the page as it was (under the test's tmp dir)."""
    started = time.monotonic()
    try:
        yield
        print(f"browser step '{name}': {time.monotonic() - started:.1f} s")
    except Exception as exc:
        shot = ui.failures / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        with contextlib.suppress(Exception):
            ui.page.screenshot(path=shot, full_page=True)
        raise AssertionError(f"browser step '{name}' failed (page {ui.page.url}, screenshot {shot}): {exc}") from exc


@pytest.fixture
def ui(deployment: Deployment, tmp_path: Path) -> Iterator[Ui]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does), or set BULKOPS_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        # the webserver's "join the community" dialog is marked seen as its Skip button does, so no
        # screenshot shows it; should it show up anyway, it is dismissed before the next action
        assert deployment.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
        try:
            yield Ui(page, deployment, tmp_path)
        finally:
            browser.close()


@pytest.fixture
def acct(deployment: Deployment) -> Iterator[tuple[RecordStore, str, uuid.UUID]]:
    store = RecordStore(deployment.store_url)
    slug = f"browser-{uuid.uuid4().hex[:6]}"
    yield store, slug, store.ensure_account(slug)
    store.dispose()


# -- the steps, in the order the test takes them ------------------------------------------------------------------


def import_from_the_launchpad(ui: Ui, store: RecordStore, slug: str, account_id: uuid.UUID) -> None:
    """samples/applications.csv imported for SLUG from the Launchpad of import_new_file_job (a path, no partition
    key typed): the request run and the import_job run it launches succeed, and the store holds the file's rows."""
    config = f"""ops:
  import_new_file:
    config:
      path: {SAMPLE}
      entity: applications
      account: {slug}
      mapping_path: {SAMPLE_MAPPING}
"""
    ui.fill_launchpad("import_new_file_job", config)
    ui.screenshot("launchpad-import.png")
    run_id = ui.launch()
    ui.wait_for_success(run_id, "the import of a new file launched from the Launchpad")
    ui.screenshot("run-import.png")
    with ui.deployment.instance() as instance:
        imports = instance.get_run_records(
            dg.RunsFilter(job_name="import_job", tags={"bulkops/requested_by_run": run_id})
        )
    assert len(imports) == 1, f"expected one import_job run requested by {run_id}, found {len(imports)}"
    ui.wait_for_success(imports[0].dagster_run.run_id, "the import_job run the Launchpad import started")
    # an application is one candidate (email) for one job: the file's later rows for the same pair update it
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pairs = {(r["Email"].strip().lower(), r["Job Code"].strip().upper()) for r in rows}
    apps = schema.applications
    with store.engine.connect() as conn:
        stored = list(conn.execute(sa.select(apps.c.external_id).where(apps.c.account_id == account_id)).scalars())
    assert len(stored) == len(pairs), f"the store holds {len(stored)} applications for {slug}, the file {len(pairs)}"
    assert set(stored) <= {r["Application ID"] for r in rows}, f"{slug} holds applications not in the file: {stored}"


def _applications(store: RecordStore, account_id: uuid.UUID) -> dict[str, tuple[str, str]]:
    """The account's applications: id -> (stage, status)."""
    apps = schema.applications
    query = sa.select(apps.c.id, apps.c.stage, apps.c.status).where(apps.c.account_id == account_id)
    with store.engine.connect() as conn:
        return {str(id_): (stage, status) for id_, stage, status in conn.execute(query)}


def _metadata_row(ui: Ui, key: str) -> Locator:
    """The row of metadata entry KEY in the run page's event log (the step output's metadata table)."""
    row = ui.page.locator("tr").filter(has=ui.page.locator("td", has_text=re.compile(rf"^{re.escape(key)}$"))).first
    expect(row, f"the run page shows the metadata entry {key}").to_be_visible(timeout=WAIT_MS)
    return row


def _metadata_value(ui: Ui, key: str) -> str:
    return _metadata_row(ui, key).locator("> td").last.inner_text().strip()


def bulk_update_by_filter_from_the_launchpad(ui: Ui, store: RecordStore, slug: str, account_id: uuid.UUID) -> None:
    """The applications in review put on hold from bulk_operation_job's Launchpad: a preview run shows the count and
    a sample of what would change and writes nothing; an execute run of that plan_id changes exactly those rows."""
    before = _applications(store, account_id)
    chosen = {id_ for id_, (stage, status) in before.items() if stage == "review" and status != "on_hold"}
    assert chosen, f"the sample import left no application in review for {slug}"
    config = f"""ops:
  bulk_operation:
    config:
      account: {slug}
      entity: applications
      operation: status_update
      params:
        status: on_hold
      where:
        - stage=review
"""
    ui.fill_launchpad("bulk_operation_job", config + "      mode: preview\n")
    ui.screenshot("launchpad-bulk.png")
    run_id = ui.launch()
    ui.wait_for_success(run_id, "the preview of the bulk status update by filter")
    count = _metadata_value(ui, "count")
    assert count == str(len(chosen)), f"the preview shows count {count}, the store has {len(chosen)} in review"
    plan_id = _metadata_value(ui, "plan_id")
    assert re.fullmatch(r"[0-9a-f]{32}", plan_id), f"the preview shows plan_id {plan_id!r}"
    # the sample: each record with its status before and after (all of them: fewer than the sample's 20)
    sample = _metadata_row(ui, "sample (first 20)").locator("tbody tr")
    shown = {row.locator("td").first.inner_text().strip(): row.inner_text() for row in sample.all()}
    assert set(shown) == chosen, f"the preview's sample lists {sorted(shown)}, the store's records in review {chosen}"
    assert all("on_hold" in text for text in shown.values()), f"the sample's after columns: {shown}"
    assert _applications(store, account_id) == before, "the preview changed records"
    # the whole output, metadata and sample, in the event's message dialog
    output = ui.page.locator("div").filter(has=sample.first).filter(has=ui.page.get_by_text("View full message")).last
    output.get_by_text("View full message").click()
    dialog = ui.page.get_by_role("dialog")
    expect(dialog.get_by_text(plan_id).first, "the full message of the preview's output").to_be_visible()
    ui.screenshot("run-bulk-preview.png")
    ui.page.keyboard.press("Escape")

    ui.fill_launchpad("bulk_operation_job", config + f"      mode: execute\n      plan_id: {plan_id}\n")
    run_id = ui.launch()
    ui.wait_for_success(run_id, "the execution of the previewed bulk status update")
    processed = _metadata_value(ui, "processed_count")
    assert processed == str(len(chosen)), f"the execute run shows processed_count {processed}, expected {len(chosen)}"
    after = _applications(store, account_id)
    changed = {id_ for id_ in before if after[id_] != before[id_]}
    assert changed == chosen, f"the bulk job changed {sorted(changed)}, the preview chose {sorted(chosen)}"
    assert {after[id_] for id_ in chosen} == {(stage, "on_hold") for stage in ["review"]}, f"after: {after}"


def export_from_the_launchpad(ui: Ui, store: RecordStore, slug: str, account_id: uuid.UUID, out: Path) -> Path:
    """The applications in review, exported from export_job's Launchpad; the file holds exactly the store's rows."""
    config = f"""ops:
  write_export:
    config:
      account: {slug}
      entity: applications
      where:
        - stage=review
      columns:
        - external_id:Ref
        - candidate_email:Email
        - stage
      format: csv
      out_dir: {out}
"""
    ui.fill_launchpad("export_job", config)
    ui.screenshot("launchpad-export.png")
    run_id = ui.launch()
    ui.wait_for_success(run_id, "the export launched from the Launchpad")
    expect(
        ui.page.get_by_text(re.compile(r"exported \d+ rows of applications")).first,
        "the export run's log says how many rows it wrote",
    ).to_be_visible()
    ui.screenshot("run-export.png")

    files = sorted(out.glob("*.csv"))
    assert len(files) == 1, f"expected one CSV in {out}, found {[f.name for f in files]}"
    with files[0].open(newline="", encoding="utf-8") as f:
        exported = list(csv.reader(f))
    apps, users = schema.applications, schema.users
    query = (
        sa.select(apps.c.external_id, users.c.email, apps.c.stage)
        .join(users, users.c.id == apps.c.candidate_id)
        .where(apps.c.account_id == account_id, apps.c.stage == "review", apps.c.deleted_at.is_(None))
    )
    with store.engine.connect() as conn:
        expected = sorted([list(row) for row in conn.execute(query)])
    assert expected, "the sample import left no application in review to export"
    assert exported[0] == ["Ref", "Email", "stage"], f"{files[0].name}: header {exported[0]}"
    assert sorted(exported[1:]) == expected, f"{files[0].name} does not hold the store's applications in review"
    return files[0]


def stats_from_the_asset_page(ui: Ui, slug: str) -> None:
    """bulk_operations_stats materialized from its asset page; the page shows this account's numbers."""
    key = dg.AssetKey("bulk_operations_stats")
    with ui.deployment.instance() as instance:
        before = {r.run_id for r in instance.fetch_materializations(key, limit=1000).records}
    ui.open("/assets/bulk_operations_stats")
    ui.page.get_by_role("button", name=re.compile(r"Materialize$")).click()

    def ours() -> dg.AssetMaterialization | None:
        # the schedule also materializes it every 5 minutes: ours is the new one no schedule launched
        for record in instance.fetch_materializations(key, limit=20).records:
            if record.run_id in before:
                continue
            run = instance.get_run_by_id(record.run_id)
            if run and "dagster/schedule_name" not in run.tags:
                return record.asset_materialization
        return None

    with ui.deployment.instance() as instance:
        materialization = wait_for(ours, "the materialization launched by the Materialize button")
    metric = f"account/{slug}/succeeded"
    value = materialization.metadata[metric].value
    assert value == 2, f"{metric} is {value} in the materialization, expected 2: the sample import and the bulk job"

    # the open page picks a new materialization up late (minutes under load): load it again
    ui.page.reload()
    # the summary is a table, shown inline however many accounts the database holds (a Markdown
    # entry of 1,000 characters or more would hide behind a button)
    expect(
        ui.page.get_by_role("cell", name="all", exact=True).first, "the summary table's total row, inline"
    ).to_be_visible(timeout=WAIT_MS)
    ui.page.get_by_placeholder("Filter metadata keys").fill(f"account/{slug}/")
    row = ui.page.get_by_role("row").filter(has_text=metric)
    expect(row.locator("td").last, f"the metadata table lists {metric} = 2").to_have_text("2")
    ui.page.get_by_placeholder("Filter metadata keys").fill("")
    ui.screenshot("asset-stats.png")


def test_the_analyst_imports_updates_exports_and_reads_statistics_in_the_dagster_ui(
    ui: Ui, acct: tuple[RecordStore, str, uuid.UUID], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, slug, account_id = acct
    # this process launches the import on the deployment's instance, like `bulkops import` beside `make dev`
    monkeypatch.setenv("DAGSTER_HOME", str(ui.deployment.home))
    monkeypatch.setenv("BULKOPS_VAR_DIR", ui.deployment.env["BULKOPS_VAR_DIR"])
    out = tmp_path / "exports"

    with step(ui, "1 import a new file from the Launchpad"):
        import_from_the_launchpad(ui, store, slug, account_id)
    with step(ui, "2 bulk status update by filter: preview, then execute that plan"):
        bulk_update_by_filter_from_the_launchpad(ui, store, slug, account_id)
    with step(ui, "3 export from the Launchpad"):
        export_from_the_launchpad(ui, store, slug, account_id, out)
    with step(ui, "4 statistics on the asset page"):
        stats_from_the_asset_page(ui, slug)
    shutil.rmtree(out)
