"""OCR of scanned pages: rendered by pypdfium2, read by Tesseract (Debian's `tesseract-ocr`)."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess

from connectors.documents.errors import DocumentError

INSTALL_HINT = "install it with `apt-get install tesseract-ocr` (English data included)"


def tesseract() -> str:
    """The tesseract executable, or DocumentError saying that OCR is needed and how to install it."""
    exe = shutil.which("tesseract")
    if exe is None:
        raise DocumentError(
            "ocr_unavailable", f"this PDF is a scan and needs OCR, but Tesseract is missing: {INSTALL_HINT}"
        )
    return exe


def image_text(png: bytes, name: str, *, timeout: float = 60.0) -> str:
    """The text Tesseract reads in one PNG image (English)."""
    exe = tesseract()
    try:
        done = subprocess.run(
            [exe, "stdin", "stdout", "-l", "eng", "--psm", "3"],
            input=png,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DocumentError("timeout", f"{name}: OCR took more than {timeout:.0f} s") from None
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        # tesseract inherits the worker's per-document CPU-time limit
        raise DocumentError("timeout", f"{name}: OCR ran over the document's time limit")
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DocumentError("ocr_failed", f"{name}: Tesseract failed: {why[-1] if why else done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def page_text(doc, index: int, name: str, *, dpi: int = 300) -> str:
    """Render page INDEX of an open pypdfium2 document and read it with Tesseract."""
    tesseract()
    page = doc[index]
    try:
        bitmap = page.render(scale=dpi / 72, grayscale=True)
        image = bitmap.to_pil()
    except (MemoryError, RuntimeError) as exc:
        w, h = page.get_size()
        mb = int(w * h * (dpi / 72) ** 2) // 2**20
        raise DocumentError(
            "out_of_memory",
            f"{name} page {index + 1}: rendering it for OCR ({mb} MiB at {dpi} dpi) failed{': ' + str(exc) if str(exc) else ''}",
        ) from None
    finally:
        page.close()
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return image_text(buf.getvalue(), f"{name} page {index + 1}")
