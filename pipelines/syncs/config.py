"""Sync connections declared in YAML, one file per connection in a `syncs/` folder.

    name: hr_applications          # optional: the file's name without .yaml
    account: demo
    entity: applications
    direction: in                  # in | out | two_way
    source:
      type: sql                    # sql | files | http (or greenhouse / lever, configurations of http)
      url: {env: HR_DB_URL}        # secrets come from the environment, never from the file
      table: applications
      key: id                      # the source's key column
      cursor: updated_at           # the incremental cursor column
    target: store
    key_field: external_id         # the record field the source key maps to (duplicate matching)
    mapping: {columns: {id: external_id, email: email, ...}}   # the importer's mapping format
    conflict: source_wins          # source_wins | target_wins | newest_wins | merge_non_empty | manual
    delete: ignore                 # ignore | soft_delete | mirror
    schedule: "*/15 * * * *"
    batch_size: 10000

A file that does not fit fails at load with the file, the line and the problem (`SyncConfigError`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from connectors.store import registry, schema
from pipelines.imports.errors import MappingError

DIRECTIONS = ("in", "out", "two_way")
CONFLICTS = ("source_wins", "target_wins", "newest_wins", "merge_non_empty", "manual")
DELETES = ("ignore", "soft_delete", "mirror")
# strategies that can decide one field of a record: all of them
FIELD_CONFLICTS = CONFLICTS
# the directions each source type syncs
WRITABLE = {"sql": DIRECTIONS, "files": ("in", "out"), "http": DIRECTIONS}
SOURCE_TYPES = ("sql", "files", "http", "greenhouse", "lever")
TOP_LEVEL = {
    "name": "the connection's name (default: the file's name)",
    "description": "what the connection is for",
    "account": "the account whose records it syncs",
    "entity": "the record entity",
    "direction": "in, out or two_way",
    "source": "the external system",
    "target": "store",
    "key_field": "the record field matching the source's key",
    "mapping": "the field mapping (the importer's format)",
    "conflict": "the conflict strategy",
    "delete": "delete handling",
    "schedule": "a cron expression",
    "batch_size": "rows per committed batch",
    "timezone": "the schedule's time zone",
}
SOURCE_KEYS = {
    "sql": {"type", "url", "table", "key", "cursor"},
    "files": {"type", "path", "key", "format"},
    "http": {
        "type",
        "url",
        "token",
        "username",
        "password",
        "pagination",
        "records",
        "key",
        "cursor",
        "params",
        "fields",
        "explode",
        "since_param",
        "write",
    },
    "greenhouse": {"type", "token", "resource", "base_url"},
    "lever": {"type", "token", "resource", "base_url"},
}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
CRON_NAMES = {
    3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}


class SyncConfigError(ValueError):
    """A connection file that cannot be used: the message names the file, the line and the problem."""


@dataclass(frozen=True)
class Secret:
    """A value read from the environment variable `env` when the sync runs; shown as its name."""

    env: str

    def value(self) -> str:
        value = dg.EnvVar(self.env).get_value()
        if value is None:
            raise SyncConfigError(f"the environment variable {self.env} is not set")
        return value

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})"


@dataclass(frozen=True)
class Connection:
    name: str
    path: str
    account: str
    entity: str
    direction: str
    source: dict[str, Any]
    key_field: str
    mapping: dict[str, Any] | None
    conflict: str
    delete: str
    schedule: str | None
    batch_size: int
    description: str = ""
    timezone: str = "UTC"
    # per field, where it makes sense: a strategy that decides field by field
    field_conflicts: dict[str, str] = field(default_factory=dict)

    def strategy_of(self, field_name: str) -> str:
        """The conflict strategy deciding FIELD_NAME: its own, else the connection's."""
        return self.field_conflicts.get(field_name, self.conflict)

    def secrets(self) -> list[Secret]:
        return [v for v in self.source.values() if isinstance(v, Secret)]

    def resolved_source(self) -> dict[str, Any]:
        """The source's settings with secrets read from the environment (never log this)."""
        return {k: v.value() if isinstance(v, Secret) else v for k, v in self.source.items()}

    def shown_source(self) -> dict[str, Any]:
        """The source's settings for logs and metadata: secrets by their variable's name."""
        return {k: f"${{{v.env}}}" if isinstance(v, Secret) else v for k, v in self.source.items()}


def check_cron(expr: str) -> str | None:
    """None when EXPR is a 5-field cron expression (or @hourly/@daily/@weekly/@monthly), else why not."""
    if expr.strip() in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly"):
        return None
    parts = expr.split()
    if len(parts) != 5:
        return f"cron expression {expr!r} has {len(parts)} fields, not 5 (minute hour day-of-month month day-of-week)"
    for i, (part, (what, low, high)) in enumerate(zip(parts, CRON_FIELDS, strict=True)):
        for item in part.split(","):
            body, _, step = item.partition("/")
            if step and not step.isdigit():
                return f"cron {what} {part!r}: step {step!r} is not a number"
            if body == "*":
                continue
            ends = body.split("-")
            if len(ends) > 2:
                return f"cron {what} {part!r} is not a value, a range or a list"
            for end in ends:
                names = CRON_NAMES.get(i, [])
                number = names.index(end.lower()) + (1 if i == 3 else 0) if end.lower() in names else None
                if number is None:
                    if not end.isdigit():
                        return f"cron {what} {end!r} is not a number"
                    number = int(end)
                if not low <= number <= high:
                    return f"cron {what} {number} is outside {low}-{high}"
    return None


def _lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """The 1-based line of each key path in a composed YAML document."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out[sub] = key.start_mark.line + 1
            out.update({p: n for p, n in _lines(value, sub).items() if p != sub})
    return out


def _secret_or_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"env"}:
        return Secret(str(value["env"]))
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value.strip())
        if m:
            return Secret(m.group(1))
    return value


def load_connection(path: str | Path, *, check_env: bool = True) -> Connection:
    """Read and check one connection file.

    Raises:
        SyncConfigError: `<file>, line N: <problem>` for an unknown field, a bad value or cron
            expression, a mapping that does not fit, or a secret whose environment variable is unset.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise SyncConfigError(f"{p}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict) or node is None:
        raise SyncConfigError(f"{p}, line 1: a connection is a YAML mapping of settings")
    lines = _lines(node)

    def fail(where: tuple, problem: str) -> SyncConfigError:
        line = lines.get(where) or lines.get(where[:1]) or 1
        return SyncConfigError(f"{p}, line {line}: {problem}")

    for k in raw:
        if k not in TOP_LEVEL:
            raise fail((k,), f"unknown field {k!r}: one of {', '.join(TOP_LEVEL)}")
    name = str(raw.get("name") or p.stem)
    if not NAME_RE.match(name):
        raise fail(("name",), f"name {name!r}: lower-case letters, digits and _, starting with a letter")
    for required in ("account", "entity", "source"):
        if required not in raw:
            raise fail((), f"missing field {required!r} ({TOP_LEVEL[required]})")
    try:
        entity = registry.canonical(str(raw["entity"]))
    except registry.UnknownEntity:
        raise fail(("entity",), f"entity {raw['entity']!r} is not one of {', '.join(registry.ENTITY_NAMES)}") from None

    def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
        value = str(raw.get(key, default))
        if value not in allowed:
            raise fail((key,), f"{key} {value!r} is not one of {', '.join(allowed)}")
        return value

    direction = choice("direction", DIRECTIONS, "in")
    field_conflicts: dict[str, str] = {}
    if isinstance(raw.get("conflict"), dict):
        # {default: <strategy>, fields: {field: <strategy>}}
        spec = raw["conflict"]
        for k in spec:
            if k not in ("default", "fields"):
                raise fail(("conflict", k), f"unknown field {k!r} of conflict: default, fields")
        raw = {**raw, "conflict": spec.get("default", "source_wins")}
        for f, strategy in (spec.get("fields") or {}).items():
            if strategy not in FIELD_CONFLICTS:
                raise fail(("conflict", "fields", f), f"conflict of field {f!r}: one of {', '.join(FIELD_CONFLICTS)}")
            if f not in registry.get(entity).fields:
                raise fail(("conflict", "fields", f), f"conflict of field {f!r}: not a field of {entity}")
            own = [c.name for c in schema.ENTITY_TABLES[entity].c if c.name in registry.get(entity).fields]
            if f not in own or f == "external_id":
                decided = ", ".join(c for c in own if c != "external_id")
                raise fail(
                    ("conflict", "fields", f),
                    f"conflict of field {f!r}: a field of the {entity} record itself decides on its own ({decided}); "
                    "the connection's strategy decides the others",
                )
            field_conflicts[str(f)] = str(strategy)
    conflict = choice("conflict", CONFLICTS, "source_wins")
    delete = choice("delete", DELETES, "ignore")
    target = raw.get("target", "store")
    if target != "store":
        raise fail(("target",), f"target {target!r}: the record store ('store') is one side of every connection")
    source = raw["source"]
    if not isinstance(source, dict) or "type" not in source:
        raise fail(("source",), f"source needs a type: one of {', '.join(SOURCE_TYPES)}")
    kind = str(source["type"])
    if kind not in SOURCE_TYPES:
        raise fail(("source", "type"), f"source type {kind!r} is not one of {', '.join(SOURCE_TYPES)}")
    for k in source:
        if k not in SOURCE_KEYS[kind]:
            raise fail(
                ("source", k), f"unknown field {k!r} of a {kind} source: one of {', '.join(sorted(SOURCE_KEYS[kind]))}"
            )
    needs = {
        "sql": ("url", "table", "key"),
        "http": ("url", "key"),
        "files": ("path", "key"),
        "greenhouse": ("token", "resource"),
    }
    for k in needs.get(kind, ("token", "resource") if kind == "lever" else ()):
        if k not in source:
            raise fail(("source",), f"a {kind} source needs {k!r}")
    if kind in ("greenhouse", "lever"):
        from connectors.sync import ats

        try:
            preset = ats.resource(kind, str(source["resource"]))
        except KeyError as exc:
            raise fail(("source", "resource"), str(exc.args[0])) from None
        if preset.entity != entity:
            raise fail(("entity",), f"{kind} {source['resource']} are {preset.entity}, not {entity}")
        if raw.get("mapping") is None:
            raw = {**raw, "mapping": preset.mapping}
    resolved = {k: _secret_or_value(v) for k, v in source.items()}
    for k, v in resolved.items():
        if isinstance(v, Secret) and check_env and v.env not in os.environ:
            raise fail(("source", k), f"secret {k!r}: the environment variable {v.env} is not set")
    schedule = raw.get("schedule")
    if schedule is not None:
        why = check_cron(str(schedule))
        if why:
            raise fail(("schedule",), why)
    mapping = raw.get("mapping")
    if mapping is not None:
        try:
            # the mapping module (Arrow) loads when a connection has a mapping to check
            from pipelines.imports.mapping import parse_mapping

            mapping = parse_mapping({"entity": entity, **mapping} if isinstance(mapping, dict) else mapping)
        except MappingError as exc:
            # the line of the column or default the message names, else the mapping's
            where: tuple = ("mapping",)
            for quoted in re.findall(r"'([^']*)'", str(exc)):
                for part in ("columns", "defaults"):
                    if ("mapping", part, quoted) in lines:
                        where = ("mapping", part, quoted)
                        break
            raise fail(where, f"mapping: {exc}") from None
    key_field = str(raw.get("key_field", "external_id"))
    if key_field not in registry.get(entity).fields:
        raise fail(("key_field",), f"key_field {key_field!r} is not a field of {entity}")
    batch_size = raw.get("batch_size", 10_000)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise fail(("batch_size",), f"batch_size {batch_size!r} is not a positive whole number")
    allowed = WRITABLE.get(kind, ("in",))
    if direction not in allowed:
        raise fail(
            ("direction",),
            f"direction {direction!r}: a {kind} source is synced {', '.join(allowed)}"
            + (
                " (a folder's files must all have one set of columns: it is read or written, not both)"
                if kind == "files"
                else ""
            ),
        )
    if direction != "in" and kind != "sql" and mapping is None:
        raise fail(
            ("direction",), f"direction {direction!r} to a {kind} source needs a mapping: it names the columns written"
        )
    if kind == "files" and str(source.get("format", "csv")) not in ("csv", "parquet"):
        raise fail(("source", "format"), f"format {source['format']!r}: csv or parquet (what a sync out writes)")
    if kind == "http" and "write" in source:
        w = source["write"]
        if not isinstance(w, dict) or set(w) - {"method", "url", "records"}:
            raise fail(("source", "write"), "write: a mapping of method (POST, PUT, PATCH), url, records")
        if str(w.get("method", "POST")).upper() not in ("POST", "PUT", "PATCH"):
            raise fail(("source", "write", "method"), f"write method {w['method']!r}: one of POST, PUT, PATCH")
    return Connection(
        name=name,
        path=str(p),
        account=str(raw["account"]),
        entity=entity,
        direction=direction,
        source=resolved,
        key_field=key_field,
        mapping=mapping,
        conflict=conflict,
        field_conflicts=field_conflicts,
        delete=delete,
        schedule=str(schedule) if schedule is not None else None,
        batch_size=batch_size,
        description=str(raw.get("description", "")),
        timezone=str(raw.get("timezone", "UTC")),
    )


def load_folder(folder: str | Path, *, check_env: bool = True) -> list[Connection]:
    """Every `*.yaml` / `*.yml` connection of FOLDER (none when it does not exist); names are unique."""
    d = Path(folder)
    if not d.is_dir():
        return []
    out: list[Connection] = []
    seen: dict[str, str] = {}
    for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        c = load_connection(f, check_env=check_env)
        if c.name in seen:
            raise SyncConfigError(f"{f}, line 1: connection name {c.name!r} is already used by {seen[c.name]}")
        seen[c.name] = str(f)
        out.append(c)
    return out
