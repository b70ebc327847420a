"""The temporary file of an export killed mid-write (kill -9, a lost host) does not stay for ever: the
next export into the folder removes the files of writers that are gone, and only those."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from connectors import processes
from connectors.files import writers
from connectors.store.export import ExportSpec, export
from tests.exports.conftest import Dataset

DAY = 24 * 3600


def _dead_writer_name(final: str) -> str:
    """The temporary name a process that has since exited gave FINAL."""
    child = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    started = processes.start_time(child.pid)
    child.stdin.close()
    child.wait()
    return f".{final}.{processes.host_token()}-{child.pid}-{started}-{uuid.uuid4().hex[:8]}.tmp"


def _touch(path: Path, age: float = 0) -> Path:
    path.write_text("half a file")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_only_temporaries_of_gone_writers_are_removed(tmp_path: Path) -> None:
    here = processes.host_token()
    other_host = "0" * 8 if here != "0" * 8 else "1" * 8
    pid = os.getpid()
    gone = {
        _touch(tmp_path / _dead_writer_name("a.csv")),
        # this pid, but another process's start time: the pid was reused
        _touch(tmp_path / f".b.csv.{here}-{pid}-1-0123abcd.tmp"),
        _touch(tmp_path / f".c.csv.{other_host}-{pid}-1-0123abcd.tmp", age=DAY + 60),
        # written before temporary names named their writer
        _touch(tmp_path / ".d.csv.89abcdef.tmp", age=DAY + 60),
    }
    kept = {
        _touch(writers.temporary_path(tmp_path / "live.csv")),
        _touch(tmp_path / f".e.csv.{other_host}-{pid}-1-0123abcd.tmp", age=60),
        _touch(tmp_path / ".f.csv.89abcdef.tmp", age=60),
        _touch(tmp_path / ".notes.tmp", age=DAY + 60),
        _touch(tmp_path / "report.csv", age=DAY + 60),
        _touch(tmp_path / f".g.csv.{here}-{pid}-1-0123abcd.tmp.bak"),
    }
    (tmp_path / f".h.csv.{here}-{pid}-1-0123abcd.tmp").mkdir()

    removed = writers.remove_stale_temporaries(tmp_path)

    assert set(removed) == gone
    assert {p for p in tmp_path.iterdir() if p.is_file()} == kept


def test_the_next_export_into_the_folder_removes_a_killed_exports_file(dataset: Dataset, tmp_path: Path) -> None:
    left = _touch(tmp_path / _dead_writer_name("applications.csv"))
    spec = ExportSpec("applications", dataset.account_id, columns=())

    result = export(dataset.store.engine, spec, tmp_path / "applications.csv")

    assert result.removed == [left]
    assert [p.name for p in tmp_path.iterdir()] == ["applications.csv"]
