"""A job description's fields from its text: title, location and description."""

from __future__ import annotations

import re
from dataclasses import dataclass

LABELLED = re.compile(r"^\s*(job\s+title|title|position|role)\s*[:\-\u2013]\s*(?P<v>.+)$", re.I | re.M)
LOCATION = re.compile(r"^\s*(location|based\s+in|office)\s*[:\-\u2013]\s*(?P<v>.+)$", re.I | re.M)
REMOTE = re.compile(r"\b(fully\s+remote|remote)\b", re.I)
SKIP = {"job description", "about us", "about the role", "overview"}


@dataclass
class Posting:
    title: str | None
    location: str | None
    description: str


def parse(text: str) -> Posting:
    """Title (a labelled line, else the first short line), location and the whole text as description."""
    title = None
    if m := LABELLED.search(text):
        title = m.group("v").strip()
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and len(line) <= 120 and line.lower().rstrip(":") not in SKIP:
                title = line
                break
    location = None
    if m := LOCATION.search(text):
        location = m.group("v").strip()
    elif REMOTE.search(text):
        location = "Remote"
    description = "\n".join(ln.rstrip() for ln in text.strip().splitlines())
    return Posting(
        title=title[:500] if title else None, location=location[:500] if location else None, description=description
    )
