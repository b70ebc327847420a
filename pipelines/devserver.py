"""Run `dagster dev` so that Ctrl-C (SIGINT), SIGTERM or SIGHUP stops all of it within seconds.

`dagster dev` starts a webserver, a daemon and code servers. Started with SIGINT ignored (from a
background shell job, nohup, some IDEs and CI runners), each of them ignores SIGINT and, because dagster
maps SIGTERM onto the SIGINT handler, SIGTERM too: only SIGKILL stopped them. And with a working
SIGINT, their shutdown runs one after the other and takes tens of seconds on a busy machine.

This launcher runs `dagster dev` in a process group of its own with the default signal handlers.
On the first signal it sends SIGINT to the whole group, as a terminal's Ctrl-C does, and waits
`--grace` seconds for a clean exit; then, or on a second signal, it kills whatever is left.

Before starting it, it compiles the code location's bytecode (`compile_bytecode`): every run is a
fresh run worker that imports the code location, and where no `.pyc` is cached (an environment
with `PYTHONDONTWRITEBYTECODE=1`, a read-only install) each one compiles about 130 modules from
source first, about half a second per run on the 2-core machine.

    python -m pipelines.devserver [--grace SECONDS] -- DAGSTER_DEV_ARGS...
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_GRACE_SECONDS = 5.0
# the packages a run worker imports from this source tree
CODE_PACKAGES = ("connectors", "pipelines", "resources")


def compile_bytecode(root: Path | None = None) -> bool:
    """Write the `.pyc` files of the code location's packages under ROOT (default: this source tree)
    where missing or stale, even under `PYTHONDONTWRITEBYTECODE`; False when one could not be written."""
    root = root or Path(__file__).resolve().parents[1]
    ok = True
    for package in CODE_PACKAGES:
        if (root / package).is_dir():
            try:
                ok = compileall.compile_dir(root / package, quiet=2) and ok
            except OSError:
                ok = False
    return ok


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def run(dagster_dev_args: Sequence[str], grace_seconds: float = DEFAULT_GRACE_SECONDS) -> int:
    """Run `dagster dev` with these arguments until it exits or a stop signal arrives; its exit code, 0 when stopped."""
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    # handlers (not SIG_IGN) here mean default dispositions in the child after exec, whatever we inherited
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    child = subprocess.Popen([sys.executable, "-m", "dagster", "dev", *dagster_dev_args], start_new_session=True)
    pgid = child.pid
    try:
        while not received:
            try:
                code = child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            # dagster dev ended by itself: leave no code server or run worker behind
            _signal_group(pgid, signal.SIGKILL)
            return code
        print(
            f"stopping dagster dev (at most {grace_seconds:g}s; press Ctrl-C again to kill it now)",
            file=sys.stderr,
            flush=True,
        )
        _signal_group(pgid, signal.SIGINT)
        asked = len(received)
        deadline = time.monotonic() + grace_seconds
        while _group_alive(pgid) and time.monotonic() < deadline and len(received) == asked:
            child.poll()
            time.sleep(0.1)
        if _group_alive(pgid):
            print("dagster dev did not stop in time: killing what is left", file=sys.stderr, flush=True)
        return 0
    finally:
        _signal_group(pgid, signal.SIGKILL)
        child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.devserver", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help=f"seconds to wait for a clean stop before killing (default {DEFAULT_GRACE_SECONDS:g})",
    )
    parser.add_argument("dagster_dev_args", nargs=argparse.REMAINDER, help="arguments of `dagster dev`, after --")
    args = parser.parse_args(argv)
    rest = args.dagster_dev_args[1:] if args.dagster_dev_args[:1] == ["--"] else args.dagster_dev_args
    # a read-only tree only costs each run worker the compile: start anyway
    compile_bytecode()
    return run(rest, args.grace)


if __name__ == "__main__":
    sys.exit(main())
