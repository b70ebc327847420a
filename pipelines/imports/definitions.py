"""Bulk import of CSV/Parquet files into the record store."""

import dagster as dg

from pipelines.imports.assets import imported_file
from pipelines.imports.jobs import import_job
from pipelines.imports.rollback import rollback_import_job
from pipelines.imports.sensors import dropzone_sensors

defs = dg.Definitions(assets=[imported_file], jobs=[import_job, rollback_import_job], sensors=dropzone_sensors)
