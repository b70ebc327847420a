"""Which process is which: host, pid and kernel start time, so a dead process is told from a live one
that reuses its pid. Run tags (`bulkops/process`) and temporary file names carry them."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of PID (tells a reused pid apart); None when no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def this_process() -> str:
    """host:pid:start-time of the calling process."""
    return process_id(os.getpid())


def process_id(pid: int) -> str:
    """host:pid:start-time of process PID (no start time when there is no such process)."""
    return f"{socket.gethostname()}:{pid}:{start_time(pid) or ''}"


def host_token() -> str:
    """Eight hex digits naming this host, for file names (a host name may hold dots and dashes)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def gone_here(pid: int, started: str) -> bool:
    """Whether process PID, started at STARTED (empty: unknown), is certainly gone from this host."""
    now = start_time(pid)
    if now is None:
        return True
    if now == "" or not started:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return now != started


def process_gone(tag: str) -> bool:
    """Whether the process a `process_id` value names is certainly gone (False when on another host)."""
    host, _, rest = tag.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return gone_here(int(pid_text), started)
