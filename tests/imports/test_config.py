"""One declaration of an import's options: the Launchpad config, `bulkops import`'s flags and the engine's options agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import dagster as dg
import pytest

from pipelines.cli import ImportOption, import_config
from pipelines.cli import import_file as import_command
from pipelines.imports.assets import ImportConfig, config_for
from pipelines.imports.errors import ImportFailed
from pipelines.imports.options import ImportFields, ImportOptions, choices, load_mapping


def command_params() -> list[click.Parameter]:
    return import_command.get_params(click.Context(import_command))


def cli_config(path: Path, *args: str) -> ImportConfig:
    """The config `bulkops import PATH ARGS` launches, from the command's own parsing."""
    ctx = import_command.make_context("import", [str(path), *args])
    params = dict(ctx.params)
    return import_config(params.pop("path"), params, import_command.get_params(ctx))


def launchpad_config(config: dict[str, Any]) -> ImportConfig:
    """The config a run gets from what a user types in the Launchpad, as Dagster validates and fills it in."""
    from pipelines.definitions import defs

    job = defs.resolve_job_def("import_job")
    processed = dg.validate_run_config(job, {"ops": {"imported_file": {"config": config}}})
    return ImportConfig(**processed["ops"]["imported_file"]["config"])


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("Email\na@example.com\n")
    return path


def test_every_config_field_is_a_flag_of_bulkops_import_with_its_description_as_help() -> None:
    options = {p.name: p for p in command_params() if isinstance(p, ImportOption)}
    [argument] = [p for p in command_params() if isinstance(p, click.Argument)]

    assert argument.name == "path"
    assert set(options) == set(ImportConfig.model_fields) - {"path"}
    for name, option in options.items():
        assert option.help.startswith(ImportConfig.model_fields[name].description), name


def test_flag_choices_are_the_ones_the_options_accept() -> None:
    options = {p.name: p for p in command_params() if isinstance(p, ImportOption)}

    assert options["on_duplicate"].type.choices == ("skip", "update", "create", "flag")
    assert options["error_policy"].type.choices == ("skip", "abort", "threshold")
    assert options["file_format"].type.choices == ("csv", "parquet", "xlsx")
    assert options["entity"].type.choices == ("applications", "candidates", "jobs", "contracts")
    for name in ("on_duplicate", "error_policy", "file_format", "entity"):
        assert tuple(options[name].type.choices) == choices(name)


def test_the_flags_keep_their_names() -> None:
    # scripts call these: a rename breaks them
    flags = {flag for p in command_params() for flag in getattr(p, "opts", [])}
    assert {
        "--entity",
        "--account",
        "--mapping",
        "--on-duplicate",
        "--duplicate-keys",
        "--default-stage",
        "--error-policy",
        "--error-threshold",
        "--batch-size",
        "--no-create-missing-jobs",
        "--case-sensitive-keys",
        "--encoding",
        "--delimiter",
        "--format",
        "--decode-errors",
        "--skip-rows",
        "--comment",
        "--sheet",
        "--null-values",
        "--max-cell-kib",
        "--force",
        "--dry-run",
        "--allow-update-without-key",
        "--submit",
        "--no-wait",
        "--timeout",
        "--fail-on-rejected",
    } <= flags


def test_without_flags_the_cli_launches_the_model_defaults(
    csv: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("USER", "ann")
    monkeypatch.setenv("BULKOPS_ACCOUNT", "acme")

    config = cli_config(csv)

    assert (config.path, config.entity, config.account, config.actor) == (
        str(csv.resolve()),
        "applications",
        "acme",
        "cli:ann",
    )
    assert config.options() == ImportOptions(entity="applications", actor="cli:ann")
    assert config.options() == launchpad_config({"entity": "applications", "actor": "cli:ann"}).options()


def test_cli_flags_and_the_same_launchpad_config_give_the_engine_the_same_options(
    csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BULKOPS_ACCOUNT", "acme")
    mapping = tmp_path / "people.yaml"
    mapping.write_text("columns:\n  Email: email\n")
    rule = {"when": {"field": "source", "op": "==", "value": "referral"}, "stage": "screening"}

    from_cli = cli_config(
        csv,
        *("--entity", "candidates", "--mapping", str(mapping), "--on-duplicate", "skip"),
        *(
            "--duplicate-keys",
            "email",
            "--auto-advance",
            '{"when": {"field": "source", "op": "==", "value": "referral"}, "stage": "screening"}',
        ),
        *("--error-policy", "threshold", "--error-threshold", "0.25", "--batch-size", "7"),
        *("--no-create-missing-jobs", "--case-sensitive-keys", "--encoding", "cp1252", "--delimiter", ";"),
        *("--format", "csv", "--decode-errors", "latin-1", "--skip-rows", "2", "--comment", "#"),
        *("--null-values", "?,n.a.", "--max-cell-kib", "64", "--force", "--dry-run"),
        *("--allow-update-without-key", "--form-name", "intake", "--actor", "ann"),
        *("--default-stage", "new", "--sheet", "People", "--shards", "2"),
    )
    from_launchpad = launchpad_config(
        {
            "path": str(csv.resolve()),
            "entity": "candidates",
            "mapping_path": str(mapping.resolve()),
            "on_duplicate": "skip",
            "duplicate_keys": ["email"],
            "auto_advance": [rule],
            "error_policy": "threshold",
            "error_threshold": 0.25,
            "batch_size": 7,
            "create_missing_jobs": False,
            "case_sensitive_keys": True,
            "encoding": "cp1252",
            "delimiter": ";",
            "file_format": "csv",
            "decode_fallback": "latin-1",
            "skip_rows": 2,
            "comment": "#",
            "null_values": ["", "?", "n.a."],
            "max_cell_bytes": 64 * 1024,
            "force": True,
            "dry_run": True,
            "allow_update_without_key": True,
            "form_name": "intake",
            "actor": "ann",
            "default_stage": "new",
            "sheet": "People",
            "shards": 2,
        }
    )

    assert from_cli == from_launchpad
    options = from_cli.options()
    assert options == from_launchpad.options()
    # every option differs from its default, so no flag was silently dropped on the way
    defaults = ImportOptions()
    assert [n for n in ImportFields.model_fields if getattr(options, n) == getattr(defaults, n)] == []
    assert options.mapping == load_mapping(mapping)


def test_the_run_config_the_cli_submits_round_trips_to_the_same_config(csv: Path) -> None:
    config = cli_config(csv, "--entity", "jobs", "--duplicate-keys", "external_id", "--null-values", "")

    submitted = config_for(csv.resolve(), "jobs", config.account, config).model_dump()

    assert launchpad_config(submitted) == config
    assert launchpad_config(submitted).options().null_values == [""]


def test_invalid_options_are_refused_by_the_cli_before_a_run_is_made(
    csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from pipelines.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))

    out = CliRunner().invoke(main, ["import", str(csv), "--encoding", "klingon"])

    assert out.exit_code == 1, out.output
    assert (
        out.stderr == "error: invalid import options: encoding 'klingon' is not a known encoding "
        "(for example utf-8, cp1252, latin-1)\n"
    )
    assert not (tmp_path / "dagster").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"entity": "planets"}, "entity 'planets' is not one of applications, candidates", id="entity"),
        pytest.param({"duplicate_keys": []}, r"duplicate_keys \(\) must be a non-empty subset", id="no-keys"),
        pytest.param({"duplicate_keys": ["phone"]}, r"duplicate_keys \('phone',\) must be", id="bad-key"),
        pytest.param({"on_duplicate": "merge"}, "on_duplicate 'merge' is not one of skip, update", id="on-duplicate"),
        pytest.param({"error_policy": "retry"}, "error_policy 'retry' is not one of skip", id="error-policy"),
        pytest.param({"error_threshold": 1.5}, "error_threshold must be between 0 and 1", id="threshold"),
        pytest.param({"batch_size": 0}, "batch_size must be positive", id="batch-size"),
        pytest.param({"file_format": "xls"}, "file_format 'xls' is not one of csv, parquet, xlsx", id="format"),
        pytest.param({"skip_rows": -1}, "skip_rows must be 0 or more", id="skip-rows"),
        pytest.param({"max_cell_bytes": 0}, "max_cell_bytes must be positive", id="max-cell"),
        pytest.param({"comment": "#########"}, "comment '#########': give the characters", id="comment"),
        pytest.param({"decode_fallback": "nope"}, "decode_fallback 'nope' is not a known encoding", id="fallback"),
    ],
)
def test_invalid_engine_options_raise_import_failed_naming_the_option(values: dict, message: str) -> None:
    with pytest.raises(ImportFailed, match=f"^invalid import options: {message}"):
        ImportOptions(**values)


def test_a_launch_config_is_not_checked_until_the_run_builds_the_engine_options() -> None:
    # the run fails with the message (and the dropped file moves to failed/), the sensor tick does not
    config = ImportConfig(batch_size=0)

    with pytest.raises(ImportFailed, match="batch_size must be positive"):
        config.options()


def test_the_engine_options_are_the_declared_fields_plus_the_parsed_mapping() -> None:
    assert set(ImportOptions.model_fields) - set(ImportFields.model_fields) == {"mapping"}
    assert set(ImportFields.model_fields) <= set(ImportConfig.model_fields)
    assert all(info.description for info in ImportConfig.model_fields.values())
    assert ImportOptions().entity == "applications"
    assert ImportOptions(entity=None).to_json()["entity"] == "applications"
