"""Why a document could not be read: one kind per cause, each with a message in words."""

from __future__ import annotations

# kind -> what the import history and the task status call it
KINDS = {
    "empty": "empty file",
    "not_pdf": "not a PDF",
    "encrypted": "encrypted or password-protected PDF",
    "corrupt": "corrupt or truncated PDF",
    "too_large": "size limit exceeded",
    "too_many_pages": "page-count limit exceeded",
    "timeout": "time limit exceeded",
    "out_of_memory": "memory limit exceeded",
    "ocr_unavailable": "OCR needed but Tesseract is not installed",
    "ocr_failed": "OCR failed",
    "no_text": "no text found",
    "fetch_failed": "the posting could not be fetched",
    "unreadable": "the file could not be read",
}


class DocumentError(Exception):
    """A document that cannot be read, for one named reason (`kind`, a key of KINDS)."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown document error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __reduce__(self):  # crosses process boundaries intact
        return (DocumentError, (self.kind, self.message))

    @property
    def label(self) -> str:
        return KINDS[self.kind]

    def __str__(self) -> str:
        return f"{KINDS[self.kind]}: {self.message}"
