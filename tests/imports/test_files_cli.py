"""The reader's options from `bulkops import` flags through the Dagster run: rows, history details, run metadata."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.store import RecordStore, schema
from pipelines.cli import main


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def home(cli_env: Path) -> Path:
    return cli_env / "var" / "dagster"


def test_reader_flags_reach_the_import_and_what_was_read_is_in_history_and_metadata(
    tmp_path: Path, home: Path, sqlite_url: str
) -> None:
    path = tmp_path / "candidates.csv"  # gzip under a .csv name
    path.write_bytes(
        gzip.compress(
            b"Export of 2026,,\nEmail,First Name,Notes\n; checked by Ann,,\n"
            + "a@example.com,Zoë,ok\n".encode()
            + b"b@example.com,Ren\xe9e,fine\n"
            + b"c@example.com,?,none\n"
        )
    )
    out = CliRunner().invoke(
        main,
        [
            "import",
            str(path),
            "--entity",
            "candidates",
            "--skip-rows",
            "1",
            "--comment",
            ";",
            "--decode-errors",
            "cp1252",
            "--null-values",
            "?",
            "--max-cell-kib",
            "64",
        ],
    )
    assert out.exit_code == 0, out.output
    store = RecordStore(sqlite_url)
    account_id = store.account_id(os.environ["BULKOPS_ACCOUNT"])
    with store.engine.connect() as c:
        users = c.execute(
            sa.select(schema.users.c.email_normalized, schema.users.c.first_name, schema.users.c.data)
            .where(schema.users.c.account_id == account_id)
            .order_by(schema.users.c.email_normalized)
        ).all()
        details = c.execute(
            sa.select(schema.import_history.c.details).where(schema.import_history.c.account_id == account_id)
        ).scalar()
    assert [tuple(u) for u in users] == [
        ("a@example.com", "Zoë", {"notes": "ok"}),
        ("b@example.com", "Renée", {"notes": "fine"}),
        ("c@example.com", None, {"notes": "none"}),
    ]
    assert details["rows_decoded_with_fallback"] == 1
    assert {"format": "csv", "compression": "gzip", "encoding": "utf-8-sig", "header_line": 2}.items() <= details[
        "file"
    ].items()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        (mat,) = [
            e.asset_materialization
            for e in instance.all_logs(run.run_id)
            if e.asset_materialization and e.asset_materialization.asset_key == dg.AssetKey("imported_file")
        ]
    assert mat.metadata["encoding"].value == "utf-8-sig" and mat.metadata["file_read"].value["compression"] == "gzip"
