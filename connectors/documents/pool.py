"""Documents read in worker processes, each bounded in time and memory.

`read_all(paths, kind, limits, workers)` yields one `Read` per file, in completion order (`Pool` starts
the workers ahead, so that their start-up overlaps the caller's own work). Each worker
is a fresh Python process (`python -m connectors.documents.worker`, one per core by default: it
imports only this package, not the caller's modules) that extracts a PDF's text, parses its fields and
matches its skills, then takes the next file. Its address space is capped (`RLIMIT_AS`), and each
document gets a CPU-time budget (`RLIMIT_CPU`, raised per document) and a wall-clock deadline the
parent enforces by killing the worker. A worker that dies (a hostile file that exhausts memory or
crashes the PDF library) costs that one document, which fails with the reason; a fresh worker
takes the rest. The parent holds no document in memory beyond its results.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from connectors.documents.errors import DocumentError
from connectors.documents.pdf import Limits


@dataclass
class Read:
    """One document's outcome: its text and findings, or the error that stopped it."""

    path: Path
    pages: list[str] = field(default_factory=list)
    ocr_pages: list[int] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    skills: list[Any] = field(default_factory=list)
    error: DocumentError | None = None
    seconds: float = 0.0
    # peak resident memory of the worker process so far (VmHWM), KiB
    worker_peak_kib: int = 0


def analyse(path: Path, kind: str, limits: Limits) -> Read:
    """Extract, parse and match one document (in the calling process)."""
    from connectors.documents import job_description, pdf, resume, skills

    t0 = time.monotonic()
    try:
        ex = pdf.extract(path, limits)
        text = "\n".join(ex.pages)
        if not text.strip():
            raise DocumentError("no_text", f"{path.name} has no text on any page")
        if kind == "resume":
            c = resume.parse(text)
            fields = {
                "first_name": c.first_name,
                "last_name": c.last_name,
                "email": c.email,
                "phone": c.phone,
                "links": c.links,
            }
        else:
            p = job_description.parse(text)
            fields = {"title": p.title, "location": p.location, "description": p.description}
        found = skills.matcher().find(ex.pages)
        return Read(path, ex.pages, ex.ocr_pages, fields, found, None, time.monotonic() - t0)
    except DocumentError as exc:
        return Read(path, error=exc, seconds=time.monotonic() - t0)


def worker_main() -> None:
    """A worker process (`python -m connectors.documents.worker`): limits, then one document per message.

    Tasks are pickles on stdin, results length-prefixed pickles on stdout; the protocol keeps its own
    copy of stdout, and fd 1 points at stderr, so nothing a library prints can corrupt it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    limits: Limits = pickle.load(inp)
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    from connectors.documents import skills

    skills.matcher()

    def send(what: str, result: Any) -> None:
        data = pickle.dumps((what, result), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little") + data)
        out.flush()

    send("ready", None)
    while True:
        try:
            task = pickle.load(inp)
        except EOFError:
            return
        if task is None:
            return
        path, kind = task
        used = resource.getrusage(resource.RUSAGE_SELF)
        budget = int(used.ru_utime + used.ru_stime + limits.seconds) + 1
        if cpu_hard == resource.RLIM_INFINITY or budget < cpu_hard:
            resource.setrlimit(resource.RLIMIT_CPU, (budget, cpu_hard))
        try:
            result = analyse(Path(path), kind, limits)
        except MemoryError:
            name = Path(path).name
            result = Read(Path(path), error=DocumentError("out_of_memory", f"{name} needs more memory than the limit"))
        result.worker_peak_kib = _peak_kib()
        send("done", result)


def _peak_kib() -> int:
    """This process's peak resident set since it started (VmHWM: not the forked parent's, as ru_maxrss is)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Slot:
    """One worker process and the document it is working on."""

    def __init__(self, limits: Limits) -> None:
        env = dict(os.environ)
        # the worker imports this package from where the parent found it
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connectors.documents.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.stdout = self.proc.stdout
        self.send(limits)
        self.ready = False
        self.done = 0
        # the documents sent to it, oldest (the one it is reading) first
        self.queue: deque[tuple[Path, str]] = deque()
        self.deadline = 0.0

    @property
    def task(self) -> tuple[Path, str] | None:
        return self.queue[0] if self.queue else None

    def send(self, message: Any) -> None:
        pickle.dump(message, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()

    def receive(self) -> tuple[str, Any]:
        # one length-prefixed message, read from the pipe itself: nothing is left in a buffer that
        # `wait()` cannot see when the worker has sent the next one already
        fd = self.stdout.fileno()
        n = int.from_bytes(_read_exactly(fd, 8), "little")
        return pickle.loads(_read_exactly(fd, n))

    def retire(self) -> None:
        """Ask the worker to exit, and make sure it has."""
        with contextlib.suppress(OSError, ValueError):
            self.send(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()


def _read_exactly(fd: int, n: int) -> bytes:
    parts = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the worker closed its pipe")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _died(slot: _Slot, limits: Limits) -> DocumentError:
    path = slot.task[0] if slot.task else Path("?")
    code = slot.proc.returncode
    if code == -signal.SIGXCPU:
        return DocumentError("timeout", f"{path.name} took more than {limits.seconds:.0f} s of CPU time")
    if code == -signal.SIGKILL:
        return DocumentError("timeout", f"{path.name} took more than {limits.seconds:.0f} s")
    return DocumentError(
        "out_of_memory",
        f"{path.name} stopped its worker (exit {code}): it needs more than the "
        f"{limits.memory_bytes // 2**20} MiB memory limit, or breaks the PDF library",
    )


# documents a worker reads before it is replaced by a fresh one
RECYCLE_AFTER = 250
# workers that die before taking a document, in one call, before it gives up
MAX_FAILED_STARTS = 3
# documents sent ahead to each worker
QUEUED = 2


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def read_all(
    paths: Iterable[str | Path], kind: str, limits: Limits | None = None, *, workers: int | None = None
) -> Iterator[Read]:
    """Each document's outcome (completion order); at most `workers` documents at a time."""
    todo = [Path(p) for p in paths]
    if not todo:
        return
    with Pool(limits, workers=min(workers or default_workers(), len(todo))) as p:
        yield from p.read(todo, kind)


class Pool:
    """Document workers, started when the pool is entered: their start-up (Python, pypdfium2, the skills
    pattern) runs while the caller does other work, such as hashing and storing the files."""

    def __init__(self, limits: Limits | None = None, *, workers: int | None = None) -> None:
        self.limits = limits or Limits()
        self.size = max(1, workers or default_workers())
        self.slots: list[_Slot] = []

    def __enter__(self) -> Pool:
        self.slots = [_Slot(self.limits) for _ in range(self.size)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        slots, self.slots = self.slots, []
        for slot in slots:
            with contextlib.suppress(OSError, ValueError):
                slot.send(None)
        for slot in slots:
            slot.retire()

    def read(self, paths: Iterable[str | Path], kind: str) -> Iterator[Read]:
        """Each document's outcome (completion order).

        Each worker has up to `QUEUED` documents sent ahead, so that it goes on to the next while the
        caller is busy with a result; the time limit runs from when a worker starts a document.
        """
        limits = self.limits
        todo = [(Path(p), kind) for p in paths]
        todo.reverse()
        pending = len(todo)
        failed_starts = 0

        def fill(slot: _Slot, now: float) -> None:
            while slot.ready and todo and len(slot.queue) < QUEUED and slot.done + len(slot.queue) < RECYCLE_AFTER:
                if not slot.queue:
                    slot.deadline = now + limits.seconds * 1.5 + 5
                slot.queue.append(todo.pop())
                slot.send((str(slot.queue[-1][0]), kind))

        def replace(i: int) -> None:
            # the documents queued behind the one that failed go back to the others
            old = self.slots[i]
            todo.extend(reversed(list(old.queue)[1:]))
            self.slots[i] = _Slot(limits)

        while pending:
            now = time.monotonic()
            for i, slot in enumerate(self.slots):
                if slot.task is not None and now > slot.deadline:
                    slot.kill()
                    pending -= 1
                    path = slot.task[0]
                    replace(i)
                    yield Read(
                        path, error=DocumentError("timeout", f"{path.name} took more than {limits.seconds:.0f} s")
                    )
                else:
                    fill(slot, now)
            busy = [s.stdout for s in self.slots if s.task is not None or not s.ready]
            timeout = max(0.05, min((s.deadline for s in self.slots if s.task is not None), default=now + 1) - now)
            for conn in wait(busy, timeout=min(timeout, 1.0)):
                i = next(j for j, s in enumerate(self.slots) if s.stdout is conn)
                slot = self.slots[i]
                try:
                    what, result = slot.receive()
                except (EOFError, OSError, pickle.UnpicklingError):
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        slot.proc.wait(5)
                    died = slot.task
                    if died is None:
                        failed_starts += 1
                        if failed_starts > MAX_FAILED_STARTS:
                            raise RuntimeError(
                                f"document worker processes do not start (exit {slot.proc.returncode}); "
                                f"is the memory limit ({limits.memory_bytes // 2**20} MiB) too low?"
                            ) from None
                    error = _died(slot, limits) if died is not None else None
                    slot.kill()
                    replace(i)
                    if died is not None:
                        pending -= 1
                        yield Read(died[0], error=error)
                    continue
                if what == "ready":
                    slot.ready = True
                    fill(slot, time.monotonic())
                    continue
                slot.queue.popleft()
                slot.done += 1
                pending -= 1
                now = time.monotonic()
                if slot.done >= RECYCLE_AFTER and not slot.queue and todo:
                    # a fresh worker now and then: memory stays what one document needs
                    slot.retire()
                    self.slots[i] = _Slot(limits)
                else:
                    if slot.queue:
                        slot.deadline = now + limits.seconds * 1.5 + 5
                    # its next documents before the caller gets this one: the worker never waits for the caller
                    fill(slot, now)
                yield result
