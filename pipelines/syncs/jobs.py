"""The Launchpad's way to resolve a sync conflict (the same as `bulkops conflicts resolve`)."""

import uuid

import dagster as dg
from pydantic import Field

from pipelines.retries import RETRY_POLICY, said_when_exhausted
from resources import RecordStoreResource


class ResolveConflictConfig(dg.Config):
    """Which conflict, and whose values the record keeps."""

    account: str = Field(default="demo", description="Slug of the account the conflict belongs to.")
    conflict_id: str = Field(default="", description="The conflict's id (`bulkops conflicts list`).")
    take: str = Field(
        default="target",
        description="source: write the source's values; target: keep the record as it is; value: the source's "
        "values with `values` in place.",
    )
    values: dict[str, str] = Field(default={}, description="With take value: record field -> value to write.")


@dg.op(description="Resolve one sync conflict a manual-strategy connection queued.", retry_policy=RETRY_POLICY)
def resolve_sync_conflict(
    context: dg.OpExecutionContext, config: ResolveConflictConfig, record_store: RecordStoreResource
) -> None:
    try:
        conflict_id = uuid.UUID(config.conflict_id)
    except ValueError:
        raise dg.Failure(description=f"conflict_id {config.conflict_id!r} is not an id", allow_retries=False) from None
    with said_when_exhausted(
        context,
        what=f"resolving conflict {conflict_id}",
        resume="the conflict stays open until a run resolves it; launch it again",
        url=record_store.url,
    ):
        _resolve(context, config, record_store, conflict_id)


def _resolve(
    context: dg.OpExecutionContext,
    config: ResolveConflictConfig,
    record_store: RecordStoreResource,
    conflict_id: uuid.UUID,
) -> None:
    from pipelines.syncs.assets import syncs_folder
    from pipelines.syncs.config import load_folder
    from pipelines.syncs.engine import SyncFailed, get_conflict, resolve_conflict

    store = record_store.store
    account_id = store.account_id(config.account)
    found = get_conflict(store, account_id, conflict_id)
    if found is None:
        raise dg.Failure(description=f"no conflict {conflict_id} in account {config.account}", allow_retries=False)
    connections = {c.name: c for c in load_folder(syncs_folder(), check_env=False)}
    if found["sync_name"] not in connections:
        raise dg.Failure(description=f"the sync {found['sync_name']!r} is no longer declared", allow_retries=False)
    try:
        out = resolve_conflict(
            store,
            connections[found["sync_name"]],
            conflict_id,
            take=config.take,
            values=dict(config.values),
            actor=f"dagster:{context.run.run_id}",
        )
    except SyncFailed as exc:
        raise dg.Failure(description=exc.message, allow_retries=False) from None
    context.log.info(f"conflict {conflict_id}: took {config.take} (sync run {out['sync_run_id'] or 'none'})")


@dg.job(
    description="Resolve a sync conflict from the Launchpad: take the source's values, keep the record, or write given values.",
    tags={"bulkops/kind": "sync_conflict", "bulkops/group": "syncs"},
    executor_def=dg.in_process_executor,
)
def resolve_sync_conflict_job() -> None:
    resolve_sync_conflict()
