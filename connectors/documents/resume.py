"""A resume's contact fields from its text: name, email, phone and links."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
PHONE = re.compile(r"(?<![\w+])(\+?\d[\d\s().-]{7,}\d)(?!\w)")
LINK = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+|\b(?:linkedin\.com|github\.com|gitlab\.com)/[^\s<>()\"']+", re.I)
HEADINGS = {
    "resume", "curriculum vitae", "cv", "profile", "summary", "contact", "experience", "education", "skills",
}  # fmt: skip
NAME_WORD = re.compile(r"^[A-Z][A-Za-z'\u2019.-]*$")


@dataclass
class Contact:
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    links: list[str] = field(default_factory=list)


def _name(lines: list[str]) -> tuple[str | None, str | None]:
    """The first line near the top that reads as a person's name (2-4 capitalised words)."""
    for line in lines[:8]:
        words = line.split()
        if "," in line or not 2 <= len(words) <= 4 or line.strip().lower() in HEADINGS:
            continue
        if EMAIL.search(line) or any(ch.isdigit() for ch in line):
            continue
        if all(NAME_WORD.match(w) for w in words):
            return words[0], " ".join(words[1:])
    return None, None


def parse(text: str) -> Contact:
    """Contact fields found in a resume's text (each None when absent)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    c = Contact()
    c.first_name, c.last_name = _name(lines)
    if m := EMAIL.search(text):
        c.email = m.group(0).strip(".").lower()
    for m in PHONE.finditer(text):
        digits = re.sub(r"\D", "", m.group(1))
        if 8 <= len(digits) <= 15 and not re.fullmatch(r"(19|20)\d\d\s*[-\u2013]\s*(19|20)\d\d", m.group(1).strip()):
            c.phone = " ".join(m.group(1).split())
            break
    links = []
    for m in LINK.finditer(text):
        url = m.group(0).rstrip(".,;")
        if "@" in url:
            continue
        links.append(url if url.lower().startswith("http") else f"https://{url}")
    c.links = list(dict.fromkeys(links))
    return c
