"""A disk that fills while an import writes its failed-rows file: the import fails saying so, leaves
no failed-rows file under its final name, keeps what it committed, and a re-run resumes exactly."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.store import RecordStore
from pipelines.imports.engine import ImportOptions, run_import
from tests.faults import skip_unless
from tests.imports.helpers import apps_csv, count


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "512k") -> Iterator[Path]:
    skip_unless(os.geteuid() == 0, "mounting a tmpfs needs root")
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    skip_unless(done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _fill(folder: Path, leave: int) -> Path:
    """Fill FOLDER's file system but LEAVE bytes (rounded to its pages)."""
    filler = folder / "filler"
    free = os.statvfs(folder)
    with open(filler, "wb") as f:
        f.write(b"x" * max(free.f_bavail * free.f_frsize - leave, 0))
    return filler


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_full_disk_under_the_failed_rows_file_fails_clearly_and_a_re_run_resumes(
    store: RecordStore, account: uuid.UUID, tmp_path: Path
) -> None:
    # 300 rows in batches of 50; every third row has a bad email and a long note, so each batch adds about 35 KB of failed rows
    rows = [
        f"D-{i},F{i},L{i},{'not-an-email ' + 'n' * 1000 if i % 3 == 0 else f'd{i}@example.com'},JOB-1,Applied,2026-01-02,1"
        for i in range(300)
    ]
    path = apps_csv(tmp_path, rows)
    options = ImportOptions(batch_size=50)
    with small_disk(tmp_path / "disk") as disk:
        filler = _fill(disk, 64 * 1024)
        with pytest.raises(OSError, match=r"cannot write the failed-rows file in .*disk: No space left on device"):
            run_import(store, account, path, options, failed_rows_dir=disk)
        # nothing under a final name; the hidden part file is the resume point
        assert [p.name for p in disk.iterdir() if not p.name.startswith(".")] == ["filler"]
        committed = count(store, "applications", account)
        assert 0 < committed < 200

        filler.unlink()
        again = run_import(store, account, path, options, failed_rows_dir=disk)
        assert again.status == "completed"
        assert count(store, "applications", account) == 200
        failed_rows = (disk / Path(again.failed_rows_path).name).read_text().splitlines()
        assert len(failed_rows) == 1 + 100
