"""Connection files: a file that does not fit fails at load naming the file, the line and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.syncs.config import SyncConfigError, check_cron, load_connection, load_folder

GOOD = """\
account: demo
entity: applications
source:
  type: sql
  url: {env: HR_DB_URL}
  table: hr_applications
  key: id
  cursor: updated_at
key_field: external_id
mapping:
  columns: {id: external_id, email: email}
schedule: "*/15 * * * *"
"""


def _file(tmp_path: Path, text: str, name: str = "hr.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_a_good_file_loads_with_its_secret_by_name_only(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HR_DB_URL", "postgresql://u:hunter2@db/hr")
    c = load_connection(_file(tmp_path, GOOD))
    assert (c.name, c.entity, c.direction, c.conflict, c.delete) == (
        "hr",
        "applications",
        "in",
        "source_wins",
        "ignore",
    )
    assert "hunter2" not in repr(c) and "hunter2" not in str(c.shown_source())
    assert c.shown_source()["url"] == "${HR_DB_URL}"
    assert c.resolved_source()["url"] == "postgresql://u:hunter2@db/hr"


@pytest.mark.parametrize(
    ("change", "line", "problem"),
    [
        (('schedule: "*/15 * * * *"', 'schedule: "*/15 * * *"'), 12, "has 4 fields, not 5"),
        (('schedule: "*/15 * * * *"', 'schedule: "61 * * * *"'), 12, "minute 61 is outside 0-59"),
        (("key_field: external_id", "key_feild: external_id"), 9, "unknown field 'key_feild'"),
        (("  cursor: updated_at", "  cursr: updated_at"), 8, "unknown field 'cursr' of a sql source"),
        (("url: {env: HR_DB_URL}", "url: {env: NOT_SET_ANYWHERE}"), 5, "NOT_SET_ANYWHERE is not set"),
        (("entity: applications", "entity: aplications"), 2, "entity 'aplications' is not one of"),
        (("email: email}", "email: emial}"), 11, "unknown target field 'emial'"),
        (("key_field: external_id", "conflict: {fields: {stage: newest}}"), 9, "one of source_wins, target_wins"),
        (("key_field: external_id", "conflict:\n  fields: {email: manual}"), 10, "the connection's strategy decides"),
    ],
)
def test_a_bad_file_fails_with_file_line_and_problem(tmp_path, monkeypatch, change, line, problem) -> None:
    monkeypatch.setenv("HR_DB_URL", "sqlite://")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = _file(tmp_path, GOOD.replace(*change))
    with pytest.raises(SyncConfigError) as err:
        load_connection(path)
    assert str(err.value).startswith(f"{path}, line {line}: ")
    assert problem in str(err.value)


def test_cron_expressions() -> None:
    assert check_cron("0 3 * * mon-fri") is None
    assert check_cron("@daily") is None
    assert "outside" in check_cron("0 25 * * *")


def test_a_folder_refuses_two_connections_of_one_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HR_DB_URL", "sqlite://")
    _file(tmp_path, GOOD, "a.yaml")
    _file(tmp_path, "name: a\n" + GOOD, "b.yaml")
    with pytest.raises(SyncConfigError, match="already used"):
        load_folder(tmp_path)
