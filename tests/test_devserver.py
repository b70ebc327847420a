"""`make dev` stops, all of it, on Ctrl-C: the webserver, the daemon, the code servers and make."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 300  # a cold start on a loaded 2-core machine took 65 s
STOP_TIMEOUT_S = 15

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (ppid, session id, state, start time) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), int(fields[3]), fields[0], fields[19])
    return out


def _sessions_of_tree(root: int) -> set[int]:
    procs = _processes()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, *_rest) in procs.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return {procs[pid][1] for pid in tree if pid in procs}


def _alive_in(sessions: set[int]) -> list[str]:
    alive = []
    for pid, (_ppid, sid, state, _start) in _processes().items():
        if sid in sessions and state != "Z":
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            except OSError:
                continue
            alive.append(f"{pid} {cmd}")
    return alive


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["from-a-terminal", "from-the-background"])
def test_sigint_to_make_dev_stops_every_process_within_seconds(tmp_path: Path, sigint: signal.Handlers) -> None:
    # a background job or nohup starts with SIGINT ignored: dagster then ignored SIGTERM as well
    port = _free_port()
    venv = Path(sys.executable).parent.parent
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "BULKOPS_VAR_DIR": str(tmp_path / "var"),
        "BULKOPS_DROPZONE_SENSORS": "stopped",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("BULKOPS_DATABASE_URL", None)
    command = ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/bin/bulkops", f"DEV_PORT={port}", "dev"]
    log = tmp_path / "make-dev.log"

    def in_child() -> None:
        signal.signal(signal.SIGINT, sigint)

    with log.open("wb") as out:
        make = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=in_child,
        )
    sessions: set[int] = {make.pid}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers(f"http://127.0.0.1:{port}/server_info"):
            assert make.poll() is None, f"make dev exited with {make.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"the webserver did not answer in {READY_TIMEOUT_S}s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(1)
        sessions |= _sessions_of_tree(make.pid)
        assert len(_alive_in(sessions)) >= 5, _alive_in(sessions)  # make, launcher, dagster dev, webserver, daemon, ...

        os.killpg(make.pid, signal.SIGINT)
        stopped_by = time.monotonic() + STOP_TIMEOUT_S
        while _alive_in(sessions) and time.monotonic() < stopped_by:
            make.poll()
            time.sleep(0.2)
        survivors = _alive_in(sessions)
        assert survivors == [], f"still running {STOP_TIMEOUT_S}s after SIGINT: {survivors}\n{log.read_text()[-3000:]}"
        make.wait(timeout=10)  # make itself has exited, not only its children
        assert not _answers(f"http://127.0.0.1:{port}/server_info")
    finally:
        for sid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sid, signal.SIGKILL)
        make.wait(timeout=30)


def test_the_code_location_bytecode_is_written_even_where_python_would_not(tmp_path: Path) -> None:
    # run workers import the code location afresh: with no .pyc each compiles every module first
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "definitions.py").write_text("X = 1\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "other.py").write_text("Y = 2\n")
    code = "import sys; sys.dont_write_bytecode = True; from pathlib import Path; from pipelines.devserver import compile_bytecode"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; sys.exit(0 if compile_bytecode(Path({str(tmp_path)!r})) else 1)"],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0
    cached = {p.name.split(".")[0] for p in (tmp_path / "pipelines" / "__pycache__").iterdir()}
    assert cached == {"__init__", "definitions"}
    assert not (tmp_path / "elsewhere" / "__pycache__").exists()
