"""Launch an export as an `export_job` run through the instance's run launcher (the command line, the API).

The config is checked first (account, entity, filter, columns, file name), so a bad export is
refused at once with one line and no run; the run's result is read back from its materialization.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from connectors.store import RecordStore, registry
from connectors.store.export import ExportError, FilterError, build_query, file_name
from connectors.store.store import AccountNotFound
from pipelines import runs
from pipelines.exports.config import ExportConfig, ExportRefused
from pipelines.exports.jobs import EXPORT_JOB_NAME, export_key
from resources import store_run_config


def check(store: RecordStore, config: ExportConfig, account_id: uuid.UUID | None = None) -> uuid.UUID:
    """The account id, once the config would export something; ExportRefused (one line) otherwise."""
    try:
        if account_id is None:
            account_id = store.account_id(config.account_slug())
        spec = config.spec(account_id)
        build_query(spec.entity, store.dialect, account_id, spec.filter, spec.columns)
        file_name(config.name, config.format, entity=spec.entity, account=config.account_slug(), preset="", run_id="")
    except (AccountNotFound, registry.UnknownEntity, FilterError, ExportError) as exc:
        raise ExportRefused(str(exc)) from None
    return account_id


def run_config(config: ExportConfig, database_url: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ops": {"write_export": {"config": config.model_dump()}}}
    if database_url:
        out["resources"] = store_run_config(database_url)
    return out


def launch_export(
    config: ExportConfig,
    *,
    account_id: uuid.UUID,
    database_url: str | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: dict[str, str] | None = None,
    on_failure: Callable[[str, BaseException], None] | None = None,
) -> str:
    """Launch the export's run; its run id. The config's folder must be absolute: the run worker writes there.

    Args:
        on_failure: given, the launch goes on in the background and calls ON_FAILURE(run_id, error) if it fails.
    """
    return runs.launch_run(
        EXPORT_JOB_NAME,
        run_config=run_config(config, database_url),
        tags={
            "bulkops/kind": "export",
            "bulkops/account_id": str(account_id),
            "bulkops/entity": registry.canonical(config.entity),
            **(tags or {}),
        },
        instance=instance,
        on_failure=on_failure,
    )


@dataclass
class Exported:
    path: str
    rows: int
    size: int
    filter: str
    account: str
    format: str


def export_result(instance: dg.DagsterInstance, run_id: str) -> Exported | None:
    """The export a finished run wrote, from its materialization; None when it wrote none."""
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.is_step_materialization:
            continue
        mat = event.step_materialization_data.materialization
        if mat.asset_key.path[0] != "exports":
            continue
        meta = mat.metadata
        return Exported(
            path=str(meta["path"].value),
            rows=int(meta["dagster/row_count"].value),
            size=int(meta["size_bytes"].value),
            filter=str(meta["filter"].value),
            account=str(meta["account"].value),
            format=str(meta["format"].value),
        )
    return None


__all__ = ["Exported", "check", "export_key", "export_result", "launch_export", "run_config"]
