"""Configuration in one place: every default path and URL the project uses is decided here."""

from __future__ import annotations

import os
from pathlib import Path


def var_dir() -> Path:
    """Root of local state (SQLite app DB, Dagster home, drop zones); `BULKOPS_VAR_DIR` or ./var."""
    return Path(os.environ.get("BULKOPS_VAR_DIR", "var")).resolve()


def database_url() -> str:
    """The record store URL: `BULKOPS_DATABASE_URL`, else a SQLite file under var/."""
    url = os.environ.get("BULKOPS_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{var_dir() / 'bulkops.db'}"


def dagster_home() -> Path:
    """Dagster's instance directory: `DAGSTER_HOME`, else var/dagster."""
    return Path(os.environ.get("DAGSTER_HOME") or var_dir() / "dagster").resolve()


def dropzone_dir() -> Path:
    """Root of the drop folders watched by sensors: `BULKOPS_DROPZONE`, else var/dropzone."""
    return Path(os.environ.get("BULKOPS_DROPZONE") or var_dir() / "dropzone").resolve()


def default_account() -> str:
    """Account slug used when a command or job is not told one: `BULKOPS_ACCOUNT`, else demo."""
    return os.environ.get("BULKOPS_ACCOUNT", "demo")
