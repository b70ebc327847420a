"""The options of an import, declared once.

`ImportFields` declares every option: its name, type, default and description. Everything else
derives from it:

- `ImportConfig` (`pipelines/imports/assets.py`) is these fields plus the file, the account and
  where the mapping comes from, as the op config of `imported_file`: the Launchpad form, what the
  drop-folder sensors and `bulkops import` launch;
- `bulkops import` (`pipelines/cli.py`) generates its flags, help, choices and defaults from the
  fields of `ImportConfig`;
- `ImportOptions` is what the engine reads: these fields plus the parsed mapping, checked when
  built (`ImportConfig.options()` builds it from a launch config).

No Dagster here: the engine and the commands that only read the history stay light.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.store import registry

ENTITY_TYPES = registry.ENTITY_NAMES
DUPLICATE_KEYS = ("external_id", "email")
ON_DUPLICATE = ("skip", "update", "create", "flag")
ERROR_POLICIES = ("skip", "abort", "threshold")
FILE_FORMATS = ("csv", "parquet", "xlsx")
DEFAULT_NULL_VALUES = ("", "NULL", "null", "Null", "N/A", "n/a", "#N/A", "NA", "-", "None", "none")


def choices(name: str) -> tuple[str, ...] | None:
    """The values an option of `ImportFields` takes (from its `Literal` type or its declared
    `choices`), or None when it takes any value of its type."""
    field = ImportFields.model_fields[name]
    args = getattr(field.annotation, "__args__", ())
    if getattr(field.annotation, "__origin__", None) is Literal:
        return tuple(args)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    found = extra.get("choices")
    return tuple(found) if found else None  # type: ignore[arg-type]


class ImportFields(BaseModel):
    """Every option of an import: the one declaration the Launchpad, the CLI and the engine read."""

    model_config = ConfigDict(frozen=True)

    entity: str | None = Field(
        default=None,
        description="The kind of records the file holds: applications, candidates, jobs or contracts. "
        "Empty: taken from the partition key (`<entity>/<file>@<sha>`), else applications.",
        json_schema_extra={"choices": ENTITY_TYPES},
    )
    on_duplicate: Literal["skip", "update", "create", "flag"] = Field(
        default="update",
        description="What a row matching an existing record does: skip, update, create anyway, or flag for review.",
    )
    duplicate_keys: list[str] = Field(
        default=list(DUPLICATE_KEYS),
        description="Fields that identify an existing record, tried in order: external_id, email "
        "(email is case- and space-folded).",
        json_schema_extra={"choices": DUPLICATE_KEYS},
    )
    default_stage: str = Field(default="applied", description="Stage of imported applications whose row names none.")
    auto_advance: list[dict[str, Any]] = Field(
        default=[],
        description='Auto-advance rules, first match wins: {"when": {"field", "op", "value"}, "stage"} moves a '
        "record whose mapped field matches to that stage.",
    )
    error_policy: Literal["skip", "abort", "threshold"] = Field(
        default="skip",
        description="Bad rows: skip them and go on, abort at the first, or abort once the share of bad rows "
        "passes the error threshold.",
    )
    error_threshold: float = Field(
        default=0.1,
        description="Share of bad rows (0..1) past which an import with error policy threshold aborts; also "
        "the limit of the error-rate asset check.",
    )
    batch_size: int = Field(
        default=5000, description="Rows per committed batch; a killed run resumes after the last one."
    )
    shards: int = Field(
        default=1,
        description="Write the file as this many shards in parallel worker processes (PostgreSQL; SQLite writes "
        "them one after another). Rows are split by a hash of the normalised email, so two shards never touch the "
        "same candidate; one import, one history row, resumed shard by shard.",
    )
    create_missing_jobs: bool = Field(
        default=True,
        description="Create a job on the fly when an application names an unknown job code; off: reject the row.",
    )
    case_sensitive_keys: bool = Field(
        default=False,
        description="Match job codes and external ids with their case (by default ENG-1 and eng-1 are one key).",
    )
    encoding: str | None = Field(
        default=None, description="Text encoding of a CSV file; empty: detected (UTF-8/BOM, UTF-16, cp1252)."
    )
    delimiter: str | None = Field(default=None, description="Field delimiter of a CSV file; empty: detected.")
    file_format: str | None = Field(
        default=None,
        description="csv, parquet or xlsx; empty: from the file's bytes (gzip, bzip2, xz or a zip of one file "
        "are opened).",
        json_schema_extra={"choices": FILE_FORMATS},
    )
    decode_fallback: str | None = Field(
        default=None,
        description="Encoding for bytes the file's encoding cannot decode (e.g. cp1252); empty: reject those rows.",
    )
    skip_rows: int | None = Field(
        default=None,
        description="Lines above the header to skip; empty: the header is found past title and comment rows.",
    )
    comment: str | None = Field(default=None, description="Skip lines starting with these characters, e.g. '#'.")
    sheet: str | None = Field(default=None, description="Workbook sheet to read; empty: the first.")
    null_values: list[str] = Field(
        default=list(DEFAULT_NULL_VALUES),
        description="Spellings of empty in columns mapped to record fields (columns kept in data keep their text).",
    )
    max_cell_bytes: int = Field(
        default=128 * 1024, description="A row with a cell longer than this many bytes (UTF-8) is rejected."
    )
    force: bool = Field(default=False, description="Import even when identical content was already imported.")
    dry_run: bool = Field(
        default=False, description="Report what would be created, updated, skipped and rejected; write nothing."
    )
    allow_update_without_key: bool = Field(
        default=False,
        description="Update existing records even though no column of the file maps to an identity key "
        "(external_id, job code, email).",
    )
    form_name: str = Field(
        default="application", description="Name of the form submission an application import creates."
    )
    actor: str = Field(default="bulkops", description="Who the audit log names for this import.")


class ImportOptions(ImportFields):
    """How one file is imported: what the engine reads.

    The fields of `ImportFields` (entity resolved: empty means applications) plus the parsed
    mapping. Building one checks it: invalid values raise `ImportFailed("invalid import options: ...")`.
    """

    mapping: dict[str, Any] | None = Field(
        default=None,
        description="The parsed field mapping (see `load_mapping`); empty: columns mapped by their names.",
    )

    @model_validator(mode="before")
    @classmethod
    def _check_choices(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items()}
        values.update(data)
        values["entity"] = values["entity"] or "applications"
        if values["entity"] not in ENTITY_TYPES:
            _bad(f"entity {values['entity']!r} is not one of {', '.join(ENTITY_TYPES)}")
        keys = tuple(values["duplicate_keys"])
        if not keys or any(k not in DUPLICATE_KEYS for k in keys):
            _bad(f"duplicate_keys {keys!r} must be a non-empty subset of {DUPLICATE_KEYS}")
        if values["on_duplicate"] not in ON_DUPLICATE:
            _bad(f"on_duplicate {values['on_duplicate']!r} is not one of {', '.join(ON_DUPLICATE)}")
        if values["error_policy"] not in ERROR_POLICIES:
            _bad(f"error_policy {values['error_policy']!r} is not one of {', '.join(ERROR_POLICIES)}")
        if values["file_format"] not in (None, *FILE_FORMATS):
            _bad(f"file_format {values['file_format']!r} is not one of {', '.join(FILE_FORMATS)}")
        return values

    @model_validator(mode="after")
    def _check_values(self) -> ImportOptions:
        if not 0 <= self.error_threshold <= 1:
            _bad("error_threshold must be between 0 and 1")
        if not 1 <= self.shards <= 16:
            _bad("shards must be between 1 and 16")
        if self.batch_size < 1:
            _bad("batch_size must be positive")
        if self.skip_rows is not None and self.skip_rows < 0:
            _bad("skip_rows must be 0 or more")
        if self.max_cell_bytes < 1:
            _bad("max_cell_bytes must be positive")
        if self.comment is not None and len(self.comment) > 8:
            _bad(f"comment {self.comment!r}: give the characters a comment line starts with, such as #")
        for name in ("encoding", "decode_fallback"):
            value = getattr(self, name)
            if value:
                try:
                    codecs.lookup(value)
                except LookupError:
                    _bad(f"{name} {value!r} is not a known encoding (for example utf-8, cp1252, latin-1)")
        from pipelines.imports.validation import check_auto_advance

        check_auto_advance(tuple(self.auto_advance))
        return self

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict, as stored in import_history.options."""
        return self.model_dump()


def _bad(message: str) -> None:
    from pipelines.imports.errors import ImportFailed

    raise ImportFailed(f"invalid import options: {message}")


def load_mapping(path_or_text: str | Path | dict) -> dict:
    """Parse and validate a YAML mapping (a path, YAML text, or an already parsed dict).

    Raises:
        MappingError: the YAML is unreadable or names an unknown target field or transform.
    """
    from pipelines.imports.mapping import parse_mapping

    return parse_mapping(path_or_text)
