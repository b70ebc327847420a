"""Saved export presets: YAML files in presets/exports/ (or $BULKOPS_EXPORT_PRESETS), each its own Dagster job.

A preset is an `ExportConfig` (every field optional) plus a name, a description and, optionally,
a cron schedule:

    name: weekly_review
    description: Applications in review, for the Monday meeting
    account: demo
    entity: applications
    where: ["stage=review", "applied_at>=2026-01-01"]
    columns: ["external_id:Ref", "candidate_email:Email", "candidate_name:Name", "job_title:Job", "tags"]
    format: xlsx
    name_template: "{preset}-{date}"      # file name: dated, one per run
    schedule: "0 6 * * 1"                 # cron; its schedule runs from the start unless `schedule_running: false`
    keep_last: 8                          # retention: the newest 8 files of this preset stay

The job `export_<name>` opens in the Launchpad with the preset's config, which can be changed
for one run. A bad preset fails loading the code location with its file and field named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from pydantic import ValidationError

from connectors import settings
from pipelines.exports.config import ExportConfig
from pipelines.exports.jobs import export_job_for

PRESET_NAME_TEMPLATE = "{preset}-{timestamp}"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")
_OWN_KEYS = {"name", "description", "schedule", "schedule_running", "name_template"}


class PresetError(ValueError):
    pass


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: ExportConfig
    schedule: str | None
    schedule_running: bool
    path: Path

    @property
    def job_name(self) -> str:
        return f"export_{self.name}"


def load_preset(path: Path) -> Preset:
    """One preset file. Raises PresetError naming the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PresetError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise PresetError(f"{path}: a preset is a mapping of settings")
    name = str(raw.get("name") or path.stem)
    if not _NAME.match(name):
        raise PresetError(f"{path}: name {name!r} must be lower-case letters, digits and _ (a job name)")
    fields: dict[str, Any] = {k: v for k, v in raw.items() if k not in _OWN_KEYS}
    unknown = sorted(set(fields) - set(ExportConfig.model_fields) - {"name"})
    if unknown:
        known = sorted({*ExportConfig.model_fields, *_OWN_KEYS} - {"name"} | {"name"})
        raise PresetError(f"{path}: {unknown[0]}: unknown setting; a preset takes {', '.join(known)}")
    fields["name"] = raw.get("name_template") or PRESET_NAME_TEMPLATE
    try:
        config = ExportConfig(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PresetError(f"{path}: {where}: {first['msg']}") from None
    schedule = raw.get("schedule")
    if schedule is not None:
        try:
            dg.ScheduleDefinition(name=f"check_{name}", cron_schedule=str(schedule), job_name=f"export_{name}")
        except (dg.DagsterInvalidDefinitionError, dg.DagsterInvariantViolationError):
            raise PresetError(f"{path}: schedule {schedule!r} is not a cron expression") from None
    return Preset(
        name=name,
        description=str(raw.get("description") or f"Export preset {name}"),
        config=config,
        schedule=str(schedule) if schedule else None,
        schedule_running=bool(raw.get("schedule_running", True)),
        path=path,
    )


def load_presets(folder: Path | None = None) -> list[Preset]:
    folder = folder or settings.export_presets_dir()
    if not folder.is_dir():
        return []
    presets = [load_preset(p) for p in sorted(folder.glob("*.y*ml"))]
    seen: dict[str, Path] = {}
    for p in presets:
        if p.name in seen:
            raise PresetError(f"{p.path}: preset name {p.name!r} is also used by {seen[p.name]}")
        seen[p.name] = p.path
    return presets


def preset_definitions(presets: list[Preset]) -> tuple[list, list]:
    """(jobs, schedules) of the presets."""
    jobs, schedules = [], []
    for p in presets:
        job = export_job_for(
            p.job_name,
            f"{p.description} (export preset {p.path.name}: {p.config.entity}, {p.config.format}"
            + (f", schedule {p.schedule}" if p.schedule else "")
            + (f", keeps the last {p.config.keep_last} files" if p.config.keep_last else "")
            + ")",
            config=p.config,
            tags={"bulkops/preset": p.name},
        )
        jobs.append(job)
        if p.schedule:
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"{p.job_name}_schedule",
                    job=job,
                    cron_schedule=p.schedule,
                    description=f"Runs the export preset {p.name} ({p.schedule}): a new dated file each run.",
                    default_status=dg.DefaultScheduleStatus.RUNNING
                    if p.schedule_running
                    else dg.DefaultScheduleStatus.STOPPED,
                    tags={"bulkops/group": "exports"},
                )
            )
    return jobs, schedules
