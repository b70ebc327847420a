"""The export job: one run writes one export file and records it as a materialization of `exports/<entity>`.

Past exports are the asset's materializations: the UI lists them with their path, rows, size,
filter in words and a preview of the first rows. A terminated run leaves no file.
"""

import dagster as dg

from connectors.store import registry
from connectors.store.export import ExportError, ExportResult
from pipelines.exports.config import ExportConfig, ExportRefused, run_export
from pipelines.instance import record_process, run_terminating
from pipelines.monitoring.tags import tag_run
from pipelines.records import record_key
from resources import RecordStoreResource

GROUP = "exports"
EXPORT_JOB_NAME = "export_job"


def export_key(entity: str) -> dg.AssetKey:
    """The asset key of an entity's export files: `exports/<entity>`."""
    return dg.AssetKey(["exports", registry.canonical(entity)])


export_specs: list[dg.AssetSpec] = [
    dg.AssetSpec(
        key=export_key(name),
        deps=[record_key(name)],
        description=(
            f"Files exported from the {name} records (CSV, Excel or Parquet) by `export_job`, an export preset, "
            "`bulkops export` or the API's exports-create. Each materialization is one file: its path, account, "
            "row count, size, the filter in words and a preview of its first rows."
        ),
        group_name=GROUP,
        kinds={"csv", "parquet"},
        tags={"bulkops/entity": name},
    )
    for name in registry.ENTITY_NAMES
]


def _preview(result: ExportResult) -> dg.MetadataValue:
    columns = result.headers
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c, "") for c in columns}) for row in result.preview],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def materialization(
    result: ExportResult, config: ExportConfig, entity: str, preset: str = ""
) -> dg.AssetMaterialization:
    """What the UI shows of one export file."""
    metadata = {
        "path": dg.MetadataValue.path(str(result.path)),
        "account": config.account_slug(),
        "format": config.format,
        "dagster/row_count": result.rows,
        "size_bytes": result.size,
        "filter": result.filter_words,
        "columns": ", ".join(result.headers),
        "preview": _preview(result),
    }
    if result.sheets:
        metadata["sheets"] = result.sheets
    if preset:
        metadata["preset"] = preset
    return dg.AssetMaterialization(
        asset_key=export_key(entity),
        description=f"{result.rows} rows of {result.filter_words} to {result.path.name}",
        metadata=metadata,
    )


@dg.op(
    description=(
        "Writes one export: the account's records of the entity that pass the filters, with the chosen columns, "
        "streamed into CSV, Excel or Parquet under a temporary name and renamed when complete. Records a "
        "materialization of exports/<entity> with the path, rows, size, filter and a preview."
    ),
    tags={"bulkops/kind": "export"},
    out=dg.Out(str, description="The path of the file written."),
)
def write_export(context: dg.OpExecutionContext, config: ExportConfig, record_store: RecordStoreResource) -> str:
    record_process(context)
    preset = context.run.tags.get("bulkops/preset", "")
    # the Runs page filters by kind, account and entity, whoever launched the run
    if config.entity in registry.ENTITY_NAMES or config.entity in registry.ALIASES:
        tag_run(context, kind="export", account=config.account_slug(), entity=registry.canonical(config.entity))

    def progress(rows: int) -> None:
        # termination arrives as an interrupt where Dagster can send one; this stops the rest
        if run_terminating(context):
            raise dg.Failure(description="run terminated: the export stopped and left no file", allow_retries=False)
        context.log.debug(f"{rows} rows written")

    try:
        result = run_export(record_store.store, config, run_id=context.run.run_id, preset=preset, on_batch=progress)
    except (ExportRefused, ExportError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    for stale in result.removed:
        context.log.warning(f"removed {stale.name}, the temporary file of an export whose process died")
    entity = registry.canonical(config.entity)
    context.log_event(materialization(result, config, entity, preset))
    context.log.info(f"exported {result.rows} rows of {result.filter_words} to {result.path} ({result.size} bytes)")
    return str(result.path)


@dg.graph(description="One export file from the record store.")
def export_graph() -> None:
    write_export()


def export_job_for(name: str, description: str, config: ExportConfig | None = None, tags: dict | None = None):  # type: ignore[no-untyped-def]
    return export_graph.to_job(
        name=name,
        description=description,
        config=dg.RunConfig(ops={"write_export": config}) if config is not None else None,
        tags={"bulkops/kind": "export", "bulkops/group": GROUP, **(tags or {})},
        executor_def=dg.in_process_executor,
    )


export_job = export_job_for(
    EXPORT_JOB_NAME,
    "Exports an account's records of any entity, filtered (stage, status, job, source, tags, date ranges, any field), "
    "with chosen and renamed columns and related fields (candidate email and name, job code and title, tags), to "
    "CSV (formula cells neutralised), Excel or Parquet under var/exports/. Each export is a materialization of "
    "exports/<entity>. Terminate the run to cancel: no file is left.",
)
