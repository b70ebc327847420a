"""Drop-zone layout and file identity: partition keys, claimed-file moves. No Dagster here.

Layout under `settings.dropzone_dir()`::

    <entity>/                 files waiting to be imported (watched by `<entity>_dropzone_sensor`)
    <entity>/processed/       imported (or recognised as an identical re-drop), renamed `<stem>@<sha12><suffix>`
    <entity>/failed/          the import failed terminally; fix the cause and re-run the partition
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from connectors import settings

PROCESSED = "processed"
FAILED = "failed"
SHA_PREFIX_LEN = 12

# writers that write to a temporary name and rename are never seen half-written
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".swp", ".lock")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MOVED = re.compile(r"^(?P<stem>.*)@(?P<sha>[0-9a-f]{12})(?P<suffix>\.[^.]*)?$", re.DOTALL)
NAME_MAX_BYTES = 255  # a file name's limit on Linux and macOS file systems
_KEY = re.compile(r"^(?P<entity>[a-z_]+)/(?P<slug>.+)@(?P<sha>[0-9a-f]{12})$")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, streamed."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def slug(name: str) -> str:
    # partition keys must not contain '...', newlines, tabs or NULs; keep them readable
    s = _UNSAFE.sub("-", name).strip("-")
    s = re.sub(r"\.{2,}", ".", s)
    return (s or "file")[:180]


def partition_key(entity: str, name: str, sha256: str) -> str:
    """The dynamic partition of one file: `<entity>/<slugged name>@<first 12 hex of its sha256>`."""
    return f"{entity}/{slug(name)}@{sha256[:SHA_PREFIX_LEN]}"


@dataclass(frozen=True)
class PartitionRef:
    entity: str
    slug: str
    sha12: str


def parse_partition_key(key: str) -> PartitionRef | None:
    m = _KEY.match(key)
    return PartitionRef(m["entity"], m["slug"], m["sha"]) if m else None


def entity_dir(entity: str, root: Path | None = None) -> Path:
    return (root or settings.dropzone_dir()) / entity


def is_candidate(name: str) -> bool:
    """Whether a directory entry name looks like a finished, importable file."""
    return not (name.startswith((".", "~")) or name.endswith(IN_PROGRESS_SUFFIXES))


def fit_name(stem: str, tail: str, limit: int = NAME_MAX_BYTES) -> str:
    """`stem + tail`, the stem shortened (never inside a character) so the name fits the file system."""
    room = limit - len(tail.encode("utf-8"))
    cut = stem.encode("utf-8")[: max(room, 1)].decode("utf-8", "ignore")
    return cut + tail


def moved_name(name: str, sha256: str) -> str:
    p = Path(name)
    if _MOVED.match(name):
        return name
    return fit_name(p.stem, f"@{sha256[:SHA_PREFIX_LEN]}{p.suffix}")


def original_name(moved: str) -> str:
    """The name a moved file was dropped with (a name shortened to fit keeps its shortened stem)."""
    m = _MOVED.match(moved)
    return f"{m['stem']}{m['suffix'] or ''}" if m else moved


def is_in_dropzone(path: Path, entity: str, root: Path | None = None) -> bool:
    """True for a file of the entity's drop folder: waiting in it, or in its failed/ or processed/."""
    base = entity_dir(entity, root).resolve()
    return path.resolve().parent in (base, base / FAILED, base / PROCESSED)


def move_claimed(path: Path, entity: str, sha256: str, outcome: str, root: Path | None = None) -> Path:
    """Move a drop-zone file to `processed/` or `failed/` under a content-unique name; returns the new path.

    Files outside the entity's drop folder (a path given to the CLI or the Launchpad) are left alone.
    """
    if outcome not in (PROCESSED, FAILED) or not is_in_dropzone(path, entity, root) or not path.exists():
        return path
    target_dir = entity_dir(entity, root) / outcome
    target = target_dir / moved_name(
        original_name(path.name) if path.parent.name in (FAILED, PROCESSED) else path.name, sha256
    )
    if target.resolve() == path.resolve():
        return path
    target_dir.mkdir(parents=True, exist_ok=True)
    # same name and sha: the same bytes, so replacing is harmless
    os.replace(path, target)
    return target


def locate(ref: PartitionRef, root: Path | None = None) -> Path | None:
    """Find the file of a partition for a re-run started without a path: waiting, failed, then processed."""
    base = entity_dir(ref.entity, root)
    for folder, moved in ((base, False), (base / FAILED, True), (base / PROCESSED, True)):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.is_file():
                    continue
                m = _MOVED.match(entry.name) if moved else None
                if moved and (m is None or m["sha"] != ref.sha12):
                    continue
                name = original_name(entry.name) if moved else entry.name
                if slug(name) != ref.slug:
                    continue
                if moved or file_sha256(entry.path)[:SHA_PREFIX_LEN] == ref.sha12:
                    return Path(entry.path)
    return None
