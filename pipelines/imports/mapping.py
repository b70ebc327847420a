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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from connectors.store import registry
from pipelines.imports.errors import MappingError

TEXT, DATETIME = registry.TEXT, registry.DATETIME
TRANSFORMS = ("trim", "lower", "upper", "title", "collapse_whitespace", "digits", "slug")

ISO_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$"

# automatic mapping refuses a file when another entity maps this many more columns (and 1.5 times as many)
FIT_MARGIN = 2


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
    how: dict[str, str] = field(default_factory=dict)  # source column -> name | synonym | mapping
    dates: dict[str, DateColumn] = field(default_factory=dict)  # date columns by source column
    fit: dict[str, int] = field(default_factory=dict)  # automatic mapping: columns mapped per entity
    # the file's batches after a row number, for settling date columns (see settle_dates)
    lookahead: Callable[[int], Iterator[Any]] | None = None


def _rule(source: str, spec: Any) -> FieldRule:
    if spec is None or isinstance(spec, str):
        return FieldRule(source=source, target=spec)
    if not isinstance(spec, dict):
        raise MappingError(f"mapping for column {source!r}: expected a target name or a dict, got {spec!r}")
    unknown = set(spec) - {
        "target",
        "transforms",
        "map",
        "strict",
        "default",
        "required",
        "format",
        "formats",
        "timezone",
    }
    if unknown:
        raise MappingError(f"mapping for column {source!r}: unknown keys {sorted(unknown)}")
    transforms = spec.get("transforms") or ()
    if isinstance(transforms, str):
        transforms = (transforms,)
    for t in transforms:
        if t not in TRANSFORMS:
            raise MappingError(
                f"mapping for column {source!r}: unknown transform {t!r} (known: {', '.join(TRANSFORMS)})"
            )
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
    e = registry.get(entity)
    if target in e.fields:
        return True
    prefix, _, key = target.partition(".")
    return bool(key) and prefix in e.prefixes


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
            raise MappingError(f"mapping is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict):
        raise MappingError("mapping must be a YAML dict with a `columns:` dict (source column -> target field)")
    unknown = set(raw) - {"entity", "columns", "defaults"}
    if unknown:
        raise MappingError(f"mapping has unknown top-level keys {sorted(unknown)}")
    entity = raw.get("entity")
    if entity is not None:
        try:
            entity = registry.canonical(str(entity))
        except registry.UnknownEntity as exc:
            raise MappingError(f"mapping entity {entity!r} is not one of {', '.join(registry.ENTITY_NAMES)}") from exc
    rules = [_rule(str(src), spec) for src, spec in raw["columns"].items()]
    entities = [entity] if entity else list(registry.ENTITIES)
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


def automatic_rules(header: list[str], entity: str) -> tuple[list[FieldRule], dict[str, str]]:
    """Rules by header name: a column maps to a field when its normalised name is the field's
    name or one of the field's declared synonyms, nothing looser. Returns (rules, how) where
    how[column] is "name" or "synonym"."""
    e = registry.get(entity)
    rules: list[FieldRule] = []
    how: dict[str, str] = {}
    taken: set[str] = set()
    for col in header:
        key = normalize_header(col)
        target = e.synonyms.get(key) or (key if key in e.fields else None)
        if target and target not in taken:
            taken.add(target)
            rules.append(FieldRule(source=col, target=target))
            how[col] = "name" if key == target else "synonym"
    return rules, how


def entity_fit(header: list[str]) -> dict[str, list[str]]:
    """Per entity, the columns automatic mapping would map for it."""
    return {name: [r.source for r in automatic_rules(header, name)[0]] for name in registry.ENTITIES}


def _check_entity_fit(header: list[str], entity: str) -> dict[str, int]:
    fit = entity_fit(header)
    asked = len(fit[entity])
    best = max((n for n in fit if n != entity), key=lambda n: len(fit[n]))
    other = len(fit[best])
    targets = {r.target for r in automatic_rules(header, best)[0]}
    if other >= asked + FIT_MARGIN and other >= 1.5 * asked and all(f in targets for f in registry.get(best).required):
        shown = ", ".join(normalize_header(c) for c in fit[best][:5]) + (", ..." if other > 5 else "")
        raise MappingError(
            f"these columns look like {best} ({shown}), not {entity}: pass --entity {best}, "
            f"or a mapping that says which column fills which {entity} field"
        )
    return {name: len(cols) for name, cols in fit.items()}


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def bind_mapping(mapping: dict | None, header: list[str], entity: str) -> Mapping:
    """Check a mapping against the file header (or build the automatic one).

    Raises:
        MappingError: a source column is missing, a target is unknown for the entity or mapped twice,
            a required field has neither a column nor a default, or (automatic mapping) the columns
            fit another entity far better than this one.
    """
    fit: dict[str, int] = {}
    if mapping is None:
        fit = _check_entity_fit(header, entity)
        rules, how = automatic_rules(header, entity)
        defaults: dict[str, str] = {}
    else:
        parsed = parse_mapping(mapping)
        if parsed["entity"] and parsed["entity"] != entity:
            raise MappingError(
                f"the mapping is for {parsed['entity']} and the import is for {entity}: pass --entity {parsed['entity']}"
            )
        rules = [_rule(str(s), spec) for s, spec in parsed["columns"].items()]
        missing = [r.source for r in rules if r.source not in header]
        if missing:
            raise MappingError(
                f"mapping names column(s) {', '.join(repr(m) for m in missing)} that the file does not have "
                f"(file columns: {', '.join(repr(h) for h in header)})"
            )
        how = {r.source: "mapping" for r in rules}
        defaults = {k: ("" if v is None else str(v)) for k, v in parsed["defaults"].items()}
    spec = registry.get(entity).fields
    seen: dict[str, str] = {}
    for r in rules:
        if r.target is None:
            continue
        if not _target_ok(entity, r.target):
            raise MappingError(f"mapping for column {r.source!r}: {r.target!r} is not a field of {entity}")
        if r.target in seen:
            raise MappingError(
                f"columns {seen[r.target]!r} and {r.source!r} both map to {r.target!r}: map one of them to another field or to null"
            )
        seen[r.target] = r.source
        if spec.get(r.target, (TEXT,))[0] != DATETIME and r.formats:
            raise MappingError(
                f"mapping for column {r.source!r}: a date format on {r.target!r}, which is not a date field"
            )
    for t in defaults:
        if not _target_ok(entity, t):
            raise MappingError(f"mapping default for {t!r}: not a field of {entity}")
    targets = set(seen) | set(defaults)
    for req in registry.get(entity).required:
        if req not in targets:
            raise MappingError(
                f"an import of {entity} needs {_article(req)} {req!r} column and none maps to it "
                f"(file columns: {', '.join(repr(h) for h in header)}): rename a column or map one to {req!r} in the mapping"
            )
    mapped = {r.source for r in rules}
    extras = [(col, normalize_header(col) or col) for col in header if col not in mapped]
    dates = {r.source: DateColumn(r.source) for r in rules if r.target and spec.get(r.target, (TEXT,))[0] == DATETIME}
    for r in rules:
        if r.source in dates and r.formats:
            dates[r.source].order = "mapping"
    return Mapping(entity=entity, rules=rules, defaults=defaults, extras=extras, how=how, dates=dates, fit=fit)


def check_identity_key(m: Mapping, *, duplicate_keys: tuple[str, ...], on_duplicate: str, allow: bool) -> None:
    """Refuse an updating import whose records would be found by a constant instead of the file.

    With on_duplicate "update", a row that matches an existing record overwrites it, so the match
    must come from the file: a column mapped to one of the entity's identity keys (its match keys
    among `duplicate_keys`, and its unique keys). When no column does and a mapping default fills
    a key, every row would match, and overwrite, the same record. (With no key at all, nothing
    matches and every row creates.)

    Raises:
        MappingError: a key only a default fills, and `allow` (allow_update_without_key) is off.
    """
    if on_duplicate != "update" or allow:
        return
    keys = registry.get(m.entity).identity_keys(duplicate_keys)
    if any(r.target in keys for r in m.rules):
        return
    constant = [k for k in keys if k in m.defaults]
    if constant:
        raise MappingError(
            f"no column of the file identifies existing {m.entity} ({' and '.join(repr(k) for k in constant)} only from the "
            "mapping's defaults), so every row would update the same record: map a key column, choose on_duplicate "
            "create or skip, or pass --allow-update-without-key"
        )


def mapping_report(m: Mapping) -> list[dict[str, str]]:
    """Per file column: the target, and how it was chosen (name, synonym, mapping, or kept as data)."""
    out = [
        {"column": r.source, "target": r.target or "(ignored)", "how": m.how.get(r.source, "mapping")} for r in m.rules
    ]
    out += [{"column": col, "target": f"data.{key}", "how": "unmapped, kept as data"} for col, key in m.extras]
    return out


# --- dates

DATE_ISO = "ISO 8601"
NN_RE = r"^(?P<a>\d{1,2})[/.-](?P<b>\d{1,2})[/.-](?P<y>\d{4})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"
NN_TIMES = ("", " %H:%M", " %H:%M:%S")
# unambiguous human formats tried after ISO 8601 (after _clean_human): label, a pre-check whose group
# d is the day of the month (strptime rolls April 31 over to May 1: the day must come back as written)
HUMAN_FORMATS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("YYYY/MM/DD", r"^\d{4}/\d{1,2}/(?P<d>\d{1,2})(?: |$)", ("%Y/%m/%d", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S")),
    (
        "Month D, YYYY",
        r"^[A-Za-z]{3,9} (?P<d>\d{1,2}),? \d{4}(?:[ ,]|$)",
        ("%B %d, %Y", "%B %d %Y", "%B %d, %Y %H:%M", "%B %d, %Y %H:%M:%S", "%B %d, %Y %I:%M %p", "%B %d, %Y, %H:%M"),
    ),
    (
        "D Month YYYY",
        r"^(?P<d>\d{1,2}) [A-Za-z]{3,9},? \d{4}(?: \d{1,2}:\d{2}(?::\d{2})?(?: [AaPp][Mm])?)?$",
        ("%d %B %Y", "%d %B, %Y", "%d %B %Y %H:%M", "%d %B %Y %H:%M:%S", "%d %B %Y %I:%M %p"),
    ),
    (
        "RFC 2822",
        r"^(?P<d>\d{1,2}) [A-Za-z]{3,9} \d{4} \d{1,2}:\d{2}(?::\d{2})? [+-]\d{4}$",
        ("%d %B %Y %H:%M:%S %z", "%d %B %Y %H:%M %z"),
    ),
)
EXCEL_RE = r"^\d{5}(\.\d+)?$"
# excel serial days counted from 1899-12-30: accepted from 1960 (21916) to 2099 (73050)
EXCEL_RANGE, EXCEL_EPOCH = (21916.0, 73050.0), 25569.0
EXCEL = "Excel serial date"


@dataclass
class DateColumn:
    """What the file says about one date column: its day/month order and the formats seen.

    The order is settled by the first possible date, in file order, whose first part (day first)
    or second part (month first) is over 12.
    """

    source: str
    order: str | None = None  # dmy | mdy | ambiguous (nothing in the file settles it) | mapping | None (undecided)
    day_first: tuple[int, str] | None = None  # first row whose first part is over 12
    month_first: tuple[int, str] | None = None
    used: set[str] = field(default_factory=set)

    def observe(self, arr: pa.Array, rows: pa.Array) -> bool:
        """Note the batch's evidence; True when it holds NN/NN/YYYY values that only an order can read."""
        parts = pc.extract_regex(pc.utf8_trim_whitespace(arr), NN_RE)
        valid = pc.is_valid(parts)
        if not pc.any(valid).as_py():
            return False
        nums = [pc.cast(pc.if_else(valid, parts.field(g), pa.scalar("0")), pa.int32()) for g in ("a", "b")]
        # only a possible date settles the order: one part 13-31, the other a month (31/31/2026 settles nothing)
        for num, other, attr in ((nums[0], nums[1], "day_first"), (nums[1], nums[0], "month_first")):
            day = pc.and_(pc.greater(num, 12), pc.less_equal(num, 31))
            month = pc.and_(pc.greater_equal(other, 1), pc.less_equal(other, 12))
            hits = pc.indices_nonzero(pc.fill_null(pc.and_(day, month), False))
            if len(hits) and getattr(self, attr) is None:
                i = hits[0].as_py()
                setattr(self, attr, (rows[i].as_py(), arr[i].as_py()))
        if self.order is None and (self.day_first or self.month_first):
            first = min((x for x in (self.day_first, self.month_first) if x), key=lambda x: x[0])
            self.order = "dmy" if first is self.day_first else "mdy"
        both_small = pc.and_(pc.less_equal(nums[0], 12), pc.less_equal(nums[1], 12))
        return bool(
            pc.any(pc.fill_null(pc.and_(valid, pc.and_(both_small, pc.not_equal(nums[0], nums[1]))), False)).as_py()
        )

    def describe(self) -> str:
        used = ", ".join(sorted(self.used)) or "no values"
        if self.order in ("dmy", "mdy"):
            row, value = self.day_first if self.order == "dmy" else self.month_first  # type: ignore[misc]
            which = "day first (DD/MM/YYYY)" if self.order == "dmy" else "month first (MM/DD/YYYY)"
            mixed = "; values in the other order were rejected" if self.day_first and self.month_first else ""
            return f"{used}; NN/NN/YYYY read {which}, settled by row {row} ({value!r}){mixed}"
        if self.order == "ambiguous":
            return f"{used}; NN/NN/YYYY values are ambiguous (no part over 12 in the file): set format: for this column in the mapping"
        return used


def _nn(src: pa.Array, order: str, tz: str) -> pa.Array:
    return _strptime_any(src, _nn_formats(order), tz, _day(src, NN_RE, "a" if order == "dmy" else "b")[1])


def _nn_formats(order: str) -> tuple[str, ...]:
    base = "%d/%m/%Y" if order == "dmy" else "%m/%d/%Y"
    return tuple(base + t for t in NN_TIMES)


def _strptime_any(arr: pa.Array, formats: tuple[str, ...], tz: str, day: pa.Array | None = None) -> pa.Array:
    """The first format that parses each value; with `day` (the day of the month as written),
    values that strptime rolled over into the next month are left null."""
    utc = pa.timestamp("us", "UTC")
    out = pa.nulls(len(arr), utc)
    for fmt in formats:
        parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
        if day is not None:
            # the day as parsed, in the value's own offset when it has one
            local = parsed
            if parsed.type.tz is not None:
                local = pc.strptime(
                    pc.replace_substring_regex(arr, r" [+-]\d{4}$", ""),
                    format=fmt.replace(" %z", ""),
                    unit="us",
                    error_is_null=True,
                )
            parsed = pc.if_else(pc.fill_null(pc.equal(pc.day(local), day), False), parsed, pa.scalar(None, parsed.type))
        if parsed.type.tz is None:
            parsed = assume_timezone(parsed, tz)
        out = pc.coalesce(out, pc.cast(parsed, utc))
    return out


# Arrow's time zone rules end with the explicit transitions of the tz database (2037): later
# wall-clock times are read with Python's zoneinfo, which follows the zone's rule for every year
ZONE_RULES_END_YEAR = 2037


def assume_timezone(naive: pa.Array, tz: str) -> pa.Array:
    """Wall-clock timestamps in `tz` -> timestamp[us, UTC]. A time that occurs twice (autumn) is the
    earlier; one that does not exist (spring gap) is the first instant after the gap."""
    out = pc.cast(pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="latest"), pa.timestamp("us", "UTC"))
    late = pc.fill_null(pc.greater(pc.year(naive), ZONE_RULES_END_YEAR), False)
    if not pc.any(late).as_py():
        return out
    zone = ZoneInfo(tz)
    fixed = [_zoned(v, zone) for v in naive.filter(late).to_pylist()]
    return pc.replace_with_mask(out, late, pa.array(fixed, pa.timestamp("us", "UTC")))


def _zoned(v: Any, zone: ZoneInfo) -> Any:
    """One wall-clock time in `zone` as UTC, by the same rules as `assume_timezone`."""
    from datetime import timedelta

    earliest = v.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earliest.astimezone(zone).replace(tzinfo=None) == v:
        return earliest
    # in a gap: fold=1 reads it with the offset before the gap, so the transition lies between the two
    lo, hi = v.replace(tzinfo=zone, fold=1).astimezone(UTC), earliest
    lo, hi = min(lo, hi), max(lo, hi)
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(microseconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def _day(arr: pa.Array, pattern: str, group: str = "d") -> tuple[pa.Array, pa.Array]:
    """(values matching `pattern`, else null; their day of the month from group `group`)."""
    parts = pc.extract_regex(arr, pattern)
    ok = pc.is_valid(parts)
    day = pc.cast(pc.if_else(ok, parts.field(group), pa.scalar(None, pa.string())), pa.int64())
    return pc.if_else(ok, arr, pa.scalar(None, pa.string())), day


def _clean_human(arr: pa.Array) -> pa.Array:
    # "Sunday, April 5th, 2026" -> "April 5, 2026"; "Sun, 05 Apr 2026 14:30:00 GMT" -> "05 Apr 2026 14:30:00 +0000"
    out = pc.replace_substring_regex(arr, r"(?i)^(mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", "")
    out = pc.replace_substring_regex(out, r"(?i)\b(\d{1,2})(st|nd|rd|th)\b", r"\1")
    out = pc.replace_substring_regex(out, r"\s+", " ")
    out = pc.replace_substring_regex(out, r"(?i) (gmt|ut|utc|z)$", " +0000")
    return pc.replace_substring_regex(out, r"(?i)\b(\w{3})\. ", r"\1 ")


def _iso(arr: pa.Array, tz: str) -> pa.Array:
    utc = pa.timestamp("us", "UTC")
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
        return _parse_slow(iso, tz)
    return pc.coalesce(aware, assume_timezone(naive, tz))


def parse_datetimes(
    arr: pa.Array, formats: tuple[str, ...], tz: str, column: DateColumn | None = None
) -> tuple[pa.Array, pa.Array]:
    """Strings -> (timestamp[us, UTC], ambiguous mask). Unparseable values become null (the caller
    reports them); the mask marks NN/NN/YYYY values of a column whose day/month order is unknown.

    With `formats`, only those. Without: ISO 8601, then the unambiguous human formats (month
    names, YYYY/MM/DD, RFC 2822), Excel serial dates, and NN/NN/YYYY in the column's order.
    """
    col = column or DateColumn("")
    no = pa.array([False] * len(arr), pa.bool_()) if len(arr) else pa.array([], pa.bool_())
    if formats:
        out = _strptime_any(arr, formats, tz)
        if pc.sum(pc.is_valid(out)).as_py():
            col.used.add(" or ".join(formats))
        return out, no
    out = _iso(arr, tz)
    if pc.sum(pc.is_valid(out)).as_py():
        col.used.add(DATE_ISO)

    def left() -> pa.Array:
        return pc.if_else(pc.is_null(out), arr, pa.scalar(None, pa.string()))

    rest = left()
    if rest.null_count == len(rest):
        return out, no
    nn = pc.fill_null(pc.match_substring_regex(rest, NN_RE), False)
    if pc.any(nn).as_py():
        src = pc.if_else(
            nn,
            pc.replace_substring_regex(pc.replace_substring_regex(rest, r"[.-]", "/"), "T", " "),
            pa.scalar(None, pa.string()),
        )
        order = col.order if col.order in ("dmy", "mdy") else None
        if order:
            got = _nn(src, order, tz)
            if pc.sum(pc.is_valid(got)).as_py():
                col.used.add("DD/MM/YYYY" if order == "dmy" else "MM/DD/YYYY")
        else:
            dmy, mdy = _nn(src, "dmy", tz), _nn(src, "mdy", tz)
            same = pc.fill_null(pc.equal(dmy, mdy), False)
            got = pc.if_else(
                same, dmy, pc.if_else(pc.is_null(mdy), dmy, pc.if_else(pc.is_null(dmy), mdy, pa.scalar(None, dmy.type)))
            )
            no = pc.fill_null(pc.and_(pc.is_valid(dmy), pc.and_(pc.is_valid(mdy), pc.invert(same))), False)
            if pc.sum(pc.is_valid(got)).as_py():
                col.used.add("NN/NN/YYYY")
        out = pc.coalesce(out, got)
        rest = pc.if_else(nn, pa.scalar(None, pa.string()), left())
    if rest.null_count == len(rest):
        return out, no
    excel = pc.fill_null(pc.match_substring_regex(rest, EXCEL_RE), False)
    if pc.any(excel).as_py():
        days = pc.cast(pc.if_else(excel, rest, pa.scalar(None, pa.string())), pa.float64())
        days = pc.if_else(
            pc.and_(pc.greater_equal(days, EXCEL_RANGE[0]), pc.less_equal(days, EXCEL_RANGE[1])),
            days,
            pa.scalar(None, pa.float64()),
        )
        # excel keeps times to the millisecond
        micros = pc.cast(
            pc.multiply(pc.round(pc.multiply(pc.subtract(days, EXCEL_EPOCH), 86_400_000.0)), 1000.0), pa.int64()
        )
        naive = pc.cast(micros, pa.timestamp("us"))
        got = assume_timezone(naive, tz)
        if pc.sum(pc.is_valid(got)).as_py():
            col.used.add(EXCEL)
        out = pc.coalesce(out, got)
        rest = left()
    if rest.null_count == len(rest):
        return out, no
    cleaned = _clean_human(rest)
    for label, pattern, fmts in HUMAN_FORMATS:
        src, day = _day(cleaned, pattern)
        if src.null_count == len(src):
            continue
        got = _strptime_any(src, fmts, tz, day)
        if pc.sum(pc.is_valid(got)).as_py():
            col.used.add(label)
            out = pc.coalesce(out, got)
            cleaned = pc.if_else(pc.is_null(out), cleaned, pa.scalar(None, pa.string()))
            if cleaned.null_count == len(cleaned):
                break
    return out, no


def _parse_slow(arr: pa.Array, tz: str) -> pa.Array:
    # rare: a value matched the iso pattern yet is no date (month 13); parse one by one
    from datetime import datetime

    zone = ZoneInfo(tz)
    out = []
    for v in arr.to_pylist():
        try:
            d = datetime.fromisoformat(v.replace("Z", "+00:00")) if v else None
        except ValueError:
            d = None
        if d is not None and d.tzinfo is None:
            d = _zoned(d, zone)
        out.append(d.astimezone(UTC) if d else None)
    return pa.array(out, pa.timestamp("us", "UTC"))


def settle_dates(m: Mapping, table: pa.Table, rows: pa.Array) -> None:
    """Decide the day/month order of the batch's date columns before the batch is used.

    A column is settled by its first value (in file order) with a part over 12. When this batch
    holds NN/NN/YYYY values that only an order can read and nothing before settled the column, the
    rest of the file is read ahead (`m.lookahead(after_row)`, streamed) until a value settles it;
    if none does, the column is ambiguous and such values are rejected. Files without NN/NN/YYYY
    values, or whose first one settles the column, are never read twice.
    """
    for d in m.dates.values():
        if d.order is not None:
            if d.order in ("dmy", "mdy"):
                d.observe(table.column(d.source).combine_chunks(), rows)  # the other order, for the report
            continue
        if not d.observe(table.column(d.source).combine_chunks(), rows) or d.order is not None:
            continue
        for raw in m.lookahead(int(rows[len(rows) - 1].as_py())) if m.lookahead is not None else ():
            d.observe(raw.table.column(d.source).combine_chunks(), raw.rows)
            if d.order is not None:
                break
        if d.order is None and m.lookahead is not None:
            d.order = "ambiguous"


def date_report(m: Mapping) -> dict[str, str]:
    """Per date column: the formats its values were read with and the day/month decision."""
    return {d.source: d.describe() for d in m.dates.values()}


@dataclass
class Mapped:
    """A batch after mapping: target columns, extra-data columns, and per-row errors."""

    fields: dict[str, pa.Array]
    data: list[tuple[str, pa.Array]]  # (key, values) for the record's data JSON
    answers: list[tuple[str, pa.Array]]
    terms: list[tuple[str, pa.Array]]
    errors: list[tuple[int, str, str]]  # (row index in batch, column, reason)
    sources: dict[str, str] = field(default_factory=dict)  # target field -> source column


def _blank_to_null(arr: pa.Array) -> pa.Array:
    arr = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


# every character Python's str.isspace() calls a space: RE2's \s is [\t\n\f\r ] (no vertical tab, no-break space...)
ANY_SPACE = r"[\s\v\p{Z}\x{1c}-\x{1f}\x{85}]+"


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
        return pc.replace_substring_regex(arr, ANY_SPACE, " ")
    if name == "digits":
        return pc.replace_substring_regex(arr, r"[^0-9+]", "")
    if name == "slug":
        return slug(arr)
    raise MappingError(f"unknown transform {name!r}")


def slug(arr: pa.Array) -> pa.Array:
    """'In Review' -> 'in_review', 'Entrevista Técnica' -> 'entrevista_tecnica' (accents dropped)."""
    letters = pc.replace_substring_regex(pc.utf8_normalize(arr, "NFKD"), r"\p{Mn}+", "")
    out = pc.replace_substring_regex(pc.utf8_lower(letters), r"[^0-9a-z]+", "_")
    return pc.utf8_trim(out, "_")


def apply_mapping(m: Mapping, table: pa.Table, rows: pa.Array | None = None) -> Mapped:
    """Map one batch: transforms, value maps, dates, defaults, required; errors per row.

    `rows`: the batch's row numbers in the file; with them, date columns settle their day/month
    order (`settle_dates`) before the batch's dates are read."""
    n = table.num_rows
    if rows is not None and m.dates:
        settle_dates(m, table, rows)
    spec = registry.get(m.entity).fields
    fields: dict[str, pa.Array] = {}
    data: list[tuple[str, pa.Array]] = []
    answers: list[tuple[str, pa.Array]] = []
    terms: list[tuple[str, pa.Array]] = []
    errors: list[tuple[int, str, str]] = []
    sources: dict[str, str] = {}

    def report(mask: pa.Array, column: str, reason_of: Any) -> None:
        idx = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
        if not idx:
            return
        vals = table.column(column).take(idx).to_pylist() if column in table.column_names else [None] * len(idx)
        for i, v in zip(idx, vals, strict=False):
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
                report(
                    pc.and_(pc.is_valid(arr), pc.is_null(pos)),
                    r.source,
                    lambda v, s=r.source: (
                        f"{v!r} is not in the map: of column {s!r}: add it there, or set strict: false"
                    ),
                )
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
            parsed, ambiguous = parse_datetimes(arr, r.formats, r.timezone, m.dates.get(r.source))
            report(
                ambiguous,
                r.source,
                lambda v, s=r.source: (
                    f"{v!r} could be day/month or month/day and no value of column {s!r} settles it: "
                    f'set format: "{"%d/%m/%Y" if ":" not in v else "%d/%m/%Y %H:%M"}" (or month first) for {s!r} in the mapping'
                ),
            )
            fmts = " or ".join(repr(f) for f in r.formats)
            bad = pc.and_(pc.is_valid(arr), pc.and_(pc.is_null(parsed), pc.invert(ambiguous)))
            report(
                bad,
                r.source,
                (lambda v, f=fmts: f"cannot read {v!r} as a date with format {f}: fix the value or the format")
                if r.formats
                else (
                    lambda v, s=r.source: (
                        f"cannot read {v!r} as a date: write it as ISO 8601 (2026-04-05 14:30), or set format: for {s!r} in the mapping"
                    )
                ),
            )
            arr = parsed
        elif limit is not None:
            report(
                pc.greater(pc.utf8_length(arr), limit),
                r.source,
                lambda v, lim=limit: f"value is longer than {lim} characters",
            )
        prefix, _, key = r.target.partition(".")
        if key:
            {"data": data, "answers": answers, "terms": terms}[prefix].append((key, arr))
        else:
            fields[r.target] = arr
            sources[r.target] = r.source
    for target, value in m.defaults.items():
        prefix, _, key = target.partition(".")
        const = pa.array([value] * n, pa.string()) if n else pa.array([], pa.string())
        if key:
            dest = {"data": data, "answers": answers, "terms": terms}[prefix]
            if key not in {k for k, _ in dest}:
                dest.append((key, const))
        elif target in fields:
            fields[target] = (
                pc.coalesce(fields[target], pa.scalar(value, pa.string()))
                if spec[target][0] != DATETIME
                else fields[target]
            )
        else:
            fields[target] = parse_datetimes(const, (), "UTC")[0] if spec[target][0] == DATETIME else const
    if "full_name" in fields:
        full = pc.replace_substring_regex(fields.pop("full_name"), r"\s+", " ")
        parts = pc.split_pattern(full, " ", max_splits=1)
        first = pc.list_element(pc.if_else(pc.is_null(parts), pa.scalar([None], pa.list_(pa.string())), parts), 0)
        rest = pc.list_slice(parts, 1, 2)
        last = pc.list_element(
            pc.if_else(pc.equal(pc.list_value_length(rest), 1), rest, pa.scalar([None], pa.list_(pa.string()))), 0
        )
        fields.setdefault("first_name", first)
        fields.setdefault("last_name", last)
    for col, key in m.extras:
        arr = _blank_to_null(table.column(col).combine_chunks())
        data.append((key, arr))
        if m.entity == "applications":
            answers.append((key, arr))
    if "full_name" in sources:
        sources.setdefault("first_name", sources["full_name"])
        sources.setdefault("last_name", sources["full_name"])
    return Mapped(fields=fields, data=data, answers=answers, terms=terms, errors=errors, sources=sources)
