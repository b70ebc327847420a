"""PDF text: pypdfium2 for the text layer (the fast path), Tesseract for pages that are only images.

`extract(path, limits)` returns the text of each page or raises `DocumentError` naming why the
file cannot be read: empty, not a PDF (an HTML page saved as .pdf), encrypted with a user password
(a PDF with only an owner password opens and is read), corrupt or truncated, or over a limit. It
runs in a worker process of `connectors.documents.pool`, which bounds time and memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from connectors.documents.errors import DocumentError

HEAD_BYTES = 1024
# a complete PDF ends with %%EOF; writers may append a few bytes after it
TAIL_BYTES = 2048


@dataclass(frozen=True)
class Limits:
    """Bounds on one document's work (the pool enforces time and memory in its worker)."""

    max_bytes: int = 50 * 1024 * 1024
    max_pages: int = 200
    seconds: float = 60.0
    memory_bytes: int = 1536 * 1024 * 1024
    ocr: bool = True
    ocr_dpi: int = 300


@dataclass
class Extracted:
    """The text of each page (index 0 is page 1) and which pages were read by OCR."""

    pages: list[str]
    ocr_pages: list[int] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\f".join(self.pages)


def sniff(path: Path, limits: Limits) -> None:
    """Refuse what is not a readable PDF before opening it: empty, too large, not a PDF, truncated."""
    size = path.stat().st_size
    if size == 0:
        raise DocumentError("empty", f"{path.name} has 0 bytes")
    if size > limits.max_bytes:
        raise DocumentError("too_large", f"{path.name} has {size:,} bytes, more than the {limits.max_bytes:,} allowed")
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read()
    if b"%PDF-" not in head:
        low = head.lstrip()[:200].lower()
        if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low:
            what = "an HTML page"
        elif low.startswith((b"\x89png", b"\xff\xd8\xff", b"gif8")):
            what = "an image"
        elif low.startswith(b"pk\x03\x04"):
            what = "a zip archive (a .docx?)"
        else:
            what = None
        kind = f"is {what}, " if what else ""
        raise DocumentError("not_pdf", f"{path.name} {kind}has no %PDF- header: not a PDF despite its name")
    if b"%%EOF" not in tail:
        raise DocumentError("corrupt", f"{path.name} is truncated: it ends before the PDF's end marker (%%EOF)")


def _open(path: Path):
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if exc.err_code == raw.FPDF_ERR_PASSWORD:
            raise DocumentError(
                "encrypted", f"{path.name} is password-protected: it cannot be opened without its password"
            ) from None
        if exc.err_code == raw.FPDF_ERR_SECURITY:
            raise DocumentError("encrypted", f"{path.name} is encrypted with an unsupported security handler") from None
        raise DocumentError("corrupt", f"{path.name} is corrupt: the PDF structure cannot be parsed") from None


def _image_only(page) -> bool:
    import pypdfium2.raw as raw

    return any(True for _ in page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=2))


def extract(path: str | Path, limits: Limits | None = None) -> Extracted:
    """The text of each page of the PDF at PATH; image-only pages through OCR (when `limits.ocr`).

    Raises:
        DocumentError: why the file cannot be read.
    """
    limits = limits or Limits()
    path = Path(path)
    sniff(path, limits)
    doc = _open(path)
    try:
        n = len(doc)
        if n > limits.max_pages:
            raise DocumentError(
                "too_many_pages", f"{path.name} has {n:,} pages, more than the {limits.max_pages} allowed"
            )
        if n == 0:
            raise DocumentError("corrupt", f"{path.name} has no pages")
        pages: list[str] = []
        scans: list[int] = []
        for i in range(n):
            page = doc[i]
            try:
                tp = page.get_textpage()
                try:
                    text = tp.get_text_range()
                finally:
                    tp.close()
                if not text.strip() and _image_only(page):
                    scans.append(i)
            finally:
                page.close()
            # pdfium ends lines with \r\n
            pages.append(text.replace("\r\n", "\n").replace("\r", "\n"))
        if scans and limits.ocr:
            from connectors.documents import ocr

            for i in scans:
                pages[i] = ocr.page_text(doc, i, path.name, dpi=limits.ocr_dpi)
        elif scans and len(scans) == n:
            raise DocumentError("ocr_unavailable", f"{path.name} has only scanned pages: OCR is needed to read it")
        return Extracted(pages, scans if limits.ocr else [])
    except DocumentError:
        raise
    except MemoryError:
        raise DocumentError("out_of_memory", f"{path.name} needs more than the memory limit allows") from None
    except Exception as exc:
        name = type(exc).__name__
        raise DocumentError("corrupt", f"{path.name} could not be read ({name}: {exc})"[:500]) from None
    finally:
        doc.close()


def file_size(path: str | Path) -> int:
    return os.stat(path).st_size
