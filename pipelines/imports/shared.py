"""Shared import runs: one Dagster run imports many small dropped files, each its own partition.

A run costs seconds of process start and code load; a drop folder receiving a thousand small
files would otherwise pay that a thousand times. The drop-folder sensors put up to
`BULKOPS_IMPORT_FILES_PER_RUN` small files in one `shared_import_job` run. Its op imports them one
after another exactly as the `imported_file` step imports one partition (same engine call, same
history row, failed-rows file and move to processed/ or failed/) and logs each file's
materialization of `imported_file` for its own partition, so the partitions view, a re-run of one
partition (a single-partition `import_job` run) and `bulkops imports list` see one file as before.
One file failing never stops the others; the run fails at the end saying how many failed.
"""

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from connectors.store.errors import describe_error
from connectors.store.faults import is_transient
from pipelines.imports import dropzone
from pipelines.imports.assets import (
    BUSY_RETRIES,
    BUSY_WAIT_SECONDS,
    IMPORTED_CHECK,
    IMPORTED_FILE_KEY,
    SHA_TAG,
    ImportConfig,
    _import_partition,
    import_files,
    log_file_failed,
)
from pipelines.instance import record_process, run_terminating
from pipelines.monitoring.tags import tag_run
from pipelines.retries import RETRY_POLICY
from resources import RecordStoreResource

OP_NAME = "import_dropped_files"
# on a run `shared_import_canceled_sensor` requested: the terminated run whose unreached files it imports
RESUMES_TAG = "bulkops/resumes_run"
# what `_import_one` tells the loop
IMPORTED, FAILED, BUSY, EARLIER = "imported", "failed", "busy", "earlier"


class SharedImportConfig(ImportConfig):
    """The launch config of a shared import run: the import options of `imported_file` for every file."""

    files: list[str] = Field(
        default_factory=list,
        description="Files to import, one after another, each as its own `import_files` partition "
        "(the `path` field is not used by a shared run).",
    )
    partitions: list[str] = Field(
        default_factory=list,
        description="The partition of each file, in the order of `files` (set by the sensors); "
        "empty: `<entity>/<file>@<sha12>` from each file's name and content.",
    )


def _file_config(config: SharedImportConfig, path: str) -> ImportConfig:
    values = {name: getattr(config, name) for name in ImportConfig.model_fields}
    return ImportConfig(**{**values, "path": path})


def _partition_keys(config: SharedImportConfig, entity: str) -> list[str]:
    if config.partitions:
        if len(config.partitions) != len(config.files):
            raise dg.Failure(
                description=f"{len(config.files)} files but {len(config.partitions)} partitions: "
                "give one partition per file, or none",
                allow_retries=False,
            )
        return list(config.partitions)
    keys = []
    for f in config.files:
        path = Path(f).expanduser()
        if not path.is_file():
            raise dg.Failure(description=f"file to import not found: {path}", allow_retries=False)
        keys.append(dropzone.partition_key(entity, path.name, dropzone.file_sha256(path)))
    return keys


def _handled_earlier(path: str, key: str) -> Path | None:
    """Where an earlier attempt of this run moved the file (processed/ or failed/), if it did.

    A re-execution of a shared run (a crashed worker's automatic retry, or one from the UI) skips
    those files: it neither imports a file twice nor adds a second history row for it. A failed
    file is re-run as its own partition.
    """
    if Path(path).is_file():
        return None
    ref = dropzone.parse_partition_key(key)
    found = dropzone.locate(ref) if ref is not None else None
    if found is not None and found.parent.name in (dropzone.PROCESSED, dropzone.FAILED):
        return found
    return None


def _log_materialization(context: dg.OpExecutionContext, key: str, result: dg.MaterializeResult) -> None:
    context.log_event(dg.AssetMaterialization(IMPORTED_FILE_KEY, partition=key, metadata=result.metadata))
    for check in result.check_results or []:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=IMPORTED_FILE_KEY,
                check_name=check.check_name,
                passed=bool(check.passed),
                metadata=check.metadata,
                severity=check.severity,
                # the `imported` check is per partition (the error rate is the asset's)
                partition=key if check.check_name == IMPORTED_CHECK else None,
            )
        )


def _retry_wait(attempt: int) -> float:
    """The step retry policy's wait before retry ATTEMPT (1-based): exponential, +-50% jitter."""
    delay = (RETRY_POLICY.delay or 1) * (2**attempt - 1)
    return delay * random.uniform(0.5, 1.5)


def _failed(context: dg.OpExecutionContext, key: str, reason: str, metadata: Mapping[str, Any]) -> tuple[str, str]:
    """Log a file's failure and observe it on its partition; (FAILED, reason)."""
    context.log.error(f"{key}: {reason}")
    context.log_event(
        dg.AssetObservation(
            IMPORTED_FILE_KEY,
            partition=key,
            metadata={"status": "failed", "reason": dg.MetadataValue.text(reason), **metadata},
        )
    )
    return FAILED, reason


def _import_one(
    context: dg.OpExecutionContext, config: ImportConfig, record_store: RecordStoreResource, key: str
) -> tuple[str, str]:
    """Import one file of the run; (IMPORTED | FAILED | BUSY, reason)."""
    retries = RETRY_POLICY.max_retries
    for attempt in range(retries + 1):
        try:
            result = _import_partition(
                context,
                config,
                record_store,
                key=key,
                last_attempt=attempt >= retries,
                attempt=attempt + 1,
                tag_change_set=False,
                quiet=True,
            )
        except dg.RetryRequested:
            return BUSY, ""
        except dg.Failure as exc:
            log_file_failed(context, key, exc)
            return _failed(context, key, exc.description or "failed", exc.metadata)
        except Exception as exc:
            reason = describe_error(exc, url=record_store.database_url)
            if is_transient(exc) and attempt < retries:
                wait = _retry_wait(attempt + 1)
                context.log.warning(f"{key}: will retry in {wait:.0f}s: {reason}")
                time.sleep(wait)
                continue
            log_file_failed(context, key, dg.Failure(description=reason))
            return _failed(context, key, reason, {})
        _log_materialization(context, key, result)
        return IMPORTED, ""
    raise AssertionError("unreachable")


def unreached_files(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[tuple[str, str]]:
    """The (file, partition) pairs of terminated shared run RUN that it never started: still waiting in the drop
    folder, not materialized by the run, and not the file it was importing when stopped (the run's `bulkops/sha256`
    tag; that import is cancelled, and a re-run of its partition resumes it, as for an `import_job` run)."""
    config = (run.run_config.get("ops") or {}).get(OP_NAME, {}).get("config") or {}
    files = list(config.get("files") or [])
    entity = config.get("entity") or "applications"
    partitions = list(config.get("partitions") or [])
    if len(partitions) != len(files):
        return []
    records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    done = {r.event_log_entry.dagster_event.partition for r in records}
    stopped_at = (run.tags.get(SHA_TAG) or "")[: dropzone.SHA_PREFIX_LEN]
    out = []
    for path, key in zip(files, partitions, strict=True):
        ref = dropzone.parse_partition_key(key)
        if ref is None or key in done or ref.sha12 == stopped_at:
            continue
        if Path(path).is_file() and dropzone.is_in_dropzone(Path(path), entity):
            out.append((path, key))
    return out


def resume_request(run: dg.DagsterRun, files: list[tuple[str, str]]) -> dg.RunRequest:
    """A `shared_import_job` run of FILES (from `unreached_files`) with the launch config of terminated run RUN."""
    config = dict(run.run_config["ops"][OP_NAME]["config"])
    config.update(files=[f for f, _ in files], partitions=[k for _, k in files])
    keep = ("bulkops/entity", "bulkops/account")
    return dg.RunRequest(
        job_name="shared_import_job",
        # once per terminated run, however often the sensor sees it
        run_key=f"resume:{run.run_id}",
        run_config={**run.run_config, "ops": {**run.run_config["ops"], OP_NAME: {"config": config}}},
        tags={
            **{k: v for k, v in run.tags.items() if k in keep},
            RESUMES_TAG: run.run_id,
            "bulkops/files": str(len(files)),
            "bulkops/file": Path(files[0][0]).name[:150] + (f" (+{len(files) - 1} more)" if len(files) > 1 else ""),
        },
    )


@dg.op(
    name=OP_NAME,
    description="Import many dropped files in one run, one after another: each is its own `imported_file` "
    "partition with its own history row, materialization, failed-rows file and move to processed/ or failed/. "
    "One file failing never stops the others; the run fails at the end saying how many failed.",
    tags={"bulkops/group": "imports"},
    out=dg.Out(dg.Nothing),
)
def import_dropped_files(
    context: dg.OpExecutionContext, config: SharedImportConfig, record_store: RecordStoreResource
) -> None:
    if not config.files:
        raise dg.Failure(description="nothing to import: `files` is empty", allow_retries=False)
    record_process(context)
    entity = config.entity or "applications"
    tag_run(context, kind="import", account=config.account, entity=entity)
    keys = _partition_keys(config, entity)
    # one call: it adds only the keys that are new (the sensors added theirs already)
    context.instance.add_dynamic_partitions(import_files.name, list(dict.fromkeys(keys)))

    counts = {IMPORTED: 0, FAILED: 0, EARLIER: 0}
    failures: list[str] = []
    waiting: list[tuple[str, str]] = []

    def one(path: str, key: str) -> str:
        earlier = _handled_earlier(path, key)
        if earlier is not None:
            context.log.info(f"{key}: handled by an earlier attempt of this run ({earlier}); skipped")
            return EARLIER
        outcome, reason = _import_one(context, _file_config(config, path), record_store, key)
        if outcome == FAILED:
            failures.append(f"{Path(path).name}: {reason}")
        return outcome

    for path, key in zip(config.files, keys, strict=True):
        if run_terminating(context):
            break
        outcome = one(path, key)
        if outcome == BUSY:
            # another run imports the same content: come back to it after the others
            waiting.append((path, key))
        else:
            counts[outcome] += 1
    for path, key in waiting:
        for _ in range(BUSY_RETRIES):
            if run_terminating(context):
                break
            context.log.info(f"{key}: another run imports the same content; waiting {BUSY_WAIT_SECONDS}s")
            time.sleep(BUSY_WAIT_SECONDS)
            outcome = one(path, key)
            if outcome != BUSY:
                counts[outcome] += 1
                break
        else:
            counts[FAILED] += 1
            failures.append(f"{Path(path).name}: another run kept importing the same content")

    done = sum(counts.values())
    summary: dict[str, Any] = {
        "files": len(config.files),
        "imported": counts[IMPORTED],
        "failed": counts[FAILED],
        "skipped_as_handled_earlier": counts[EARLIER],
        "not_started": len(config.files) - done,
    }
    context.log.info(
        f"{counts[IMPORTED]} of {len(config.files)} file(s) imported, {counts[FAILED]} failed"
        + (f", {counts[EARLIER]} handled by an earlier attempt" if counts[EARLIER] else "")
    )
    if done < len(config.files):
        raise dg.Failure(
            description=f"run terminated after {done} of {len(config.files)} files; the files it did not reach "
            "are imported by a new run (shared_import_canceled_sensor), or re-execute this one (files it already "
            "handled are skipped)",
            metadata=summary,
            allow_retries=False,
        )
    if failures:
        raise dg.Failure(
            description=f"{counts[FAILED]} of {len(config.files)} files failed: " + "; ".join(failures[:20]),
            metadata={**summary, "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures[:200]))},
            allow_retries=False,
        )
    context.add_output_metadata(summary)


@dg.job(
    description="Import many small dropped files in one run (the drop-folder sensors request it for up to "
    "BULKOPS_IMPORT_FILES_PER_RUN files); each file is its own `import_files` partition of `imported_file`, "
    f"re-run alone with import_job. Configure under ops.{OP_NAME}.config.",
    tags={"bulkops/kind": "import", "bulkops/group": "imports"},
    executor_def=dg.in_process_executor,
)
def shared_import_job() -> None:
    import_dropped_files()
