"""What an export takes, declared once: the Launchpad form of `export_job`, presets, the command and the API.

`ExportConfig` is the typed, described, defaulted config of the export op; `bulkops export`
builds one from its flags, a preset YAML is one, and `exports-create` fills one from its body
(with the account of the token). `run_export` does the export every entry point shares.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field

from connectors import settings
from connectors.store import RecordStore, registry
from connectors.store.export import (
    DEFAULT_NAME,
    ExportError,
    ExportResult,
    ExportSpec,
    FilterError,
    export,
    file_name,
    make_filter,
    name_pattern,
    parse_columns,
    prune,
)
from connectors.store.store import AccountNotFound

WHERE_HELP = (
    "Conditions, all of which must hold, one per item: FIELD=VALUE, FIELD!=VALUE, FIELD>=DATE (also >, <, <=; a date "
    "alone is the whole day), FIELD~TEXT (contains, any case), 'FIELD in A,B' / 'FIELD not in A,B', FIELD= (empty). "
    "Fields: the entity's columns (stage, status, source, applied_at, created_at, ...), related fields "
    "(candidate_email, candidate_name, job_code, job_title, ...), tags (tags=vip), and job (= job_code). "
    "Example: ['stage=review', 'applied_at>=2026-01-01', 'tags in vip,urgent']."
)


class FilterItem(dg.Config):
    """One condition as a typed structure (the same language as `where`)."""

    field: str = Field(
        default="", description="A field of the entity: a column, a related field (job_code, ...) or tags."
    )
    op: Literal["=", "!=", ">", ">=", "<", "<=", "~", "in", "not in"] = Field(
        default="=", description="= != > >= < <= ~ (contains) in, not in."
    )
    value: str = Field(default="", description="The value (= with an empty value: the field is empty).")
    values: list[str] = Field(default_factory=list, description="The values of `in` / `not in`.")


class ExportConfig(dg.Config):
    """Which records to export (account, entity, filters, columns) and how to write them (format, folder, name)."""

    account: str = Field(
        default="",
        description="Slug of the account whose records are exported; empty: $BULKOPS_ACCOUNT, else demo. "
        "An export only ever holds this account's records.",
    )
    entity: str = Field(
        default="applications",
        description=f"The records to export: one of {', '.join(registry.ENTITY_NAMES + tuple(registry.ALIASES))}.",
    )
    where: list[str] = Field(default_factory=list, description=WHERE_HELP)
    filters: list[FilterItem] = Field(
        default_factory=list, description="More conditions as typed items (field, op, value/values), added to `where`."
    )
    include_deleted: bool = Field(default=False, description="Also export soft-deleted records.")
    columns: list[str] = Field(
        default_factory=list,
        description="Columns in order, each FIELD or FIELD:Header to rename it (e.g. ['external_id:Ref', "
        "'candidate_email:Email', 'stage', 'tags']). Empty: every column of the entity and its related fields.",
    )
    format: Literal["csv", "xlsx", "parquet"] = Field(
        default="csv", description="csv, xlsx (Excel; sheets split past 1,048,576 rows) or parquet."
    )
    out_dir: str = Field(default="", description="Destination folder; empty: $BULKOPS_EXPORTS_DIR, else var/exports.")
    name: str = Field(
        default=DEFAULT_NAME,
        description="File name template without extension: {entity} {account} {format} {date} {timestamp} {preset} "
        "{run_id}. Written under a temporary name and renamed when complete.",
    )
    escape: bool = Field(
        default=True,
        description="CSV: neutralise cells a spreadsheet would run as formulas (start with = + - @ tab CR |) with a "
        "leading '. Turn off only for files read by programs.",
    )
    bom: bool = Field(default=False, description="CSV: write UTF-8 with a byte-order mark (Excel on Windows).")
    keep_last: int = Field(
        default=0,
        ge=0,
        description="Retention: keep the newest N files of this name template in the folder; 0 keeps all.",
    )
    preview_rows: int = Field(default=10, ge=0, le=100, description="Rows shown in the run's preview table.")

    def account_slug(self) -> str:
        return self.account or settings.default_account()

    def folder(self) -> Path:
        return Path(self.out_dir).expanduser().resolve() if self.out_dir else settings.exports_dir()

    def conditions(self) -> list:
        typed = [
            {"field": f.field, "op": f.op, "value": f.values if f.op in ("in", "not in") else f.value}
            for f in self.filters
        ]
        return [*self.where, *typed]

    def spec(self, account_id: uuid.UUID) -> ExportSpec:
        """The export of ACCOUNT_ID this config describes. Raises FilterError on a bad filter."""
        return ExportSpec(
            entity=registry.canonical(self.entity),
            account_id=account_id,
            filter=make_filter(self.conditions(), include_deleted=self.include_deleted),
            columns=tuple(parse_columns(self.columns)),
            format=self.format,
            escape=self.escape,
            bom=self.bom,
            preview_rows=self.preview_rows,
        )


class ExportRefused(Exception):
    """An export that cannot start (unknown account or entity, bad filter or name): one line."""


def run_export(
    store: RecordStore,
    config: ExportConfig,
    *,
    account_id: uuid.UUID | None = None,
    run_id: str = "",
    preset: str = "",
    now: datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ExportResult:
    """The export CONFIG describes, into its folder; then retention (keep_last).

    Args:
        account_id: the account, when the caller knows it already (the API: the token's); else the
            config's account slug is looked up.

    Raises:
        ExportRefused: nothing was written (unknown account/entity, bad filter, column or name).
        ExportError: the file could not be written (read-only folder, full disk); no file left.
    """
    now = now or datetime.now(UTC)
    slug = config.account_slug()
    try:
        if account_id is None:
            account_id = store.account_id(slug)
        spec = config.spec(account_id)
        values = {"entity": spec.entity, "account": slug, "preset": preset, "run_id": run_id[:8] if run_id else ""}
        target = config.folder() / file_name(config.name, config.format, now=now, **values)
    except (AccountNotFound, registry.UnknownEntity, FilterError) as exc:
        raise ExportRefused(str(exc)) from None
    except ExportError as exc:
        raise ExportRefused(str(exc)) from None
    try:
        result = export(store.engine, spec, target, on_batch=on_batch)
    except FilterError as exc:
        raise ExportRefused(str(exc)) from None
    if config.keep_last:
        keep = {k: v for k, v in values.items() if k in ("entity", "account", "preset")}
        prune(target.parent, name_pattern(config.name, config.format, **keep), config.keep_last)
    return result
