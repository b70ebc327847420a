"""Terminal import errors: data problems that a retry cannot fix."""

from __future__ import annotations


class ImportFailed(Exception):
    """A terminal data problem; `message` names the file, row and column when known."""

    def __init__(self, message: str, *, import_id: object = None, result: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.import_id = import_id
        self.result = result


class MappingError(ImportFailed):
    """Invalid mapping: unknown target field, missing source column, bad transform."""


class FileFormatError(ImportFailed):
    """Unreadable file: bad encoding, empty file, unknown format."""
