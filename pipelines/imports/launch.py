"""Launch an import of one file through `import_job`, recorded in the Dagster instance.

Two ways: `launch_import` runs it in this process at once (the CLI's default, the demo);
`submit_import` queues it on a running Dagster webserver (GraphQL), where the daemon starts it
under the instance's run queue and concurrency limits like a sensor's run.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

from connectors import settings
from pipelines.imports import dropzone
from pipelines.imports.assets import config_for, import_files
from pipelines.instance import code_location, graphql_client, graphql_url
from resources import RecordStoreResource


def launch_import(
    path: str | Path,
    entity: str,
    account: str,
    options: Any = None,
    *,
    instance: dg.DagsterInstance | None = None,
    mapping_path: str = "",
    tags: dict[str, str] | None = None,
    log_level: str = "INFO",
) -> tuple[str, Any]:
    """Import PATH by running `import_job` in this process against the instance.

    The file's partition (`<entity>/<name>@<sha12>`) is added when missing, so the run shows in the
    UI's run history and under the partition like a sensor- or Launchpad-launched one.

    Args:
        path: file to import.
        entity: record type (applications, candidates, jobs, contracts).
        account: account slug.
        options: the `ImportConfig` to launch (its path, entity and account are set from the
            arguments); None for defaults.
        instance: Dagster instance; defaults to `DagsterInstance.get()` (needs DAGSTER_HOME).
        mapping_path: YAML mapping file, when given replacing the config's.
        tags: extra run tags.
        log_level: console log level of the run (the event log in the instance keeps everything).

    Returns:
        The run id and the engine's `ImportResult`, or None when the run failed
        (`failure_message(instance, run_id)` says why).
    """
    from pipelines.definitions import defs

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    sha = dropzone.file_sha256(path)
    key = dropzone.partition_key(entity, path.name, sha)
    instance = instance or dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(import_files.name, key):
        instance.add_dynamic_partitions(import_files.name, [key])
    config = config_for(path, entity, account, options, mapping_path=mapping_path)
    job = defs.resolve_job_def("import_job")
    result = job.execute_in_process(
        run_config=dg.RunConfig(
            ops={"imported_file": config}, loggers={"console": {"config": {"log_level": log_level}}}
        ),
        instance=instance,
        partition_key=key,
        raise_on_error=False,
        # the URL is read now, not when the definitions module was first imported
        resources={"record_store": RecordStoreResource(database_url=settings.database_url())},
        tags={
            "bulkops/entity": entity,
            "bulkops/file": path.name[:200],
            "bulkops/sha256": sha,
            "bulkops/launched_by": "cli",
            **(tags or {}),
        },
    )
    if not result.success:
        return result.run_id, None
    materializations = result.asset_materializations_for_node("imported_file")
    return result.run_id, import_result_from_metadata(materializations[-1].metadata) if materializations else None


_ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")
# the repository name Dagster gives a code location's `Definitions`
REPOSITORY = "__repository__"


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
    """Queue an import of PATH as an `import_job` run on the Dagster webserver at URL.

    The file's partition is added through GraphQL, then the run is submitted with it: it waits in
    the instance's run queue (`bulkops/kind: import` limits apply) and the daemon starts it. The run
    worker reads PATH, so it must be a path that machine sees (same host or a shared volume).

    Args:
        path: file to import.
        entity, account, options, mapping_path, tags: as for `launch_import`.
        url: the webserver (default `$BULKOPS_DAGSTER_GRAPHQL_URL`, else http://127.0.0.1:3000).

    Returns:
        The Dagster run id.

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the webserver refused the partition or the run (its message included).
    """
    from dagster_graphql import DagsterGraphQLClientError

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    sha = dropzone.file_sha256(path)
    key = dropzone.partition_key(entity, path.name, sha)
    url = graphql_url(url)
    client = graphql_client(url)
    selector = {"repositoryLocationName": code_location(), "repositoryName": REPOSITORY}
    try:
        added = _graphql(url, _ADD_PARTITION, {"selector": selector, "name": import_files.name, "key": key})[
            "addDynamicPartition"
        ]
        if added["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise RuntimeError(f"{url} refused partition {key}: {added.get('message') or added['__typename']}")
        config = config_for(path, entity, account, options, mapping_path=mapping_path)
        return client.submit_job_execution(
            "import_job",
            repository_location_name=code_location(),
            repository_name=REPOSITORY,
            run_config={"ops": {"imported_file": {"config": config.model_dump()}}},
            tags={
                "dagster/partition": key,
                "bulkops/entity": entity,
                "bulkops/file": path.name[:200],
                "bulkops/sha256": sha,
                "bulkops/launched_by": "cli-submit",
                **(tags or {}),
            },
        )
    except (DagsterGraphQLClientError, httpx.HTTPError) as exc:
        raise RuntimeError(_graphql_failure(url, exc)) from exc


def _graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The data of a GraphQL operation the client has no method for, posted as plain HTTP to URL/graphql."""
    response = httpx.post(f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(
            f"the Dagster webserver at {url} answered: {body['errors'][0].get('message', body['errors'][0])}"
        )
    return body["data"]


def _graphql_failure(url: str, exc: BaseException) -> str:
    """What went wrong talking to the webserver, without the GraphQL query the client's message holds."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    root = chain[-1]
    if any(isinstance(c, OSError) for c in chain):
        why = root.strerror if isinstance(root, OSError) and root.strerror else str(root).splitlines()[0]
        return f"cannot reach the Dagster webserver at {url}: {why}; start it (make dev) or set BULKOPS_DAGSTER_GRAPHQL_URL"
    text = str(root if root is not exc else exc).split(" during execution of query", 1)[0]
    return f"the Dagster webserver at {url} answered: {text.splitlines()[0] if text.strip() else type(root).__name__}"


def wait_for_run(run_id: str, *, url: str | None = None, timeout: float | None = None, poll: float = 1.0) -> str:
    """Poll the webserver until run RUN_ID ends; returns SUCCESS, FAILURE or CANCELED.

    Raises:
        TimeoutError: still running after TIMEOUT seconds (None: wait as long as it takes).
        RuntimeError: the webserver cannot be reached or refused the question (its message included).
    """
    from dagster_graphql import DagsterGraphQLClientError

    client = graphql_client(url)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError as exc:
            raise RuntimeError(_graphql_failure(graphql_url(url), exc)) from exc
        if status in TERMINAL:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {status} after {timeout:.0f} s")
        time.sleep(poll)


def run_page(run_id: str, url: str | None = None) -> str:
    """The run's page in the UI of the webserver at URL (default as for `submit_import`)."""
    return f"{graphql_url(url).rstrip('/')}/runs/{run_id}"


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
