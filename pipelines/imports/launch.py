"""Launch an import of one file through `import_job`, in process, recorded in the Dagster instance."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg

from connectors import settings
from pipelines.imports import dropzone
from pipelines.imports.assets import config_for, import_files
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
        options: engine `ImportOptions` (its `entity` is ignored in favour of ENTITY); None for defaults.
        instance: Dagster instance; defaults to `DagsterInstance.get()` (needs DAGSTER_HOME).
        mapping_path: YAML mapping file, when options carry no parsed mapping.
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


def import_result_from_metadata(metadata: dict[str, Any]) -> Any:
    """Rebuild the engine's `ImportResult` from a materialization's `result` entry (ids come back as strings)."""
    from pipelines.imports.engine import ImportResult

    raw = metadata["result"]
    data = raw.value if isinstance(raw, dg.MetadataValue) else raw
    names = {f.name for f in dataclasses.fields(ImportResult)}
    return ImportResult(**{k: v for k, v in data.items() if k in names})


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """The description of the step failure (or run failure) that ended a run."""
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
                messages.append(data.error.message.strip())
        elif event.is_run_failure and not messages:
            messages.append(event.message or "run failed")
    return messages[-1] if messages else "run failed"
