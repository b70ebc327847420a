"""Drop-folder sensors: one per entity type, each watching `<dropzone>/<entity>/`.

`build_drop_folder_sensor` is the scan they share with the document drop folders (settled files,
the watermark cursor); each kind says what runs its new files become."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from connectors import settings
from connectors.store.registry import ENTITY_NAMES
from pipelines.imports import dropzone
from pipelines.imports.assets import ImportConfig, import_files
from pipelines.imports.jobs import import_job
from pipelines.imports.shared import OP_NAME, SharedImportConfig, shared_import_job

# optional per-folder launch config (account, mapping_path, on_duplicate, ...): never imported itself
FOLDER_CONFIG = "bulkops.yaml"


@dataclass(frozen=True, order=True)
class Watermark:
    """Newest (arrival time, name) already requested; ties on time are broken by name."""

    stamp_ns: int = 0
    name: str = ""

    @classmethod
    def parse(cls, cursor: str | None) -> Watermark:
        if not cursor:
            return cls()
        data = json.loads(cursor)
        return cls(int(data["t"]), str(data["n"]))

    def dump(self) -> str:
        return json.dumps({"t": self.stamp_ns, "n": self.name}, separators=(",", ":"))


@dataclass(frozen=True, order=True)
class Arrival:
    """A settled file of a drop folder, newer than the cursor: (arrival time, name) order, and its size."""

    stamp_ns: int
    name: str
    size: int

    @property
    def mark(self) -> Watermark:
        return Watermark(self.stamp_ns, self.name)


@dataclass
class Requests:
    """What a drop-folder sensor asks for in one tick: the runs, partitions, and the new watermark."""

    run_requests: list[dg.RunRequest]
    mark: Watermark
    partitions: list[dg.AddDynamicPartitionsRequest] = field(default_factory=list)
    message: str = ""


def _arrival_ns(st: os.stat_result) -> int:
    # ctime moves on rename, so a file `mv`-ed in with an old mtime still counts as new
    return max(st.st_mtime_ns, st.st_ctime_ns)


def settled_arrivals(
    folder: Path, mark: Watermark, horizon_ns: int, skip: Iterable[str] = ()
) -> tuple[list[Arrival], int]:
    """The files of FOLDER newer than MARK that have not changed since HORIZON_NS (oldest first), and
    how many newer ones are still being written. Hidden, temporary and partial names are left alone."""
    skip = set(skip)
    fresh: list[Arrival] = []
    settling = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name in skip or not dropzone.is_candidate(entry.name):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            stamp = _arrival_ns(st)
            if (stamp, entry.name) <= (mark.stamp_ns, mark.name):
                continue
            if stamp > horizon_ns:
                settling += 1
                continue
            fresh.append(Arrival(stamp, entry.name, st.st_size))
    # settled files all arrived before any settling one, so the watermark never passes a file being written
    fresh.sort()
    return fresh, settling


def build_drop_folder_sensor(
    *,
    name: str,
    job: Any,  # a job, or an asset job not yet resolved
    group: str,
    jobs: Sequence[Any] = (),
    description: str,
    folder: Callable[[], Path],
    request: Callable[[dg.SensorEvaluationContext, Path, list[Arrival], Watermark], Requests],
    clock: Callable[[], float] = time.time,
    settle_seconds: float | None = None,
    skip: Iterable[str] = (),
) -> dg.SensorDefinition:
    """A sensor watching one drop folder: each tick lists the files that have stopped changing since the
    cursor (a small (arrival time, name) watermark) and hands them, oldest first, to REQUEST, which
    says what runs to request and how far the watermark moves (files it leaves wait for the next tick).
    With JOBS (JOB among them), REQUEST names the job of each run request.

    `settle_seconds`, when not given, is read from `connectors.settings` at every evaluation, so a
    changed environment applies from the next tick on; `clock` is injectable so tests need no sleeping.
    """

    @dg.sensor(
        name=name,
        job=None if jobs else job,
        jobs=list(jobs) or None,
        minimum_interval_seconds=15,
        tags={"bulkops/group": group},
        default_status=(
            dg.DefaultSensorStatus.RUNNING if settings.dropzone_sensors_running() else dg.DefaultSensorStatus.STOPPED
        ),
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        settle_ns = int((settings.dropzone_settle_seconds() if settle_seconds is None else settle_seconds) * 1e9)
        where = folder()
        where.mkdir(parents=True, exist_ok=True)
        mark = Watermark.parse(context.cursor)
        fresh, settling = settled_arrivals(where, mark, int(clock() * 1e9) - settle_ns, skip)
        if not fresh:
            return dg.SensorResult(
                skip_reason=f"{settling} file(s) still being written" if settling else "no new files"
            )
        out = request(context, where, fresh, mark)
        if out.message:
            context.log.info(out.message)
        return dg.SensorResult(
            run_requests=out.run_requests, dynamic_partitions_requests=out.partitions, cursor=out.mark.dump()
        )

    return _sensor


def _folder_config(folder: Path) -> dict[str, Any]:
    path = folder / FOLDER_CONFIG
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a mapping of import config fields")
    unknown = set(data) - set(ImportConfig.model_fields) - {"entity", "path"}
    if unknown:
        raise ValueError(f"{path} names unknown import config fields: {', '.join(sorted(unknown))}")
    data.pop("path", None)
    data.pop("entity", None)
    return data


@dataclass(frozen=True)
class _Taken:
    """A file a tick takes: its arrival, path, content hash and partition."""

    arrival: Arrival
    path: Path
    sha: str
    key: str

    @property
    def run_key(self) -> str:
        # content hash plus arrival: a re-evaluated tick never launches twice, a re-drop launches
        # once and the engine records it as a skipped duplicate
        return f"{self.sha}:{self.arrival.stamp_ns}:{self.arrival.name}"


def build_dropzone_sensor(
    entity: str,
    *,
    clock: Callable[[], float] = time.time,
    settle_seconds: float | None = None,
    max_files_per_tick: int | None = None,
    max_bytes_per_tick: int | None = None,
    files_per_run: int | None = None,
    shared_run_max_bytes: int | None = None,
    root: Path | None = None,
) -> dg.SensorDefinition:
    """The drop-folder sensor of one entity type.

    Args:
        entity: record type whose folder (`<dropzone>/<entity>/`) is watched.
        clock: seconds since the epoch; injectable so tests need no sleeping.
        settle_seconds: a file is picked up once it has not changed (mtime or ctime) for this long.
        max_files_per_tick: files taken per evaluation; the rest wait for the next tick.
        max_bytes_per_tick: bytes hashed per evaluation (at least one file is always taken).
        files_per_run: small files that share one `shared_import_job` run (1: a run per file).
        shared_run_max_bytes: a file larger than this gets an `import_job` run of its own.
        root: drop-zone root.

    Each of the last six (but root), when not given, is read from `connectors.settings` at every
    evaluation, so a changed environment applies from the next tick on, without reloading the code
    location. A tick taking one small file, or a big one, requests an `import_job` run of its
    partition as before; several small files are requested in shared runs of up to `files_per_run`.
    """

    def single(t: _Taken, overrides: dict[str, Any]) -> dg.RunRequest:
        config = ImportConfig(
            **{"actor": f"sensor:{entity}_dropzone_sensor", **overrides, "path": str(t.path), "entity": entity}
        )
        return dg.RunRequest(
            job_name=import_job.name,
            partition_key=t.key,
            run_key=f"{entity}:{t.run_key}",
            run_config=dg.RunConfig(ops={"imported_file": config}),
            tags={"bulkops/entity": entity, "bulkops/file": t.arrival.name[:200], "bulkops/sha256": t.sha},
        )

    def shared(chunk: list[_Taken], overrides: dict[str, Any]) -> dg.RunRequest:
        if len(chunk) == 1:
            return single(chunk[0], overrides)
        config = SharedImportConfig(
            **{
                "actor": f"sensor:{entity}_dropzone_sensor",
                **overrides,
                "entity": entity,
                "files": [str(t.path) for t in chunk],
                "partitions": [t.key for t in chunk],
            }
        )
        # the same files in the same order: the same key, so a re-evaluated tick never launches twice
        digest = hashlib.sha256("\n".join(t.run_key for t in chunk).encode()).hexdigest()[:32]
        return dg.RunRequest(
            job_name=shared_import_job.name,
            run_key=f"{entity}:files:{digest}",
            run_config=dg.RunConfig(ops={OP_NAME: config}),
            # no bulkops/sha256 here (a tag holds one value): the run tags itself with the content it
            # is importing, file by file, and waits for an earlier run importing the same content
            tags={
                "bulkops/entity": entity,
                "bulkops/files": str(len(chunk)),
                "bulkops/file": f"{chunk[0].arrival.name[:150]} (+{len(chunk) - 1} more)",
            },
        )

    def request(context: dg.SensorEvaluationContext, folder: Path, fresh: list[Arrival], mark: Watermark) -> Requests:
        max_files = max_files_per_tick or settings.dropzone_max_files_per_tick()
        max_bytes = max_bytes_per_tick or settings.dropzone_max_bytes_per_tick()
        per_run = files_per_run or settings.import_files_per_run()
        big = settings.import_shared_run_max_bytes() if shared_run_max_bytes is None else shared_run_max_bytes
        overrides = _folder_config(folder)
        taken: list[_Taken] = []
        budget = max_bytes
        for f in fresh[:max_files]:
            if taken and f.size > budget:
                break
            path = folder / f.name
            try:
                sha = dropzone.file_sha256(path)
            except FileNotFoundError:
                # moved away between listing and hashing
                mark = max(mark, f.mark)
                continue
            budget -= f.size
            taken.append(_Taken(f, path, sha, dropzone.partition_key(entity, f.name, sha)))
            mark = max(mark, f.mark)
        requests: list[dg.RunRequest] = []
        chunk: list[_Taken] = []
        for t in taken:
            if t.arrival.size > big:
                requests.append(single(t, overrides))
                continue
            chunk.append(t)
            if len(chunk) == per_run:
                requests.append(shared(chunk, overrides))
                chunk = []
        if chunk:
            requests.append(shared(chunk, overrides))
        keys = list(dict.fromkeys(t.key for t in taken))
        return Requests(
            requests,
            mark,
            [import_files.build_add_request(keys)] if keys else [],
            f"{len(taken)} new file(s) in {folder} in {len(requests)} run(s); "
            f"{len(fresh) - len(taken)} left for the next tick",
        )

    return build_drop_folder_sensor(
        name=f"{entity}_dropzone_sensor",
        job=import_job,
        jobs=[import_job, shared_import_job],
        group="imports",
        description=(
            f"Watches {entity} drop folder (<dropzone>/{entity}/, default var/dropzone/{entity}/): every new file "
            "that has stopped changing becomes an `import_files` partition. Small files found together share "
            "shared_import_job runs (up to BULKOPS_IMPORT_FILES_PER_RUN each); a lone or big file gets an "
            "import_job run (run keys from content hashes and arrival). Files move to processed/ or failed/ "
            f"after their import; an optional {FOLDER_CONFIG} in the folder sets the launch config."
        ),
        folder=lambda: dropzone.entity_dir(entity, root),
        request=request,
        clock=clock,
        settle_seconds=settle_seconds,
        skip=[FOLDER_CONFIG],
    )


dropzone_sensors = [build_dropzone_sensor(entity) for entity in ENTITY_NAMES]
