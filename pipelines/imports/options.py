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
FILE_FORMATS = ("csv", "parquet")


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
        encoding: None detects (BOM, UTF-8, else charset-normalizer).
        delimiter: None sniffs among , ; tab |.
        file_format: csv | parquet | None (by extension).
        actor: who the audit log names.
        force: import even when identical content was already imported (re-import).
        form_name: name of the form submission an application import creates.
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
    actor: str = "bulkops"
    force: bool = False
    form_name: str = "application"
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
        return out


def load_mapping(path_or_text: str | Path | dict) -> dict:
    """Parse and validate a YAML mapping (a path, YAML text, or an already parsed dict).

    Raises:
        MappingError: the YAML is unreadable or names an unknown target field or transform.
    """
    from pipelines.imports.mapping import parse_mapping

    return parse_mapping(path_or_text)
