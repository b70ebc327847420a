"""The imported-file asset: one dynamic partition per file, materialized by the import engine."""

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from connectors import settings
from connectors.store.changes import all_failed_message
from connectors.store.errors import describe_error
from connectors.store.faults import is_transient
from connectors.store.history import type_word
from pipelines.imports import dropzone
from pipelines.imports.options import ImportFields, ImportOptions, load_mapping
from pipelines.instance import reap_dead_runs, record_process, run_terminating
from pipelines.monitoring.errors import failed_records_metadata
from pipelines.monitoring.tags import tag_run
from pipelines.partition_checks import partition_check
from pipelines.records import import_changes
from pipelines.retries import RETRY_POLICY, retries_exhausted
from resources import RecordStoreResource

import_files = dg.DynamicPartitionsDefinition(name="import_files")

ERROR_RATE_CHECK = "error_rate_under_threshold"
# per partition: the file was imported; fails with the file's reason (the partitions view shows a partition of a
# shared run that succeeded as missing, however its file ended)
IMPORTED_CHECK = "imported"
IMPORTED_FILE_KEY = dg.AssetKey("imported_file")

SHA_TAG = "bulkops/sha256"
ACTIVE_STATUSES = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
# an identical file launched while another run imports it waits up to BUSY_RETRIES x BUSY_WAIT_SECONDS
BUSY_RETRIES = 20
BUSY_WAIT_SECONDS = 30

HISTORY_COLUMNS = ("date_time", "type", "file", "created", "updated", "skipped", "errors", "status")


class ImportConfig(dg.Config, ImportFields):
    """The launch config of one import, the op config of `imported_file` (the Launchpad form).

    Every import option (`ImportFields`, declared once) plus the file, the account and where the
    mapping comes from. The drop-folder sensors and `bulkops import` launch this model too; the
    command's flags are generated from its fields.
    """

    path: str = Field(
        default="",
        description="File to import (CSV, TSV, Parquet or Excel). Empty: the partition's file in the drop zone "
        "(waiting, failed/ or processed/), found from the partition key.",
    )
    account: str = Field(
        default_factory=settings.default_account,
        description="Slug of the account to import into; empty: $BULKOPS_ACCOUNT when the run starts, else demo.",
    )
    mapping_path: str = Field(
        default="", description="YAML field mapping file; empty, and no inline mapping: columns mapped by their names."
    )
    mapping_yaml: str = Field(default="", description="Inline YAML field mapping; wins over the mapping file.")

    def load_mapping(self) -> dict | None:
        """The parsed mapping (inline YAML first, then the file), or None to map by header names.

        Raises:
            MappingError: the mapping is unreadable or names an unknown field or transform.
        """
        if self.mapping_yaml.strip():
            return load_mapping(self.mapping_yaml)
        if self.mapping_path:
            return load_mapping(self.mapping_path)
        return None

    def options(self, entity: str | None = None, *, with_mapping: bool = True) -> ImportOptions:
        """What the engine reads: this config's options, for ENTITY when given, with the mapping parsed.

        Args:
            entity: the entity the import resolved (the partition's); None keeps the config's.
            with_mapping: parse the mapping; off checks the options without reading it.

        Raises:
            ImportFailed: an option is invalid ("invalid import options: ..."), or the mapping is
                (`MappingError`).
        """
        values: dict[str, Any] = {name: getattr(self, name) for name in ImportFields.model_fields}
        values["entity"] = entity or self.entity
        mapping = self.load_mapping() if with_mapping else None
        return ImportOptions(**values, mapping=mapping)


def config_for(
    path: str | Path, entity: str, account: str, config: ImportConfig | None = None, *, mapping_path: str = ""
) -> ImportConfig:
    """The launch config importing PATH as ENTITY into ACCOUNT: CONFIG (None: every default) with
    the file, the entity and the account set, and MAPPING_PATH when given."""
    if config is not None and not isinstance(config, ImportConfig):
        raise TypeError(f"expected an ImportConfig, got {type(config).__name__}")
    values: dict[str, Any] = config.model_dump() if config is not None else {}
    values.update(path=str(path), entity=entity, account=account)
    if mapping_path:
        values["mapping_path"] = mapping_path
    return ImportConfig(**values)


def _resolve_entity(config: ImportConfig, ref: dropzone.PartitionRef | None) -> str:
    if ref is not None:
        if config.entity and config.entity != ref.entity:
            raise dg.Failure(
                description=f"config entity {config.entity!r} contradicts the partition's entity {ref.entity!r}",
                allow_retries=False,
            )
        return ref.entity
    return config.entity or "applications"


def _resolve_path(config: ImportConfig, partition_key: str, ref: dropzone.PartitionRef | None, entity: str) -> Path:
    if config.path:
        path = Path(config.path).expanduser()
        if path.is_file():
            return path.resolve()
        # a drop-zone file moved by an earlier attempt of this partition
        found = dropzone.locate(ref) if ref is not None and dropzone.is_in_dropzone(path, entity) else None
        if found is not None:
            return found
        raise dg.Failure(description=f"file to import not found: {path}", allow_retries=False)
    if ref is not None:
        found = dropzone.locate(ref)
        if found is not None:
            return found
    else:
        candidate = dropzone.entity_dir(entity) / partition_key
        if candidate.is_file():
            return candidate
    raise dg.Failure(
        description=f"no file for partition {partition_key!r} in {dropzone.entity_dir(entity)} "
        "(waiting, failed/ or processed/); set `path` in the launch config",
        allow_retries=False,
    )


def _earlier_run_importing(context: dg.OpExecutionContext | dg.AssetExecutionContext, sha: str) -> str | None:
    """The id of an earlier, still active run importing the same content, if any."""
    instance, me = context.instance, context.run.run_id
    if context.run.tags.get(SHA_TAG) != sha:
        # UI-launched runs lack the tag the sensor and the CLI set
        instance.add_run_tags(me, {SHA_TAG: sha})
    # a run whose process is gone (killed with -9) is failed now, so a resume need not wait for it
    for dead in reap_dead_runs(instance, tags={SHA_TAG: sha}):
        context.log.info(f"run {dead} imported the same content but its process is gone: marked failed")
    active = instance.get_run_records(filters=dg.RunsFilter(tags={SHA_TAG: sha}, statuses=ACTIVE_STATUSES))
    mine = instance.get_run_record_by_id(me)
    if mine is None:
        return None
    earlier = [
        r.dagster_run.run_id
        for r in active
        if r.dagster_run.run_id != me and (r.create_timestamp, r.dagster_run.run_id) < (mine.create_timestamp, me)
    ]
    return earlier[0] if earlier else None


def _history_metadata(result: Any, started: float) -> dict[str, Any]:
    return {
        "date_time": dg.MetadataValue.timestamp(started),
        "type": type_word(result.type),
        "file": result.file or "--",
        "created": result.created,
        "updated": result.updated,
        "skipped": result.skipped,
        "errors": result.errors,
        "status": result.status,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _import_partition(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    config: ImportConfig,
    record_store: RecordStoreResource,
    *,
    key: str,
    last_attempt: bool,
    attempt: int = 1,
    tag_change_set: bool = True,
    quiet: bool = False,
) -> dg.MaterializeResult:
    """Import the file of partition KEY; its materialization's metadata and error-rate check.

    The step of `imported_file` runs it for its one partition; a shared run (`shared_import_job`)
    runs it for each of its files, logging what it returns as that partition's events.
    LAST_ATTEMPT: a transient error moves the file to failed/. TAG_CHANGE_SET: tag the run with
    the import's change set (a shared run has many, so it does not). QUIET: no log lines and no
    progress event for the first batch (a shared run's small files: each event is a write).
    """
    from pipelines.imports.engine import run_import
    from pipelines.imports.errors import ImportFailed

    started = time.time()
    ref = dropzone.parse_partition_key(key)
    entity = _resolve_entity(config, ref)
    path = _resolve_path(config, key, ref, entity)
    sha = dropzone.file_sha256(path)
    if ref is not None and sha[: dropzone.SHA_PREFIX_LEN] != ref.sha12:
        raise dg.Failure(
            description=f"{path} changed since partition {key!r} was created (sha256 {sha[:12]}…); "
            "a changed file gets its own partition",
            allow_retries=False,
        )
    busy = _earlier_run_importing(context, sha)
    if busy is not None:
        # the engine would resume the same unfinished import twice at once; wait for the earlier run
        context.log.info(f"run {busy} is importing the same content; waiting {BUSY_WAIT_SECONDS}s")
        raise dg.RetryRequested(max_retries=BUSY_RETRIES, seconds_to_wait=BUSY_WAIT_SECONDS)
    in_dropzone = dropzone.is_in_dropzone(path, entity)
    source_name = (
        dropzone.original_name(path.name) if path.parent.name in (dropzone.PROCESSED, dropzone.FAILED) else path.name
    )
    if not quiet:
        context.log.info(f"importing {path} as {entity} into account {config.account} (attempt {attempt})")

    tag_run(context, kind="import", account=config.account, entity=entity)

    def on_progress(p: Any) -> None:
        if quiet and p.batches_committed <= 1:
            return
        if tag_change_set:
            tag_run(context, kind="import", account=config.account, entity=entity, change_set_id=p.import_id)
        metadata = {
            "import_id": str(p.import_id),
            "rows_read": p.rows_read,
            "created": p.created,
            "updated": p.updated,
            "skipped": p.skipped,
            "errors": p.errors,
            "batches_committed": p.batches_committed,
        }
        context.log_event(dg.AssetObservation(asset_key=IMPORTED_FILE_KEY, partition=key, metadata=metadata))
        context.log.info(
            f"batch {p.batches_committed}: {p.rows_read} rows read, {p.created} created, "
            f"{p.updated} updated, {p.skipped} skipped, {p.errors} errors"
        )

    outcome: str | None = None
    try:
        try:
            options = config.options(entity)
            store = record_store.store
            account_id = store.account_id(config.account)
            result = run_import(
                store,
                account_id,
                path,
                options,
                source_name=source_name,
                failed_rows_dir=settings.var_dir() / "imports" / "failed-rows",
                dagster_run_id=context.run.run_id,
                partition_key=key,
                on_progress=on_progress,
                should_stop=lambda: run_terminating(context),
            )
        except dg.Failure:
            outcome = dropzone.FAILED
            raise
        except ImportFailed as exc:
            outcome = dropzone.FAILED
            reason = exc.message.removeprefix(f"{source_name}: ")
            failure_md: dict[str, Any] = {
                "file": str(path),
                "partition": key,
                "error": type(exc).__name__,
                "reason": reason,
            }
            failed = getattr(exc, "result", None)
            if failed is not None:
                _report_records(context, entity, failed, key)
                failure_md.update(
                    {k: getattr(failed, k) for k in ("created", "updated", "skipped", "errors", "rows_read")}
                )
                failure_md["import_id"] = str(failed.import_id)
                if failed.failed_rows_path:
                    failure_md["failed_rows"] = dg.MetadataValue.path(str(failed.failed_rows_path))
                if failed.errors:
                    failure_md.update(failed_records_metadata(store, failed.import_id, kind="import"))
            raise dg.Failure(
                description=f"import of {source_name} failed: {reason}", metadata=failure_md, allow_retries=False
            ) from exc
        except Exception as exc:
            if is_transient(exc):
                if last_attempt:
                    outcome = dropzone.FAILED
                    raise retries_exhausted(
                        context,
                        exc,
                        what=f"import of {source_name}",
                        resume="its committed batches are kept and a re-run of the partition resumes",
                        url=record_store.url,
                        metadata={"file": str(path), "partition": key, "error": type(exc).__name__},
                    ) from exc
                context.log.warning(f"will retry: {describe_error(exc, url=record_store.database_url)}")
                raise
            outcome = dropzone.FAILED
            reason = describe_error(exc, url=record_store.database_url)
            raise dg.Failure(
                description=f"import of {source_name} failed: {reason}",
                metadata={"file": str(path), "partition": key, "error": type(exc).__name__, "reason": reason},
                allow_retries=False,
            ) from exc

        _report_records(context, entity, result, key)
        if tag_change_set:
            tag_run(context, kind="import", account=config.account, entity=entity, change_set_id=result.import_id)
        if result.status == "cancelled":
            # terminated: the file stays where it is and a re-run of the partition resumes
            raise dg.Failure(
                description=f"run terminated: import of {source_name} stopped after {result.rows_read} rows; "
                "its committed batches are kept and a re-run of the partition resumes",
                metadata={
                    "file": str(path),
                    "partition": key,
                    "import_id": str(result.import_id),
                    "created": result.created,
                    "updated": result.updated,
                    "rows_read": result.rows_read,
                },
                allow_retries=False,
            )
        if result.status == "failed":
            outcome = dropzone.FAILED
            reasons = result.details.get("failed_reasons")
            # every row failed: the reasons, counted, as the history row says them
            why = (
                all_failed_message(result.errors, reasons, "rows")
                if reasons
                else f"{result.errors} bad rows of {result.rows_read}"
            )
            raise dg.Failure(
                description=f"import of {source_name} {result.status}: {why}"
                + (f"; see {result.failed_rows_path}" if result.failed_rows_path else ""),
                metadata={
                    "file": str(path),
                    "partition": key,
                    "import_id": str(result.import_id),
                    **failed_records_metadata(store, result.import_id, kind="import"),
                },
                allow_retries=False,
            )
        if not result.dry_run:
            outcome = dropzone.PROCESSED
    finally:
        # cancelled or retrying: the file stays put so the next attempt finds it
        if in_dropzone and outcome is not None:
            moved = dropzone.move_claimed(path, entity, sha, outcome)
            if moved != path:
                if not quiet:
                    context.log.info(f"moved {path.name} to {moved}")
                _record_move(context, record_store, path, moved, sha)
                path = moved

    rate = result.errors / result.rows_read if result.rows_read else 0.0
    history = _history_metadata(result, started)
    metadata: dict[str, Any] = {
        **history,
        "import_id": str(result.import_id),
        "rows_read": result.rows_read,
        "dagster/row_count": result.rows_read,
        "error_rate": rate,
        "elapsed_s": float(result.elapsed_s or 0.0),
        "dry_run": bool(result.dry_run),
        "account": config.account,
        "source_path": dg.MetadataValue.path(str(path)),
        "content_sha256": sha,
        "summary": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        k: (v if k != "date_time" else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)))
                        for k, v in history.items()
                    }
                )
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("date_time", "string"),
                    dg.TableColumn("type", "string"),
                    dg.TableColumn("file", "string"),
                    dg.TableColumn("created", "int"),
                    dg.TableColumn("updated", "int"),
                    dg.TableColumn("skipped", "int"),
                    dg.TableColumn("errors", "int"),
                    dg.TableColumn("status", "string"),
                ]
            ),
        ),
        "result": dg.MetadataValue.json(_jsonable(dataclasses.asdict(result))),
    }
    read = (result.details or {}).get("file")
    if read:
        metadata["encoding"] = str(read.get("encoding") or read.get("format"))
        metadata["file_read"] = dg.MetadataValue.json(_jsonable(read))
    if result.failed_rows_path:
        metadata["failed_rows"] = dg.MetadataValue.path(str(result.failed_rows_path))
    if result.errors:
        metadata.update(failed_records_metadata(store, result.import_id, kind="import"))
    if result.duplicate_of:
        metadata["duplicate_of"] = str(result.duplicate_of)
    if result.dry_run and result.sample:
        metadata["sample"] = dg.MetadataValue.json(_jsonable(result.sample))
    check = dg.AssetCheckResult(
        check_name=ERROR_RATE_CHECK,
        passed=rate <= config.error_threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"error_rate": rate, "error_threshold": config.error_threshold, "errors": result.errors},
    )
    imported = dg.AssetCheckResult(check_name=IMPORTED_CHECK, passed=True, metadata={"status": result.status})
    return dg.MaterializeResult(metadata=metadata, check_results=[check, imported])


def log_file_failed(context: dg.OpExecutionContext | dg.AssetExecutionContext, key: str, failure: dg.Failure) -> None:
    """The `imported` check of partition KEY fails with FAILURE's reason, unless the run is being terminated (a
    stopped import is cancelled, not failed: a re-run of the partition resumes it)."""
    if run_terminating(context):
        return
    reason = failure.description or "failed"
    metadata = {"reason": dg.MetadataValue.text(reason)}
    for name in ("file", "import_id", "failed_rows"):
        if name in failure.metadata:
            metadata[name] = failure.metadata[name]
    context.log_event(
        dg.AssetCheckEvaluation(
            IMPORTED_FILE_KEY, IMPORTED_CHECK, passed=False, partition=key, metadata=metadata, description=reason
        )
    )


def _report_records(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, entity: str, result: Any, key: str
) -> None:
    """Materializations of the record assets the import wrote (committed batches count, even of an import that then failed)."""
    for event in import_changes(entity, result, key):
        context.log_event(event)


def _record_move(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    record_store: RecordStoreResource,
    old: Path,
    new: Path,
    sha: str,
) -> None:
    """The history rows of the file say where it is now (the materialization's source_path does too)."""
    from pipelines.imports.engine import record_file_moved

    try:
        record_file_moved(record_store.store, old, new, sha)
    except Exception as exc:
        # called from `finally`: never hide the import's own outcome
        context.log.warning(f"could not record the move of {old.name} in the import history: {exc}")


def _build_imported_file(retry_policy: dg.RetryPolicy | None) -> dg.AssetsDefinition:
    @dg.asset(
        name="imported_file",
        group_name="imports",
        partitions_def=import_files,
        retry_policy=retry_policy,
        kinds={"csv", "parquet"},
        tags={"bulkops/kind": "import"},
        check_specs=[
            dg.AssetCheckSpec(
                ERROR_RATE_CHECK,
                asset="imported_file",
                description="The share of rejected rows stays under the import's error_threshold.",
            ),
            partition_check(
                IMPORTED_CHECK,
                asset="imported_file",
                partitions_def=import_files,
                description="The partition's file was imported; fails with its reason (bad file, every row failed, "
                "retries exhausted...) in the run that failed it, import_job's or a shared run's, and passes when a "
                "re-run imports it.",
            ),
        ],
        description=(
            "One imported file per partition (`<entity>/<file>@<sha12>`): its rows are mapped, validated, "
            "matched against existing records and written in committed batches to the record store. "
            "Metadata carries the import-history row (date/time, type, file, created, updated, skipped, "
            "errors, status) and the failed-rows CSV. Drop-folder sensors add partitions; "
            "`bulkops import` and the Launchpad launch them too."
        ),
    )
    def imported_file(
        context: dg.AssetExecutionContext, config: ImportConfig, record_store: RecordStoreResource
    ) -> dg.MaterializeResult:
        record_process(context)
        last_attempt = retry_policy is None or context.retry_number >= retry_policy.max_retries
        try:
            return _import_partition(
                context,
                config,
                record_store,
                key=context.partition_key,
                last_attempt=last_attempt,
                attempt=context.retry_number + 1,
            )
        except dg.Failure as exc:
            log_file_failed(context, context.partition_key, exc)
            raise
        except dg.RetryRequested:
            raise
        except Exception as exc:
            # only transient database faults reach the retry policy
            if is_transient(exc):
                raise
            raise dg.Failure(
                description=f"import of partition {context.partition_key!r} failed: {type(exc).__name__}: {exc}",
                allow_retries=False,
            ) from exc
        except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError) as exc:
            # terminated or Ctrl-C: Dagster turns an interrupt into a retry when the step has a
            # retry policy (only the multiprocess executor ignores that for a terminated run), and
            # the retry would resume the import the user just stopped
            raise dg.Failure(
                description=f"interrupted: import of partition {context.partition_key!r} stopped; "
                "its committed batches are kept and a re-run of the partition resumes",
                allow_retries=False,
            ) from exc

    return imported_file


imported_file = _build_imported_file(RETRY_POLICY)
