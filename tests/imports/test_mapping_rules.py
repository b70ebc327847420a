"""Mapping: YAML validation, transforms, value maps, dates with zones, full names, extras."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.imports.errors import MappingError
from pipelines.imports.mapping import apply_mapping, bind_mapping, parse_mapping


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        pytest.param({"columns": {"Email": "emial"}}, "unknown target field 'emial'", id="unknown-target"),
        pytest.param(
            {"columns": {"Email": {"target": "email", "transforms": ["shout"]}}},
            "unknown transform",
            id="bad-transform",
        ),
        pytest.param(
            {"columns": {"When": {"target": "applied_at", "timezone": "Mars/Base"}}}, "unknown time zone", id="bad-zone"
        ),
        pytest.param("columns: [", "not valid YAML", id="bad-yaml"),
    ],
)
def test_invalid_mappings_name_the_problem(mapping, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(mapping)


def test_missing_source_column_lists_file_columns() -> None:
    with pytest.raises(MappingError, match=r"'Mail'.*file columns: 'Email'"):
        bind_mapping({"columns": {"Mail": "email"}}, ["Email"], "applications")


def test_transforms_maps_dates_and_names() -> None:
    mapping = parse_mapping(
        """
columns:
  Name: full_name
  Mail: {target: email, transforms: [lower]}
  Stage: {target: stage, map: {"In Review": review}}
  When: {target: applied_at, format: "%d/%m/%Y %H:%M", timezone: Europe/London}
  Notes: data.notes
defaults: {source: fair}
"""
    )
    table = pa.table(
        {
            "Name": ["Guido van Rossum", " Ada "],
            "Mail": ["A@X.ORG", "b@x.org"],
            "Stage": ["in review", "Offer"],
            "When": ["01/07/2026 10:00", "32/01/2026 10:00"],
            "Notes": ["n", ""],
            "Extra": ["kept", None],
        }
    )
    m = bind_mapping(mapping, table.column_names, "applications")
    out = apply_mapping(m, table)
    assert out.fields["first_name"].to_pylist() == ["Guido", "Ada"]
    assert out.fields["last_name"].to_pylist() == ["van Rossum", None]
    assert out.fields["email"].to_pylist() == ["a@x.org", "b@x.org"]
    assert out.fields["stage"].to_pylist() == ["review", "Offer"]
    assert out.fields["applied_at"][0].as_py().isoformat() == "2026-07-01T09:00:00+00:00"
    assert out.fields["source"].to_pylist() == ["fair", "fair"]
    assert [(i, c) for i, c, _ in out.errors] == [(1, "When")]
    assert {k: v.to_pylist() for k, v in out.data} == {"notes": ["n", None], "extra": ["kept", None]}


def test_automatic_mapping_by_normalised_headers() -> None:
    m = bind_mapping(None, ["E-Mail", "Full Name", "Applied On", "Favourite Colour"], "applications")
    assert {r.source: r.target for r in m.rules} == {
        "E-Mail": "email",
        "Full Name": "full_name",
        "Applied On": "applied_at",
    }
    assert m.extras == [("Favourite Colour", "favourite_colour")]


def test_a_new_registry_entity_is_mapped_and_staged_with_no_other_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.store import registry, schema
    from pipelines.imports.validation import prepare

    notes = registry.Entity(
        name="notes",
        table=schema.jobs,
        fields={"code": registry.FieldSpec(registry.TEXT, 20), "kind": registry.FieldSpec(registry.TEXT, 20)},
        required=("code",),
        synonyms={"note_id": "code"},
        match_keys=("code",),
        prefixes=("data",),
        operations=(),
        field_update_fields=(),
        value_sets={"kind": ("memo", "call")},
        value_synonyms={"kind": {"phone_call": "call"}},
        unique_keys=("code",),
    )
    monkeypatch.setitem(registry.ENTITIES, "notes", notes)
    table = pa.table({"Note ID": ["N-1", "N-2", "N-3"], "Kind": ["Memo", "Phone Call", "fax"], "Body": ["a", "b", "c"]})
    m = bind_mapping(None, table.column_names, "notes")
    assert (m.how, m.extras) == ({"Note ID": "synonym", "Kind": "name"}, [("Body", "body")])
    prep = prepare("notes", apply_mapping(m, table), 3)
    assert prep.table.column_names[:3] == ["rnd", "code", "kind"]
    assert prep.table.column("kind").to_pylist() == ["memo", "call", None]
    assert [(i, c) for i, c, _ in prep.errors] == [(2, "kind")]
