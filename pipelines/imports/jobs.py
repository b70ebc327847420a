"""The one import Dagster job every entry point runs: Launchpad, drop-folder sensors and `bulkops import`."""

from __future__ import annotations

import dagster as dg

from pipelines.celery_jobs import celery_jobs
from pipelines.imports.assets import imported_file
from pipelines.imports.sharded import sharded_import_job

import_job = dg.define_asset_job(
    "import_job",
    selection=dg.AssetSelection.assets(imported_file),
    description=(
        "Import one file (one `import_files` partition, inferred from the asset) into the record store, with its error-rate check. "
        "Launched by the drop-folder sensors, by `bulkops import` and from the Launchpad; "
        "configure mapping, duplicates and error policy under ops.imported_file.config."
    ),
    tags={"bulkops/kind": "import", "bulkops/group": "imports"},
    # one step: running it in the run worker saves a process start per import, and a kill of the
    # worker is a kill of the import
    executor_def=dg.in_process_executor,
)

# the jobs that write an import's shards as steps (`sharded.py`): under the multiprocess executor,
# and under Celery's where dagster-celery is installed
SHARDED_IMPORT_JOBS = [
    sharded_import_job,
    *celery_jobs("pipelines.imports.celery_jobs", "celery_sharded_import_job"),
]
