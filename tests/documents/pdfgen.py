"""Generated PDFs for tests and benchmarks: text pages (one or two columns), scanned (image-only)
pages, and broken files. A small writer of its own, so every byte is known."""

from __future__ import annotations

import io
import zlib
from pathlib import Path


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content(columns: list[list[str]], size: int = 11) -> bytes:
    out = []
    width = 500 // len(columns)
    for c, lines in enumerate(columns):
        out.append(f"BT /F1 {size} Tf {14 * 1.2:.1f} TL {56 + c * (width + 20)} 760 Td")
        for line in lines:
            out.append(f"({_esc(line)}) Tj T*")
        out.append("ET")
    return "\n".join(out).encode("latin-1", "replace")


def build(pages: list[list[list[str]] | bytes], *, extra_trailer: str = "") -> bytes:
    """A PDF of PAGES: each a list of columns (lists of lines) or the JPEG bytes of a scanned page."""
    objs: list[bytes] = []

    def add(body: bytes) -> int:
        objs.append(body)
        return len(objs)

    catalog = add(b"")
    pages_id = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for page in pages:
        if isinstance(page, bytes):
            from PIL import Image

            w, h = Image.open(io.BytesIO(page)).size
            img = add(
                f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray "
                f"/BitsPerComponent 8 /Filter /DCTDecode /Length {len(page)} >>\nstream\n".encode()
                + page
                + b"\nendstream"
            )
            stream = b"q 612 0 0 792 0 0 cm /Im0 Do Q"
            resources = f"<< /XObject << /Im0 {img} 0 R >> >>"
        else:
            stream = zlib.compress(_content(page))
            resources = f"<< /Font << /F1 {font} 0 R >> >>"
            stream_obj = add(
                f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode() + stream + b"\nendstream"
            )
        if isinstance(page, bytes):
            stream_obj = add(f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
        kids.append(
            add(
                f"<< /Type /Page /Parent {pages_id} 0 R /MediaBox [0 0 612 792] "
                f"/Resources {resources} /Contents {stream_obj} 0 R >>".encode()
            )
        )
    objs[catalog - 1] = f"<< /Type /Catalog /Pages {pages_id} 0 R >>".encode()
    objs[pages_id - 1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    buf = io.BytesIO()
    buf.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(buf.tell())
        buf.write(f"{i} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = buf.tell()
    buf.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        buf.write(f"{off:010d} 00000 n \n".encode())
    buf.write(
        f"trailer\n<< /Size {len(objs) + 1} /Root {catalog} 0 R {extra_trailer}>>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return buf.getvalue()


FIRST = ("Alex", "Jordan", "Sam", "Riley", "Casey", "Morgan", "Taylor", "Jamie", "Avery", "Quinn")
LAST = ("Morgan", "Lee", "Patel", "Garcia", "Kim", "Nguyen", "Smith", "Okafor", "Rossi", "Novak")


def person(i: int) -> tuple[str, str, str]:
    """(first name, last name, email) of generated person I: names from small lists, the email unique."""
    first, last = FIRST[i % 10], LAST[(i // 10) % 10]
    return first, last, f"{first.lower()}.{last.lower()}.{i}@example.com"


def resume_lines(i: int, skills: list[str] | None = None) -> list[str]:
    skills = skills or ["Python", "SQL", "Docker", "Kubernetes"]
    first, last, email = person(i)
    return [
        f"{first} {last}",
        f"{email} | +1 415 555 {i % 10000:04d}",
        "linkedin.com/in/alexmorgan",
        "",
        "Summary",
        "Backend engineer who builds data pipelines and services.",
        "",
        "Skills",
        ", ".join(skills),
        "",
        "Experience",
        "Senior Engineer, Acme Corp (2019 - 2024)",
        "Built ingestion services; led a migration to PostgreSQL.",
    ]


def resume_pdf(i: int, skills: list[str] | None = None, *, pages: int = 1) -> bytes:
    first = [resume_lines(i, skills)]
    more = [
        [[f"Project {p}: maintained reporting jobs and on-call rotations." for _ in range(30)]]
        for p in range(pages - 1)
    ]
    return build([first, *more])


def scanned_page(lines: list[str]) -> bytes:
    """JPEG of a letter page (200 dpi) with LINES drawn in a 17 pt font: what a scanner gives."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (1700, 2200), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=48)
    y = 160
    for line in lines:
        draw.text((140, y), line, fill=0, font=font)
        y += 80
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def huge_page_tree(pages: int, *, cyclic: bool = False) -> bytes:
    """A PDF of PAGES empty pages sharing one content stream (a few MB, a huge page tree); CYCLIC
    makes one /Kids entry point back at the root of the tree."""
    buf = io.BytesIO()
    buf.write(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}

    def obj(num: int, body: bytes) -> None:
        offsets[num] = buf.tell()
        buf.write(f"{num} 0 obj\n".encode() + body + b"\nendobj\n")

    first = 4
    kids = " ".join(f"{first + i} 0 R" for i in range(pages))
    if cyclic:
        kids += " 2 0 R"
    obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    obj(2, f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    obj(3, b"<< /Length 0 >>\nstream\n\nendstream")
    for i in range(pages):
        obj(first + i, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>")
    n = first + pages
    xref = buf.tell()
    buf.write(f"xref\n0 {n}\n0000000000 65535 f \n".encode())
    buf.write(b"".join(f"{offsets[i]:010d} 00000 n \n".encode() for i in range(1, n)))
    buf.write(f"trailer\n<< /Size {n} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
