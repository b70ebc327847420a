"""The exports capability: export_job, the exports/<entity> assets, and one job (and schedule) per preset."""

from __future__ import annotations

import dagster as dg

from pipelines.exports.jobs import export_job, export_specs
from pipelines.exports.presets import load_presets, preset_definitions

preset_jobs, preset_schedules = preset_definitions(load_presets())

defs = dg.Definitions(assets=export_specs, jobs=[export_job, *preset_jobs], schedules=preset_schedules)
