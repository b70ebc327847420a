"""Launch an import of one file as an `import_job` run, through the instance's run launcher.

`launch_import` launches the run and waits for its result (the CLI's default, the demo);
`start_import` only launches it; `submit_import` insists on a running Dagster webserver, where the
run waits in the run queue under the instance's concurrency limits like a sensor's run. How a run
is launched, watched and terminated is `pipelines.runs`'s.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines import runs
from pipelines.imports import dropzone
from pipelines.imports.assets import config_for, import_files, imported_file
from pipelines.instance import code_location, graphql_url
from resources import store_run_config

JOB_NAME = "import_job"
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")

_ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def start_import(
    path: str | Path,
    entity: str,
    account: str,
    options: Any = None,
    *,
    instance: dg.DagsterInstance | None = None,
    url: str | None = None,
    mapping_path: str = "",
    database_url: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Launch an `import_job` run importing PATH; its run id.

    The file's partition (`<entity>/<name>@<sha12>`) is added when missing, so the run is listed
    under the partition like a sensor- or Launchpad-launched one. The run worker opens PATH, so it
    must be a path that machine sees (same host or a shared volume).

    Args:
        path: file to import.
        entity: record type (applications, candidates, jobs, contracts).
        account: account slug.
        options: the `ImportConfig` to launch (its path, entity and account are set from the arguments); None for defaults.
        instance: the Dagster instance (default `$DAGSTER_HOME`'s).
        url: a Dagster webserver to submit to (default: found as `pipelines.runs.webserver` says).
        mapping_path: YAML mapping file, when given replacing the config's.
        database_url: the record store the run writes (default: the run worker's own settings).
        tags: extra run tags.

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: Dagster refused the partition or the run (its message included).
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    sha = dropzone.file_sha256(path)
    key = dropzone.partition_key(entity, path.name, sha)
    home = runs.dagster_home(instance)
    server = runs.webserver(home, url)
    if server:
        selector = {"repositoryLocationName": code_location(), "repositoryName": runs.REPOSITORY}
        added = runs.graphql(server, _ADD_PARTITION, {"selector": selector, "name": import_files.name, "key": key})[
            "addDynamicPartition"
        ]
        if added["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise RuntimeError(f"{server} refused partition {key}: {added.get('message') or added['__typename']}")
    elif instance is not None:
        _add_partition(instance, key)
    else:
        with dg.DagsterInstance.from_config(str(home)) as own:
            _add_partition(own, key)
    config = config_for(path, entity, account, options, mapping_path=mapping_path)
    run_config: dict[str, Any] = {"ops": {"imported_file": {"config": config.model_dump()}}}
    if database_url:
        run_config["resources"] = store_run_config(database_url)
    return runs.launch_run(
        JOB_NAME,
        run_config=run_config,
        tags={
            "dagster/partition": key,
            "bulkops/entity": entity,
            "bulkops/file": path.name[:200],
            "bulkops/sha256": sha,
            "bulkops/launched_by": "cli",
            **(tags or {}),
        },
        instance=instance,
        url=server,
    )


def _add_partition(instance: dg.DagsterInstance, key: str) -> None:
    if not instance.has_dynamic_partition(import_files.name, key):
        instance.add_dynamic_partitions(import_files.name, [key])


def launch_import(
    path: str | Path,
    entity: str,
    account: str,
    options: Any = None,
    *,
    instance: dg.DagsterInstance | None = None,
    url: str | None = None,
    mapping_path: str = "",
    database_url: str | None = None,
    tags: dict[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[str, Any]:
    """Import PATH as an `import_job` run and wait for it (`start_import`'s arguments).

    Returns:
        The run id and the engine's `ImportResult`, or None when the run did not succeed
        (`failure_message(instance, run_id)` says why).
    """
    run_id = start_import(
        path,
        entity,
        account,
        options,
        instance=instance,
        url=url,
        mapping_path=mapping_path,
        database_url=database_url,
        tags=tags,
    )
    status = runs.wait_for_run(run_id, instance=instance, url=url, timeout=timeout)
    if status != dg.DagsterRunStatus.SUCCESS:
        return run_id, None
    if instance is not None:
        return run_id, import_result(instance, run_id)
    with dg.DagsterInstance.from_config(str(runs.dagster_home())) as own:
        return run_id, import_result(own, run_id)


def import_result(instance: dg.DagsterInstance, run_id: str) -> Any:
    """The engine's `ImportResult` of a finished run, from its materialization; None when it has none here."""
    run = instance.get_run_by_id(run_id)
    key = run.tags.get("dagster/partition") if run is not None else None
    if key is None:
        return None
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=imported_file.key, asset_partitions=[key]), limit=20, ascending=False
    )
    for record in found.records:
        if record.run_id == run_id and record.asset_materialization is not None:
            return import_result_from_metadata(record.asset_materialization.metadata)
    return None


def submit_import(
    path: str | Path,
    entity: str,
    account: str,
    options: Any = None,
    *,
    url: str | None = None,
    mapping_path: str = "",
    tags: dict[str, str] | None = None,
) -> str:
    """Queue an import of PATH on the Dagster webserver at URL; the run id (see `start_import`).

    URL defaults to `$BULKOPS_DAGSTER_GRAPHQL_URL`, else http://127.0.0.1:3000; the webserver's
    daemon starts the run under the run queue's limits, and its worker uses its own record store.
    """
    return start_import(
        path,
        entity,
        account,
        options,
        url=graphql_url(url),
        mapping_path=mapping_path,
        tags={"bulkops/launched_by": "cli-submit", **(tags or {})},
    )


def wait_for_run(run_id: str, *, url: str | None = None, timeout: float | None = None, poll: float = 1.0) -> str:
    """Poll the webserver at URL (as for `submit_import`) until RUN_ID ends; SUCCESS, FAILURE or CANCELED.

    Raises:
        TimeoutError: still running after TIMEOUT seconds (None: wait as long as it takes).
        RuntimeError: the webserver cannot be reached or refused the question (its message included).
    """
    return runs.wait_for_run(run_id, url=graphql_url(url), timeout=timeout, poll=poll).value


def run_page(run_id: str, url: str | None = None) -> str:
    """The run's page in the UI of the webserver at URL (default as for `submit_import`)."""
    return runs.run_page(run_id, url)


def import_result_from_metadata(metadata: dict[str, Any]) -> Any:
    """Rebuild the engine's `ImportResult` from a materialization's `result` entry (ids come back as strings)."""
    from pipelines.imports.engine import ImportResult

    raw = metadata["result"]
    data = raw.value if isinstance(raw, dg.MetadataValue) else raw
    names = {f.name for f in dataclasses.fields(ImportResult)}
    return ImportResult(**{k: v for k, v in data.items() if k in names})


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run failed, in one line: its last step failure's description, or its run failure.

    An unexpected step error is told by its first line, without the exception's class path and
    without any SQL statement or parameters a database error carries.
    """
    messages: list[str] = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                messages.append(data.user_failure_data.description)
            elif data.error:
                messages.append(_error_line(data.error))
        elif event.is_run_failure and not messages:
            messages.append(event.message or "run failed")
    return " ".join(messages[-1].split()) if messages else "run failed"


def _error_line(error: Any) -> str:
    """'OperationalError: (psycopg.OperationalError) ... [SQL: ...]' -> the driver's message alone."""
    text = error.message.split("\n[SQL:", 1)[0].strip()
    prefix = f"{error.cls_name}: "
    if prefix in text:
        text = text.split(prefix, 1)[1]
    text = re.sub(r"^\([\w.]+\)\s*", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{error.cls_name}: {lines[0]}" if lines else error.cls_name
