"""Bulk import of CSV/Parquet files into the record store."""

import dagster as dg

from pipelines.imports.assets import imported_file
from pipelines.imports.jobs import SHARDED_IMPORT_JOBS, import_job
from pipelines.imports.new_file import import_new_file_job
from pipelines.imports.rollback import rollback_import_job
from pipelines.imports.run_sensors import (
    dead_run_sensor,
    import_canceled_sensor,
    import_failure_sensor,
    shared_import_canceled_sensor,
)
from pipelines.imports.sensors import dropzone_sensors
from pipelines.imports.shared import shared_import_job

defs = dg.Definitions(
    assets=[imported_file],
    jobs=[import_job, shared_import_job, *SHARDED_IMPORT_JOBS, rollback_import_job, import_new_file_job],
    sensors=[
        *dropzone_sensors,
        import_failure_sensor,
        import_canceled_sensor,
        shared_import_canceled_sensor,
        dead_run_sensor,
    ],
)
