"""The record tables as Dagster assets: one `AssetSpec` per entity of the registry, group `records`.

Dagster never computes them: imports (`imported_file`), their rollbacks and bulk jobs write the
tables and each reports a materialization of the records it changed (who changed them and how
many), so exports and monitoring can depend on them. A new entity in
`connectors/store/registry.py` gets its asset with no code here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from connectors.store import registry

GROUP = "records"
IMPORTED_FILE = dg.AssetKey("imported_file")


def record_key(entity: str) -> dg.AssetKey:
    """The asset key of an entity's records (`contacts` is `candidates`): `bulkops/<entity>`."""
    return dg.AssetKey(["bulkops", registry.canonical(entity)])


def _column_type(column: sa.Column) -> str:
    try:
        return column.type.compile(dialect=postgresql.dialect()).lower()
    except Exception:  # a type PostgreSQL cannot name: its class
        return type(column.type).__name__.lower()


def _column_schema(entity: registry.Entity) -> dg.TableSchema:
    columns = []
    for column in entity.table.c:
        spec = entity.fields.get(column.name)
        notes = []
        if spec is not None:
            notes.append("imported" + (" (required in a file)" if column.name in entity.required else ""))
        if column.name in entity.value_sets:
            notes.append(f"one of the account's values (default {', '.join(entity.value_sets[column.name])})")
        if column.name in entity.match_keys:
            notes.append("matches duplicates")
        columns.append(
            dg.TableColumn(
                column.name,
                _column_type(column),
                description="; ".join(notes) or None,
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable), unique=bool(column.unique)),
            )
        )
    return dg.TableSchema(columns=columns)


def _spec(entity: registry.Entity) -> dg.AssetSpec:
    table = entity.table.name
    where = f"table `{table}`" + (" (users with role candidate)" if table == "users" else "")
    return dg.AssetSpec(
        key=record_key(entity.name),
        deps=[IMPORTED_FILE],
        description=(
            f"The {entity.name} records of the record store ({where}), per account. Written by imports "
            f"(`imported_file`), their rollbacks, and bulk jobs (`bulk_job`: {', '.join(entity.operations)}); "
            "each reports a materialization with what it changed (import or bulk job, counts). "
            "Dagster does not compute this asset: depend on it to follow changes to the records."
        ),
        group_name=GROUP,
        kinds={"sql"},
        tags={"bulkops/entity": entity.name},
        metadata={"dagster/table_name": table, "dagster/column_schema": _column_schema(entity)},
    )


record_specs: list[dg.AssetSpec] = [_spec(entity) for entity in registry.ENTITIES.values()]


def import_changes(entity: str, result: Any, partition_key: str) -> list[dg.AssetMaterialization]:
    """What an import changed, one materialization per entity whose records it wrote.

    The imported entity's records it created or updated, and the records of other entities it
    created on the way (an applications import creates candidates and jobs: `<entity>_created` in
    the result's details). Nothing for a dry run or an import that wrote nothing.
    """
    if result.dry_run:
        return []
    counts: dict[str, dict[str, int]] = {}
    if result.created or result.updated:
        counts[registry.canonical(entity)] = {"created": result.created, "updated": result.updated}
    for other in registry.ENTITY_NAMES:
        created = int((result.details or {}).get(f"{other}_created") or 0)
        if created and other != entity:
            counts[other] = {"created": created}
    return [
        dg.AssetMaterialization(
            asset_key=record_key(name),
            description=f"import {result.import_id} of {result.file or partition_key}",
            metadata={"import_id": str(result.import_id), "partition": partition_key, **numbers},
        )
        for name, numbers in counts.items()
    ]


def rollback_changes(import_id: str, outcome: Mapping[str, Mapping[str, int]]) -> list[dg.AssetMaterialization]:
    """What rolling back an import changed: one materialization per entity whose records it deleted or restored."""
    out = []
    for name in registry.ENTITY_NAMES:
        numbers = {what: int(outcome.get(what, {}).get(name) or 0) for what in ("deleted", "restored")}
        if any(numbers.values()):
            out.append(
                dg.AssetMaterialization(
                    asset_key=record_key(name),
                    description=f"rollback of import {import_id}",
                    metadata={"rolled_back_import_id": import_id, **numbers},
                )
            )
    return out


# bulk operations that write other tables (the automation outbox, recollection requests), not the records
_LEAVES_RECORDS = ("trigger_automations", "recollection")


def bulk_job_changes(job: Mapping[str, Any]) -> list[dg.AssetMaterialization]:
    """What an executed bulk job changed: a materialization of its entity's records, when it changed any."""
    if job["mode"] != "execute" or job["operation"] in _LEAVES_RECORDS or not job.get("succeeded_count"):
        return []
    return [
        dg.AssetMaterialization(
            asset_key=record_key(job["entity_type"]),
            description=f"bulk job {job['id']}: {job['operation']}",
            metadata={
                "bulk_job_id": job["id"],
                "operation": job["operation"],
                "status": job["status"],
                "succeeded": job["succeeded_count"],
                "failed": job["failed_count"],
                "skipped": job["skipped_count"],
            },
        )
    ]


defs = dg.Definitions(assets=record_specs)
