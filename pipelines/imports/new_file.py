"""Import a new file from the Launchpad: no partition key to type.

`import_new_file_job` takes a path (or the name of a file waiting in the entity's drop folder) and
the import options, registers the file's `import_files` partition (`<entity>/<name>@<sha12>`, from
its content hash) and launches the partitioned `import_job` run of that partition through
`pipelines.imports.launch` — the run a drop-folder sensor or `bulkops import` would launch — then
waits for it. The import's result is the `imported_file` partition's materialization, as for any
other import; this run shows it too.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from connectors import settings
from pipelines import runs
from pipelines.imports import dropzone, launch
from pipelines.imports.assets import ImportConfig
from pipelines.instance import record_process
from resources import RecordStoreResource

IMPORT_NEW_FILE_JOB_NAME = "import_new_file_job"


class NewFileImportConfig(ImportConfig):
    """A file (path, or name in the drop folder) and the import's options; the partition is registered for you."""

    file_name: str = Field(
        default="",
        description="Instead of path: the name of a file waiting in the entity's drop folder "
        "($BULKOPS_DROPZONE/<entity>/, e.g. applications.csv).",
    )
    wait: bool = Field(
        default=True,
        description="Wait for the import run and show its counts here; off: return once the import run is launched.",
    )
    timeout_s: float = Field(default=3600.0, gt=0, description="How long to wait for the import run, in seconds.")

    def import_config(self) -> ImportConfig:
        return ImportConfig(**{name: getattr(self, name) for name in ImportConfig.model_fields})


def _refuse(message: str) -> dg.Failure:
    return dg.Failure(description=message, allow_retries=False)


def resolve_file(config: NewFileImportConfig, entity: str) -> Path:
    """The file CONFIG names: its path, or its name in ENTITY's drop folder.

    Raises:
        dg.Failure: neither or both given, or no such file (the message names it and the folder).
    """
    if bool(config.path.strip()) == bool(config.file_name.strip()):
        raise _refuse("give path (a file to import) or file_name (a file in the drop folder), one of them")
    if config.path.strip():
        path = Path(config.path.strip()).expanduser()
    else:
        name = config.file_name.strip()
        if Path(name).name != name:
            raise _refuse(f"file_name {name!r} must be a name in the drop folder, not a path (use path)")
        path = dropzone.entity_dir(entity) / name
    if not path.is_file():
        where = "" if config.path.strip() else f" (files waiting: {', '.join(_waiting(entity)) or 'none'})"
        raise _refuse(f"file to import not found: {path}{where}")
    return path.resolve()


def _waiting(entity: str) -> list[str]:
    folder = dropzone.entity_dir(entity)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and dropzone.is_candidate(p.name))[:20]


@dg.op(
    description=(
        "Registers the file's import_files partition (<entity>/<name>@<sha12> from its content hash) and launches "
        "the import_job run of that partition, then waits for it and reports its counts."
    ),
    tags={"bulkops/kind": "import_request"},
)
def import_new_file(
    context: dg.OpExecutionContext, config: NewFileImportConfig, record_store: RecordStoreResource
) -> dg.Output[dict]:
    record_process(context)
    entity = config.entity or "applications"
    path = resolve_file(config, entity)
    sha = dropzone.file_sha256(path)
    key = dropzone.partition_key(entity, path.name, sha)
    account = config.account or settings.default_account()
    try:
        run_id = launch.start_import(
            path,
            entity,
            account,
            config.import_config(),
            instance=context.instance,
            database_url=record_store.database_url,
            tags={"bulkops/launched_by": "launchpad", "bulkops/requested_by_run": context.run.run_id},
        )
    except (FileNotFoundError, RuntimeError) as exc:
        raise _refuse(f"could not launch the import of {path.name}: {exc}") from exc
    context.log.info(f"partition {key}: import_job run {run_id} launched for {path}")
    metadata: dict = {"partition": key, "file": dg.MetadataValue.path(str(path)), "import_run_id": run_id}
    if not config.wait:
        return dg.Output({"partition": key, "run_id": run_id}, metadata=metadata)
    status = runs.wait_for_run(run_id, instance=context.instance, timeout=config.timeout_s)
    if status != dg.DagsterRunStatus.SUCCESS:
        reason = launch.failure_message(context.instance, run_id)
        raise dg.Failure(
            description=f"import of {path.name} (run {run_id}) {status.value.lower()}: {reason}",
            metadata=metadata,
            allow_retries=False,
        )
    result = launch.import_result(context.instance, run_id)
    out = {"partition": key, "run_id": run_id}
    if result is not None:
        counts = {k: getattr(result, k) for k in ("rows_read", "created", "updated", "skipped", "errors")}
        metadata.update(counts, import_id=str(result.import_id), status=result.status)
        out.update(counts, import_id=str(result.import_id), status=result.status)
        context.log.info(f"imported {path.name}: {counts}")
    return dg.Output(out, metadata=metadata)


@dg.job(
    name=IMPORT_NEW_FILE_JOB_NAME,
    description=(
        "Import a new file from the Launchpad: give its path, or the name of a file in the drop folder, and the "
        "import options. The run registers the file's partition of imported_file itself and launches that "
        "partition's import_job run; the result is on the imported_file partition."
    ),
    tags={"bulkops/kind": "import_request", "bulkops/group": "imports"},
    executor_def=dg.in_process_executor,
)
def import_new_file_job() -> None:
    import_new_file()
