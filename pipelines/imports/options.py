"""Options of an import: what the Launchpad config, the sensor and `bulkops import` pass down."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.store import registry

ENTITY_TYPES = registry.ENTITY_NAMES
DUPLICATE_KEYS = ("external_id", "email")
ON_DUPLICATE = ("skip", "update", "create", "flag")
ERROR_POLICIES = ("skip", "abort", "threshold")
FILE_FORMATS = ("csv", "parquet", "xlsx")
DEFAULT_NULL_VALUES = ("", "NULL", "null", "Null", "N/A", "n/a", "#N/A", "NA", "-", "None", "none")


@dataclass(frozen=True)
class ImportOptions:
    """How one file is imported.

    Attributes:
        entity: one of ENTITY_TYPES.
        mapping: parsed YAML mapping (see `load_mapping`); None maps by normalised header names.
        duplicate_keys: match existing records on external id and/or normalised email.
        on_duplicate: skip | update | create | flag (flag = leave the record, queue for review).
        default_stage: stage of an application whose row gives none.
        auto_advance: rules `{"when": {"field", "op", "value"}, "stage"}`; the first match wins.
        error_policy: skip bad rows | abort on the first one | abort past `error_threshold`.
        error_threshold: with "threshold", abort when errors / rows read exceeds it.
        batch_size: rows per transaction.
        dry_run: report what would happen, write no records.
        create_missing_jobs: an unknown job code creates the job (True) or rejects the row.
        encoding: None detects (BOM, UTF-8 over the whole file, else charset-normalizer, else cp1252).
        delimiter: None sniffs among , ; tab |.
        file_format: csv | parquet | xlsx | None (from the file's bytes); a given one must match them.
        decode_fallback: encoding for bytes the file's encoding cannot decode (e.g. cp1252);
            None rejects the rows holding such bytes.
        skip_rows: lines above the header to skip; None finds the header past title and comment rows.
        comment: lines starting with this are skipped (e.g. "#"); None skips none.
        sheet: the workbook sheet to read; None reads the first.
        null_values: cell spellings read as empty in columns mapped to record fields
            (not in columns that go to `data`/`answers`, which keep the text as written).
        max_cell_bytes: a row with a cell longer than this (UTF-8 bytes) is rejected.
        actor: who the audit log names.
        force: import even when identical content was already imported (re-import).
        form_name: name of the form submission an application import creates.
        allow_update_without_key: let an import with on_duplicate "update" run although no column of
            the file maps to one of the entity's identity keys (see `check_identity_key`).
        case_sensitive_keys: match job codes and external ids with their case (by default
            `ENG-1` and ` eng-1 ` are one key).
    """

    entity: str = "applications"
    mapping: dict | None = None
    duplicate_keys: tuple[str, ...] = ("external_id", "email")
    on_duplicate: str = "update"
    default_stage: str = "applied"
    auto_advance: tuple[dict, ...] = ()
    error_policy: str = "skip"
    error_threshold: float = 0.1
    batch_size: int = 5000
    dry_run: bool = False
    create_missing_jobs: bool = True
    encoding: str | None = None
    delimiter: str | None = None
    file_format: str | None = None
    decode_fallback: str | None = None
    skip_rows: int | None = None
    comment: str | None = None
    sheet: str | None = None
    null_values: tuple[str, ...] = DEFAULT_NULL_VALUES
    max_cell_bytes: int = 128 * 1024
    actor: str = "bulkops"
    force: bool = False
    form_name: str = "application"
    allow_update_without_key: bool = False
    case_sensitive_keys: bool = False

    def __post_init__(self) -> None:
        from pipelines.imports.errors import ImportFailed

        def bad(msg: str) -> None:
            raise ImportFailed(f"invalid import options: {msg}")

        if self.entity not in ENTITY_TYPES:
            bad(f"entity {self.entity!r} is not one of {', '.join(ENTITY_TYPES)}")
        if not self.duplicate_keys or any(k not in DUPLICATE_KEYS for k in self.duplicate_keys):
            bad(f"duplicate_keys {self.duplicate_keys!r} must be a non-empty subset of {DUPLICATE_KEYS}")
        if self.on_duplicate not in ON_DUPLICATE:
            bad(f"on_duplicate {self.on_duplicate!r} is not one of {', '.join(ON_DUPLICATE)}")
        if self.error_policy not in ERROR_POLICIES:
            bad(f"error_policy {self.error_policy!r} is not one of {', '.join(ERROR_POLICIES)}")
        if not 0 <= self.error_threshold <= 1:
            bad("error_threshold must be between 0 and 1")
        if self.batch_size < 1:
            bad("batch_size must be positive")
        if self.file_format not in (None, *FILE_FORMATS):
            bad(f"file_format {self.file_format!r} is not one of {', '.join(FILE_FORMATS)}")
        if self.skip_rows is not None and self.skip_rows < 0:
            bad("skip_rows must be 0 or more")
        if self.max_cell_bytes < 1:
            bad("max_cell_bytes must be positive")
        if self.comment is not None and len(self.comment) > 8:
            bad(f"comment {self.comment!r}: give the characters a comment line starts with, such as #")
        for name in ("encoding", "decode_fallback"):
            value = getattr(self, name)
            if value:
                import codecs

                try:
                    codecs.lookup(value)
                except LookupError:
                    bad(f"{name} {value!r} is not a known encoding (for example utf-8, cp1252, latin-1)")
        object.__setattr__(self, "null_values", tuple(self.null_values))
        # tuples keep the dataclass hashable when built from lists (yaml, dagster config)
        object.__setattr__(self, "duplicate_keys", tuple(self.duplicate_keys))
        object.__setattr__(self, "auto_advance", tuple(self.auto_advance))
        from pipelines.imports.validation import check_auto_advance

        check_auto_advance(self.auto_advance)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict, as stored in import_history.options."""
        out = dataclasses.asdict(self)
        out["duplicate_keys"] = list(self.duplicate_keys)
        out["auto_advance"] = [dict(r) for r in self.auto_advance]
        out["null_values"] = list(self.null_values)
        return out


def load_mapping(path_or_text: str | Path | dict) -> dict:
    """Parse and validate a YAML mapping (a path, YAML text, or an already parsed dict).

    Raises:
        MappingError: the YAML is unreadable or names an unknown target field or transform.
    """
    from pipelines.imports.mapping import parse_mapping

    return parse_mapping(path_or_text)
