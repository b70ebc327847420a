"""The bulk operation of the Launchpad: records chosen by filter (or ids), preview first, then execute that plan.

`bulk_operation_job` takes what an analyst picks in the UI (account, entity, operation, params, a
filter in the export language or a list of ids) and a mode:

- `preview` stores a bulk job awaiting confirmation (the filter resolved to ids in SQL, its plan
  computed) and shows the count, the first records with their change and the `plan_id`;
- `execute` with that `plan_id` confirms that very bulk job and applies it in this run: exactly
  the ids resolved at preview, never a re-evaluation of the filter. An unknown, replaced or used
  plan, or a config that is not the previewed one, is refused;
- `dry_run` resolves the filter, runs the bulk job's dry run (outcomes, no record written).

Everything else is the bulk job's own machinery (`service.create_job`, `confirm`, the batch loop of
`run_bulk_job_in_op`), so the bulk job is listed, cancelled and rolled back like any other.
"""

import json
import uuid
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from connectors import settings
from connectors.store import RecordStore, accounts, bulk, registry
from connectors.store.bulk import jobs, selection
from connectors.store.export.filters import FilterError
from connectors.store.store import AccountNotFound
from pipelines.bulk import service
from pipelines.bulk.ops import RESUME, _items_table, deliver_bulk_job_webhooks, run_bulk_job_in_op
from pipelines.exports.config import WHERE_HELP, FilterItem
from pipelines.instance import record_process
from pipelines.monitoring.tags import tag_run
from pipelines.retries import RETRY_POLICY, said_when_exhausted
from resources import RecordStoreResource

BULK_OPERATION_JOB_NAME = "bulk_operation_job"
SAMPLE_MAX = 100


class BulkOperationConfig(dg.Config):
    """Which records (filter or ids), what to do to them (operation, params), and whether to preview, dry-run or execute."""

    account: str = Field(
        default="", description="Slug of the account whose records change; empty: $BULKOPS_ACCOUNT, else demo."
    )
    entity: str = Field(
        default="applications",
        description=f"The records: one of {', '.join(registry.ENTITY_NAMES + tuple(registry.ALIASES))}.",
    )
    operation: str = Field(
        default="status_update",
        description="status_update, stage_transition, field_update, delete, tags_add, tags_remove, tags_set, "
        "trigger_automations, recollection, create (contracts): docs/bulk-jobs.md lists what each entity offers.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The operation's params, e.g. {status: rejected}, {stage: interview}, {tags: [vip]}, "
        "{field: source, value: referral}, {hard: false}.",
    )
    where: list[str] = Field(default_factory=list, description=WHERE_HELP)
    filters: list[FilterItem] = Field(
        default_factory=list, description="More conditions as typed items (field, op, value/values), added to `where`."
    )
    include_deleted: bool = Field(default=False, description="Also select soft-deleted records.")
    ids: list[str] = Field(
        default_factory=list, description="Record ids, instead of a filter (leave `where` and `filters` empty)."
    )
    mode: Literal["preview", "dry_run", "execute"] = Field(
        default="preview",
        description="preview: store the plan and show it, change nothing; execute: apply the previewed plan named "
        "by plan_id; dry_run: report what would happen to every record, change nothing.",
    )
    plan_id: str = Field(
        default="",
        description="execute: the plan_id a preview run showed (or its bulk job id). The run applies exactly the "
        "records of that preview; leave the other fields as they were for the preview.",
    )
    sample_size: int = Field(default=20, ge=0, le=SAMPLE_MAX, description="Records shown in the preview's sample.")
    batch_size: int = Field(
        default=0, ge=0, description="Records per transaction; 0 picks 20,000 on PostgreSQL and 500 on SQLite."
    )

    def account_slug(self) -> str:
        return self.account or settings.default_account()

    def conditions(self) -> list[Any]:
        typed = [
            {"field": f.field, "op": f.op, "value": f.values if f.op in ("in", "not in") else f.value}
            for f in self.filters
        ]
        return [*self.where, *typed]

    def filter_spec(self) -> dict[str, Any] | None:
        conditions = self.conditions()
        if not conditions:
            return None
        return {"where": conditions, "include_deleted": self.include_deleted}


def _refuse(message: str) -> dg.Failure:
    return dg.Failure(description=message, allow_retries=False)


def _ids_differ(config: BulkOperationConfig, job: dict[str, Any], conn) -> bool:
    """Whether the config's ids are not the ids the plan by ids JOB resolved (order and duplicates aside)."""
    if not config.ids:
        # only a contracts create may name no id: every eligible application, resolved at preview
        return not (job["entity_type"] == "contracts" and job["operation"] == "create")
    try:
        mine = {uuid.UUID(str(i).strip()) for i in config.ids}
    except ValueError:
        return True
    # counts first: a plan of another size differs without reading its items
    return len(mine) != job["total_count"] or mine != set(jobs.entity_ids(conn, uuid.UUID(job["id"])))


def _same_as_plan(config: BulkOperationConfig, job: dict[str, Any], account_settings: Any, conn) -> list[str]:
    """The config's differences from the previewed bulk job JOB (names of what differs)."""
    entity = bulk.canonical_entity_type(config.entity)
    differs = []
    if entity != job["entity_type"]:
        differs.append("entity")
    if config.operation != job["operation"]:
        differs.append("operation")
    else:
        try:
            clean = bulk.validate_params(entity, config.operation, config.params, account_settings)
        except bulk.ParamsError:
            clean = None
        if clean != job["params"]:
            differs.append("params")
    spec = config.filter_spec()
    planned = job.get("filter")
    if spec is None or planned is None:
        if (spec is None) != (planned is None):
            differs.append("filter")
        elif _ids_differ(config, job, conn):
            differs.append("ids")
    else:
        try:
            mine = selection.stored(selection.parse(spec), selection.selected_entity(entity, config.operation))
        except FilterError:
            mine = {}
        if (mine.get("where"), mine.get("include_deleted")) != (planned["where"], planned["include_deleted"]):
            differs.append("filter")
    return differs


def _create(store, account_id, config: BulkOperationConfig, mode: str) -> dict[str, Any]:
    spec = config.filter_spec()
    if spec is not None and config.ids:
        raise _refuse("give a filter (where / filters) or ids, not both")
    return service.create_job(
        store,
        account_id,
        created_by=None,
        entity_type=config.entity,
        operation=config.operation,
        entity_ids=list(config.ids) if spec is None else None,
        params=config.params,
        mode=mode,
        filter=spec,
    )


def _show_preview(context: dg.OpExecutionContext, store, account_id, job: dict, config: BulkOperationConfig) -> None:
    plan = service.preview(store, account_id, uuid.UUID(job["id"]), limit=config.sample_size)
    words = (job.get("filter") or {}).get("words") or f"{job['total_count']} {job['entity_type']} by id"
    confirm = {"mode": "execute", "plan_id": plan["plan_id"]}
    context.add_output_metadata(
        {
            "plan_id": plan["plan_id"],
            "bulk_job_id": job["id"],
            "count": plan["total"],
            "would_change": plan["would_change"],
            "not_found": plan["not_found"],
            "skipped": plan["skipped"],
            "failed": plan["failed"],
            "filter": words,
            f"sample (first {config.sample_size})": _items_table(plan["changes"], ["entity_id", "before", "after"]),
            "problems (sample)": _items_table(plan["problems"], ["entity_id", "error"]),
            "to execute": dg.MetadataValue.md(
                f"Launch `{BULK_OPERATION_JOB_NAME}` again with the same config and\n\n"
                f"```yaml\n{json.dumps(confirm)}\n```\n\nNothing changed yet."
            ),
        }
    )
    context.log.info(
        f"preview of {words}: {plan['total']} records, {plan['would_change']} would change; "
        f"execute with mode: execute, plan_id: {plan['plan_id']}"
    )


@dg.op(
    description=(
        "Selects records by filter (or ids) and previews, dry-runs or executes one bulk operation on them. A preview "
        "stores the plan (a bulk job awaiting confirmation) and shows its count and first records; execute applies "
        "exactly the previewed records named by plan_id, in batches with per-record outcomes and audit."
    ),
    # a retry after a transient fault resumes the bulk job this run took, after its last committed batch
    retry_policy=RETRY_POLICY,
    tags={"bulkops/kind": "bulk_job"},
    out=dg.Out(dict, description="The bulk job as the API returns it."),
)
def bulk_operation(
    context: dg.OpExecutionContext, config: BulkOperationConfig, record_store: RecordStoreResource
) -> dict:
    record_process(context)
    with said_when_exhausted(
        context,
        what=f"bulk {config.operation} ({config.mode})",
        resume=RESUME,
        url=record_store.url,
    ):
        return _bulk_operation(context, config, record_store.store)


def _bulk_operation(context: dg.OpExecutionContext, config: BulkOperationConfig, store: RecordStore) -> dict:
    try:
        account_id = store.account_id(config.account_slug())
    except AccountNotFound as exc:
        raise _refuse(str(exc)) from None
    try:
        if config.mode == "execute":
            if not config.plan_id.strip():
                raise _refuse("execute needs plan_id: run with mode: preview first, then execute the plan_id it shows")
            job = service.find_plan(store, account_id, config.plan_id, run_id=context.run.run_id)
            with store.engine.connect() as conn:
                differs = _same_as_plan(config, job, accounts.settings(conn, account_id), conn)
            if differs:
                raise _refuse(
                    f"the config's {', '.join(differs)} differ from plan {config.plan_id}'s: execute it with the "
                    "previewed config, or preview again"
                )
            if job["mode"] == "preview":
                job = service.confirm(
                    store, account_id, uuid.UUID(job["id"]), plan_id=job["plan_id"], run_id=context.run.run_id
                )
            else:
                context.log.info(f"bulk job {job['id']}: resuming the execution this run started")
        else:
            job = _create(store, account_id, config, config.mode)
    except service.BulkJobError as exc:
        raise _refuse(exc.message) from None
    job_id = uuid.UUID(job["id"])
    # the bulk job's id on the run: the bulk sensors finish it should this run crash
    context.instance.add_run_tags(context.run.run_id, {"bulkops/bulk_job_id": str(job_id)})
    if config.mode == "preview":
        tag_run(
            context, kind="bulk_job", account=config.account_slug(), entity=job["entity_type"], change_set_id=job_id
        )
        _show_preview(context, store, account_id, job, config)
        return job
    return run_bulk_job_in_op(context, store, job_id, config.batch_size)


@dg.job(
    name=BULK_OPERATION_JOB_NAME,
    description=(
        "Bulk operation from the Launchpad: choose the records by filter (stage, status, job, source, tags, dates, "
        "fields; the export filter language) or ids, and the operation. Run mode: preview first (count, sample, "
        "plan_id), then mode: execute with that plan_id to apply exactly the previewed records; mode: dry_run "
        "reports without writing."
    ),
    tags={"bulkops/kind": "bulk_job", "bulkops/group": "bulk"},
    executor_def=dg.in_process_executor,
)
def bulk_operation_job() -> None:
    deliver_bulk_job_webhooks(bulk_operation())
