"""Document drop folders: `<dropzone>/resumes/` and `<dropzone>/job_descriptions/`.

Each tick takes the PDFs that have stopped changing (a half-written file, or one with a
temporary name such as `.part`, is left for a later tick) and requests ONE `document_import_job`
run for all of them, so many documents share a run. The run moves each file to processed/ or
failed/; a PDF dropped again is recorded as a skipped document of that run's import.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from connectors import settings
from pipelines.documents.assets import FOLDERS, DocumentImportConfig, document_import_job
from pipelines.imports.sensors import Arrival, Requests, Watermark, build_drop_folder_sensor

MAX_DOCUMENTS_PER_RUN = 1000


def build_document_sensor(
    kind: str,
    *,
    clock: Callable[[], float] = time.time,
    settle_seconds: float | None = None,
    max_documents: int = MAX_DOCUMENTS_PER_RUN,
    root: Path | None = None,
) -> dg.SensorDefinition:
    """The drop-folder sensor of one document kind (resume or job_description)."""
    folder_name = FOLDERS[kind]
    sensor_name = f"{folder_name}_dropzone_sensor"

    def request(context: dg.SensorEvaluationContext, folder: Path, fresh: list[Arrival], mark: Watermark) -> Requests:
        taken = fresh[:max_documents]
        mark = max(mark, taken[-1].mark)
        paths = [str(folder / f.name) for f in taken]
        run_key = hashlib.sha256("\n".join(f"{f.stamp_ns}:{f.name}" for f in taken).encode()).hexdigest()[:32]
        config = DocumentImportConfig(
            kind=kind, paths=paths, actor=f"sensor:{sensor_name}", dropzone=str(folder.parent)
        )
        return Requests(
            [
                dg.RunRequest(
                    run_key=f"{folder_name}:{run_key}",
                    run_config=dg.RunConfig(ops={"import_documents": config}),
                    tags={"bulkops/documents": str(len(paths)), "bulkops/document_kind": kind},
                )
            ],
            mark,
            message=f"{len(taken)} new document(s) in {folder}; {len(fresh) - len(taken)} left for the next tick",
        )

    return build_drop_folder_sensor(
        name=sensor_name,
        job=document_import_job,
        group="documents",
        description=(
            f"Watches the {folder_name} drop folder (<dropzone>/{folder_name}/, default var/dropzone/{folder_name}/): "
            "the PDFs that have stopped changing are imported together in one document_import_job run; "
            "they move to processed/ or failed/ after it."
        ),
        folder=lambda: (root or settings.dropzone_dir()) / folder_name,
        request=request,
        clock=clock,
        settle_seconds=settle_seconds,
    )


document_sensors = [build_document_sensor(kind) for kind in FOLDERS]
