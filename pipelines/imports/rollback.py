"""Undo an import from the Dagster UI: `rollback_import_job` (Launchpad: the import's id).

No `from __future__ import annotations` here: Dagster reads the op's config class from its annotation.
"""

import uuid

import dagster as dg
from pydantic import Field

from connectors import settings
from connectors.store import history
from connectors.store.faults import is_transient
from pipelines.imports.assets import imported_file
from pipelines.monitoring.tags import tag_run
from pipelines.records import rollback_changes
from pipelines.retries import RETRY_POLICY, said_when_exhausted
from resources import RecordStoreResource


class RollbackImportConfig(dg.Config):
    """Which import to undo, and whether records changed since are undone too."""

    import_id: str = Field(
        description="The import to undo: the id column of `bulkops imports list`, or the import_id "
        "metadata of its imported_file materialization."
    )
    account: str = Field(default_factory=settings.default_account, description="Slug of the import's account.")
    force: bool = Field(
        default=False,
        description="Also undo records something else (another import, a bulk job) changed "
        "after the import. Off: they are left as they are and counted as conflicts.",
    )


@dg.op(
    description=(
        "Undo one import: records it created are deleted, records it updated get their before-image back, "
        "every change is audited (`import.rollback.*`). Records other records use stay; records changed "
        "since the import are conflicts, left alone unless force. One transaction, set-based: the rollback "
        "is a change set of its own, recording this run."
    ),
    retry_policy=RETRY_POLICY,
    tags={"bulkops/kind": "import"},
)
def rollback_import_op(
    context: dg.OpExecutionContext, config: RollbackImportConfig, record_store: RecordStoreResource
) -> dict:
    # the import engine (Arrow) loads when a rollback runs, not with the code location
    from pipelines.imports.engine import ImportFailed, rollback_import

    try:
        import_id = uuid.UUID(config.import_id.strip())
    except ValueError:
        raise dg.Failure(
            description=f"import_id {config.import_id!r} is not an import id (a uuid)", allow_retries=False
        ) from None
    # the run is found by the import it undoes
    tag_run(context, kind="import", account=config.account, change_set_id=import_id)
    # the retry policy, then a failure saying what failed after how many attempts and why
    with said_when_exhausted(
        context,
        what=f"rollback of import {import_id}",
        resume="the rollback is one transaction, so nothing of it was applied; launch it again",
        url=record_store.url,
    ):
        try:
            # the store connects (its schema check) here, inside the retry's reach
            store = record_store.store
            account_id = store.account_id(config.account)
            out = rollback_import(
                store,
                account_id,
                import_id,
                actor=f"dagster:{context.run.run_id}",
                force=config.force,
                dagster_run_id=context.run.run_id,
            )
        except (LookupError, ImportFailed) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        except Exception as exc:
            if is_transient(exc):
                raise  # the retry policy: the rollback is one transaction, so nothing half-done is left
            raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
        with store.engine.connect() as conn:
            key = history.partition_key(conn, import_id)
    counts = {
        f"{what}.{entity}": n
        for what in ("deleted", "restored", "kept", "conflicts")
        for entity, n in out[what].items()
        if n
    }
    metadata = {"import_id": str(import_id), "status": "rolled_back", "force": config.force, **counts}
    if key:
        # the import's partition shows it was undone, next to its materialization
        context.log_event(dg.AssetObservation(asset_key=imported_file.key, partition=key, metadata=metadata))
    for event in rollback_changes(str(import_id), out):
        context.log_event(event)
    context.add_output_metadata(metadata)
    conflicts = sum(out["conflicts"].values())
    context.log.info(
        f"import {import_id} rolled back: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + (
            f"; {conflicts} record(s) changed since were left as they are (run it again with force: true to undo them)"
            if conflicts
            else ""
        )
    )
    return {k: v for k, v in out.items() if k != "import_id"}


@dg.job(
    name="rollback_import_job",
    description="Undo one import (config: ops.rollback_import_op.config.import_id, from `bulkops imports list` "
    "or the imported_file materialization). Same as `bulkops imports rollback`.",
    tags={"bulkops/kind": "import", "bulkops/group": "imports"},
)
def rollback_import_job() -> None:
    rollback_import_op()
