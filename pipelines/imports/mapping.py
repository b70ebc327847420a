"""Field mapping: a YAML mapping (source column -> target field, with transforms) or an
automatic one by normalised header names. Columns that map to nothing land in the record's
`data` (and, for applications, the form submission's answers): never silently dropped.

Mapping YAML:

    entity: applications            # optional, checked against the import's entity
    columns:
      Application ID: external_id   # short form: source column -> target field
      Email: {target: email, required: true}
      Full Name: full_name          # split into first_name / last_name
      Stage:
        target: stage
        map: {In Review: review, Phone Screen: screening}   # keys match case-insensitively
        strict: false               # true: a value outside the map rejects the row
      Applied At: {target: applied_at, format: "%Y-%m-%d %H:%M", timezone: Europe/London}
      Notes: {target: data.notes, transforms: [collapse_whitespace]}
      Internal Ref: null            # explicitly ignored
    defaults: {source: csv import}  # constant values for fields absent from the file
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from connectors.store import registry
from pipelines.imports.errors import MappingError

# per-entity knowledge comes from the registry
TEXT, DATETIME = registry.TEXT, registry.DATETIME
FIELDS: dict[str, Any] = {n: e.fields for n, e in registry.ENTITIES.items()}
REQUIRED: dict[str, tuple[str, ...]] = {n: e.required for n, e in registry.ENTITIES.items()}
PREFIXES: dict[str, tuple[str, ...]] = {n: e.prefixes for n, e in registry.ENTITIES.items()}
TRANSFORMS = ("trim", "lower", "upper", "title", "collapse_whitespace", "digits", "slug")

# automatic mapping: normalised header -> target
SYNONYMS: dict[str, Any] = {n: e.synonyms for n, e in registry.ENTITIES.items()}

ISO_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"


def normalize_header(name: str) -> str:
    """'Applied At ' -> 'applied_at'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass(frozen=True)
class FieldRule:
    source: str
    target: str | None
    transforms: tuple[str, ...] = ()
    value_map: tuple[tuple[str, str], ...] = ()
    strict: bool = False
    default: str | None = None
    required: bool = False
    formats: tuple[str, ...] = ()
    timezone: str = "UTC"


@dataclass
class Mapping:
    """A mapping bound to a file's header and an entity."""

    entity: str
    rules: list[FieldRule]
    defaults: dict[str, str] = field(default_factory=dict)
    extras: list[tuple[str, str]] = field(default_factory=list)  # (source column, data key)


def _rule(source: str, spec: Any) -> FieldRule:
    if spec is None or isinstance(spec, str):
        return FieldRule(source=source, target=spec)
    if not isinstance(spec, dict):
        raise MappingError(f"mapping for column {source!r}: expected a target name or a dict, got {spec!r}")
    unknown = set(spec) - {"target", "transforms", "map", "strict", "default", "required", "format", "formats", "timezone"}
    if unknown:
        raise MappingError(f"mapping for column {source!r}: unknown keys {sorted(unknown)}")
    transforms = spec.get("transforms") or ()
    if isinstance(transforms, str):
        transforms = (transforms,)
    for t in transforms:
        if t not in TRANSFORMS:
            raise MappingError(f"mapping for column {source!r}: unknown transform {t!r} (known: {', '.join(TRANSFORMS)})")
    vmap = spec.get("map") or {}
    if not isinstance(vmap, dict):
        raise MappingError(f"mapping for column {source!r}: map must be a dict of value -> value")
    formats = spec.get("formats") or spec.get("format") or ()
    if isinstance(formats, str):
        formats = (formats,)
    for f in formats:
        if "%" not in str(f):
            raise MappingError(f"mapping for column {source!r}: date format {f!r} has no % directives")
        try:
            pc.strptime(pa.array(["x"]), format=str(f), unit="us", error_is_null=True)
        except pa.ArrowException as exc:
            raise MappingError(f"mapping for column {source!r}: bad date format {f!r}: {exc}") from exc
    tz = str(spec.get("timezone") or "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"mapping for column {source!r}: unknown time zone {tz!r}") from exc
    default = spec.get("default")
    return FieldRule(
        source=source,
        target=spec.get("target"),
        transforms=tuple(transforms),
        value_map=tuple((str(k).strip().casefold(), "" if v is None else str(v)) for k, v in vmap.items()),
        strict=bool(spec.get("strict", False)),
        default=None if default is None else str(default),
        required=bool(spec.get("required", False)),
        formats=tuple(str(f) for f in formats),
        timezone=tz,
    )


def _target_ok(entity: str, target: str) -> bool:
    if target in FIELDS[entity]:
        return True
    prefix, _, key = target.partition(".")
    return bool(key) and prefix in PREFIXES[entity]


def parse_mapping(path_or_text: str | Path | dict) -> dict:
    """Read and validate a mapping; returns the normalised dict ({entity?, columns, defaults})."""
    if isinstance(path_or_text, dict):
        raw = path_or_text
    else:
        text = str(path_or_text)
        p = Path(text) if "\n" not in text and len(text) < 1000 else None
        if p is not None and p.suffix.lower() in (".yaml", ".yml", ".json"):
            if not p.is_file():
                raise MappingError(f"mapping file {p} does not exist")
            text = p.read_text(encoding="utf-8")
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MappingError(f"mapping is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict):
        raise MappingError("mapping must be a YAML dict with a `columns:` dict (source column -> target field)")
    unknown = set(raw) - {"entity", "columns", "defaults"}
    if unknown:
        raise MappingError(f"mapping has unknown top-level keys {sorted(unknown)}")
    entity = raw.get("entity")
    if entity is not None and entity not in FIELDS:
        raise MappingError(f"mapping entity {entity!r} is not one of {', '.join(FIELDS)}")
    rules = [_rule(str(src), spec) for src, spec in raw["columns"].items()]
    entities = [entity] if entity else list(FIELDS)
    for r in rules:
        if r.target is not None and not any(_target_ok(e, r.target) for e in entities):
            raise MappingError(f"mapping for column {r.source!r}: unknown target field {r.target!r}")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise MappingError("mapping `defaults:` must be a dict of target field -> value")
    for t in defaults:
        if not any(_target_ok(e, str(t)) for e in entities):
            raise MappingError(f"mapping default for unknown target field {t!r}")
    return {"entity": entity, "columns": dict(raw["columns"]), "defaults": {str(k): v for k, v in defaults.items()}}


def bind_mapping(mapping: dict | None, header: list[str], entity: str) -> Mapping:
    """Check a mapping against the file header (or build the automatic one).

    Raises:
        MappingError: a source column is missing, a target is unknown for the entity or mapped twice,
            or a required field has neither a column nor a default.
    """
    if mapping is None:
        synonyms = SYNONYMS[entity]
        rules: list[FieldRule] = []
        taken: set[str] = set()
        for col in header:
            target = synonyms.get(normalize_header(col))
            if target and target not in taken:
                taken.add(target)
                rules.append(FieldRule(source=col, target=target))
        defaults: dict[str, str] = {}
    else:
        parsed = parse_mapping(mapping)
        if parsed["entity"] and parsed["entity"] != entity:
            raise MappingError(f"mapping is for {parsed['entity']}, the import is for {entity}")
        rules = [_rule(str(s), spec) for s, spec in parsed["columns"].items()]
        missing = [r.source for r in rules if r.source not in header]
        if missing:
            raise MappingError(
                f"mapping names column(s) {', '.join(repr(m) for m in missing)} that the file does not have "
                f"(file columns: {', '.join(repr(h) for h in header)})"
            )
        defaults = {k: ("" if v is None else str(v)) for k, v in parsed["defaults"].items()}
    seen: dict[str, str] = {}
    for r in rules:
        if r.target is None:
            continue
        if not _target_ok(entity, r.target):
            raise MappingError(f"mapping for column {r.source!r}: {r.target!r} is not a field of {entity}")
        if r.target in seen:
            raise MappingError(f"columns {seen[r.target]!r} and {r.source!r} both map to {r.target!r}")
        seen[r.target] = r.source
        if FIELDS[entity].get(r.target, (TEXT,))[0] != DATETIME and r.formats:
            raise MappingError(f"mapping for column {r.source!r}: a date format on non-date field {r.target!r}")
    for t in defaults:
        if not _target_ok(entity, t):
            raise MappingError(f"mapping default for {t!r}: not a field of {entity}")
    targets = set(seen) | set(defaults)
    for req in REQUIRED[entity]:
        if req not in targets and not (req == "email" and False):
            raise MappingError(f"{entity}: no column maps to the required field {req!r}; map one in the mapping (columns: {', '.join(repr(h) for h in header)})")
    mapped = {r.source for r in rules}
    extras = [(col, normalize_header(col) or col) for col in header if col not in mapped]
    return Mapping(entity=entity, rules=rules, defaults=defaults, extras=extras)


@dataclass
class Mapped:
    """A batch after mapping: target columns, extra-data columns, and per-row errors."""

    fields: dict[str, pa.Array]
    data: list[tuple[str, pa.Array]]  # (key, values) for the record's data JSON
    answers: list[tuple[str, pa.Array]]
    terms: list[tuple[str, pa.Array]]
    errors: list[tuple[int, str, str]]  # (row index in batch, column, reason)


def _blank_to_null(arr: pa.Array) -> pa.Array:
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def _transform(arr: pa.Array, name: str) -> pa.Array:
    if name == "trim":
        return arr
    if name == "lower":
        return pc.utf8_lower(arr)
    if name == "upper":
        return pc.utf8_upper(arr)
    if name == "title":
        return pc.utf8_title(arr)
    if name == "collapse_whitespace":
        return pc.replace_substring_regex(arr, r"\s+", " ")
    if name == "digits":
        return pc.replace_substring_regex(arr, r"[^0-9+]", "")
    if name == "slug":
        return slug(arr)
    raise MappingError(f"unknown transform {name!r}")


def slug(arr: pa.Array) -> pa.Array:
    """'In Review' -> 'in_review'."""
    out = pc.replace_substring_regex(pc.utf8_lower(arr), r"[^0-9a-z]+", "_")
    return pc.utf8_trim(out, "_")


def parse_datetimes(arr: pa.Array, formats: tuple[str, ...], tz: str) -> pa.Array:
    """Strings -> timestamp[us, UTC]; unparseable values become null (the caller reports them)."""
    utc = pa.timestamp("us", "UTC")
    if not formats:
        ok = pc.fill_null(pc.match_substring_regex(arr, ISO_RE), False)
        iso = pc.if_else(ok, arr, pa.scalar(None, pa.string()))
        iso = pc.replace_substring_regex(iso, r"^(\d{4}-\d{2}-\d{2}) ", r"\1T")
        has_tz = pc.fill_null(pc.match_substring_regex(iso, r"(Z|[+-]\d{2}:?\d{2})$"), False)
        aware_src = pc.if_else(has_tz, iso, pa.scalar(None, pa.string()))
        naive_src = pc.if_else(has_tz, pa.scalar(None, pa.string()), iso)
        try:
            aware = pc.cast(aware_src, utc)
            naive = pc.cast(naive_src, pa.timestamp("us"))
        except pa.ArrowInvalid:
            return _parse_slow(arr, tz)
        local = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="latest")
        return pc.coalesce(aware, pc.cast(local, utc))
    out = pa.nulls(len(arr), utc)
    for fmt in formats:
        parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
        if parsed.type.tz is None:
            parsed = pc.assume_timezone(parsed, tz, ambiguous="earliest", nonexistent="latest")
        out = pc.coalesce(out, pc.cast(parsed, utc))
    return out


def _parse_slow(arr: pa.Array, tz: str) -> pa.Array:
    # rare: a value matched the iso pattern yet is no date (month 13); parse one by one
    from datetime import datetime, timezone

    zone = ZoneInfo(tz)
    out = []
    for v in arr.to_pylist():
        try:
            d = datetime.fromisoformat(v.replace("Z", "+00:00")) if v else None
        except ValueError:
            d = None
        if d is not None and d.tzinfo is None:
            d = d.replace(tzinfo=zone)
        out.append(d.astimezone(timezone.utc) if d else None)
    return pa.array(out, pa.timestamp("us", "UTC"))


def apply_mapping(m: Mapping, table: pa.Table) -> Mapped:
    """Map one batch: transforms, value maps, dates, defaults, required; errors per row."""
    n = table.num_rows
    spec = FIELDS[m.entity]
    fields: dict[str, pa.Array] = {}
    data: list[tuple[str, pa.Array]] = []
    answers: list[tuple[str, pa.Array]] = []
    terms: list[tuple[str, pa.Array]] = []
    errors: list[tuple[int, str, str]] = []

    def report(mask: pa.Array, column: str, reason_of: Any) -> None:
        idx = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
        if not idx:
            return
        vals = table.column(column).take(idx).to_pylist() if column in table.column_names else [None] * len(idx)
        for i, v in zip(idx, vals):
            errors.append((i, column, reason_of(v)))

    for r in m.rules:
        if r.target is None:
            continue
        arr = _blank_to_null(table.column(r.source).combine_chunks())
        for t in r.transforms:
            arr = _transform(arr, t)
        if r.value_map:
            keys = pa.array([k for k, _ in r.value_map], pa.string())
            vals = pa.array([v for _, v in r.value_map], pa.string())
            pos = pc.index_in(pc.utf8_lower(arr), value_set=keys)
            mapped = pc.take(vals, pos)
            if r.strict:
                report(pc.and_(pc.is_valid(arr), pc.is_null(pos)), r.source, lambda v, s=r.source: f"value {v!r} is not in the value map of {s!r}")
                arr = mapped
            else:
                arr = pc.coalesce(mapped, arr)
            arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
        if r.default is not None:
            arr = pc.coalesce(arr, pa.scalar(r.default, pa.string()))
        if r.required:
            report(pc.is_null(arr), r.source, lambda v: "required value is missing")
        kind, limit = spec.get(r.target, (TEXT, None))
        if kind == DATETIME:
            parsed = parse_datetimes(arr, r.formats, r.timezone)
            fmts = ", ".join(r.formats) or "ISO 8601"
            report(pc.and_(pc.is_valid(arr), pc.is_null(parsed)), r.source, lambda v, f=fmts: f"cannot parse {v!r} as a date/time ({f})")
            arr = parsed
        elif limit is not None:
            report(pc.greater(pc.utf8_length(arr), limit), r.source, lambda v, lim=limit: f"value is longer than {lim} characters")
        prefix, _, key = r.target.partition(".")
        if key:
            {"data": data, "answers": answers, "terms": terms}[prefix].append((key, arr))
        else:
            fields[r.target] = arr
    for target, value in m.defaults.items():
        prefix, _, key = target.partition(".")
        const = pa.array([value] * n, pa.string()) if n else pa.array([], pa.string())
        if key:
            dest = {"data": data, "answers": answers, "terms": terms}[prefix]
            if key not in {k for k, _ in dest}:
                dest.append((key, const))
        elif target in fields:
            fields[target] = pc.coalesce(fields[target], pa.scalar(value, pa.string())) if spec[target][0] != DATETIME else fields[target]
        else:
            fields[target] = parse_datetimes(const, (), "UTC") if spec[target][0] == DATETIME else const
    if "full_name" in fields:
        full = pc.replace_substring_regex(fields.pop("full_name"), r"\s+", " ")
        parts = pc.split_pattern(full, " ", max_splits=1)
        first = pc.list_element(pc.if_else(pc.is_null(parts), pa.scalar([None], pa.list_(pa.string())), parts), 0)
        rest = pc.list_slice(parts, 1, 2)
        last = pc.list_element(pc.if_else(pc.equal(pc.list_value_length(rest), 1), rest, pa.scalar([None], pa.list_(pa.string()))), 0)
        fields.setdefault("first_name", first)
        fields.setdefault("last_name", last)
    for col, key in m.extras:
        arr = _blank_to_null(table.column(col).combine_chunks())
        data.append((key, arr))
        if m.entity == "applications":
            answers.append((key, arr))
    return Mapped(fields=fields, data=data, answers=answers, terms=terms, errors=errors)
