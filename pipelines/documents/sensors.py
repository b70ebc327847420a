"""Document drop folders: `<dropzone>/resumes/` and `<dropzone>/job_descriptions/`.

Each tick takes the PDFs that have stopped changing (a half-written file, or one with a
temporary name such as `.part`, is left for a later tick) and requests ONE `document_import_job`
run for all of them, so many documents share a run. The run moves each file to processed/ or
failed/; a PDF dropped again is recorded as a skipped document of that run's import.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from connectors import settings
from pipelines.documents.assets import FOLDERS, DocumentImportConfig, document_import_job
from pipelines.imports import dropzone
from pipelines.imports.sensors import Watermark

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

    @dg.sensor(
        name=f"{folder_name}_dropzone_sensor",
        job=document_import_job,
        minimum_interval_seconds=15,
        tags={"bulkops/group": "documents"},
        default_status=(
            dg.DefaultSensorStatus.RUNNING if settings.dropzone_sensors_running() else dg.DefaultSensorStatus.STOPPED
        ),
        description=(
            f"Watches the {folder_name} drop folder (<dropzone>/{folder_name}/, default var/dropzone/{folder_name}/): "
            "the PDFs that have stopped changing are imported together in one document_import_job run; "
            "they move to processed/ or failed/ after it."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        settle_ns = int((settings.dropzone_settle_seconds() if settle_seconds is None else settle_seconds) * 1e9)
        base = root or settings.dropzone_dir()
        folder = base / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        mark = Watermark.parse(context.cursor)
        horizon_ns = int(clock() * 1e9) - settle_ns
        fresh: list[tuple[int, str]] = []
        settling = 0
        with os.scandir(folder) as entries:
            for entry in entries:
                if not dropzone.is_candidate(entry.name) or not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
                stamp = max(st.st_mtime_ns, st.st_ctime_ns)
                if (stamp, entry.name) <= (mark.stamp_ns, mark.name):
                    continue
                if stamp > horizon_ns:
                    settling += 1
                    continue
                fresh.append((stamp, entry.name))
        if not fresh:
            return dg.SensorResult(
                skip_reason=f"{settling} file(s) still being written" if settling else "no new files"
            )
        fresh.sort()
        taken = fresh[:max_documents]
        for stamp, name in taken:
            mark = max(mark, Watermark(stamp, name))
        paths = [str(folder / name) for _, name in taken]
        run_key = hashlib.sha256("\n".join(f"{s}:{n}" for s, n in taken).encode()).hexdigest()[:32]
        config = DocumentImportConfig(
            kind=kind, paths=paths, actor=f"sensor:{folder_name}_dropzone_sensor", dropzone=str(base)
        )
        context.log.info(f"{len(taken)} new document(s) in {folder}; {len(fresh) - len(taken)} left for the next tick")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"{folder_name}:{run_key}",
                    run_config=dg.RunConfig(ops={"import_documents": config}),
                    tags={"bulkops/documents": str(len(paths)), "bulkops/document_kind": kind},
                )
            ],
            cursor=mark.dump(),
        )

    return _sensor


document_sensors = [build_document_sensor(kind) for kind in FOLDERS]
