"""Configuration in one place: every default path and URL the project uses is decided here."""

from __future__ import annotations

import os
from pathlib import Path


def var_dir() -> Path:
    """Root of local state (SQLite app DB, Dagster home, drop zones); `BULKOPS_VAR_DIR` or ./var."""
    return Path(os.environ.get("BULKOPS_VAR_DIR", "var")).resolve()


DATABASE_URL_ENV = "BULKOPS_DATABASE_URL"


def database_url() -> str:
    """The record store URL: `BULKOPS_DATABASE_URL`, else a SQLite file under var/."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{var_dir() / 'bulkops.db'}"


def dagster_home() -> Path:
    """Dagster's instance directory: `DAGSTER_HOME`, else var/dagster."""
    return Path(os.environ.get("DAGSTER_HOME") or var_dir() / "dagster").resolve()


def dropzone_dir() -> Path:
    """Root of the drop folders watched by sensors: `BULKOPS_DROPZONE`, else var/dropzone."""
    return Path(os.environ.get("BULKOPS_DROPZONE") or var_dir() / "dropzone").resolve()


def documents_dir() -> Path:
    """Where imported documents are stored by content hash: `BULKOPS_DOCUMENTS_DIR`, else var/documents."""
    return Path(os.environ.get("BULKOPS_DOCUMENTS_DIR") or var_dir() / "documents").resolve()


def syncs_dir() -> Path:
    """The sync connection files, one YAML file per connection: `BULKOPS_SYNCS_DIR`, else ./syncs."""
    return Path(os.environ.get("BULKOPS_SYNCS_DIR") or "syncs").resolve()


def exports_dir() -> Path:
    """Where exports are written when not told a folder: `BULKOPS_EXPORTS_DIR`, else var/exports."""
    return Path(os.environ.get("BULKOPS_EXPORTS_DIR") or var_dir() / "exports").resolve()


def export_presets_dir() -> Path:
    """The folder of saved export presets (YAML): `BULKOPS_EXPORT_PRESETS`, else presets/exports in the project."""
    default = Path(__file__).resolve().parents[1] / "presets" / "exports"
    return Path(os.environ.get("BULKOPS_EXPORT_PRESETS") or default).resolve()


def default_account() -> str:
    """Account slug used when a command or Dagster job is not told one: `BULKOPS_ACCOUNT`, else demo."""
    return os.environ.get("BULKOPS_ACCOUNT", "demo")


def _number(name: str, default: float, cast: type) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"${name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"${name} must not be negative, got {raw!r}")
    return value


def dropzone_settle_seconds() -> float:
    """Seconds a dropped file must stay unchanged before its sensor takes it:
    `BULKOPS_DROPZONE_SETTLE_SECONDS`, else 10."""
    return _number("BULKOPS_DROPZONE_SETTLE_SECONDS", 10.0, float)


def dropzone_max_files_per_tick() -> int:
    """Files one drop-folder sensor evaluation takes at most (the rest wait for the next tick):
    `BULKOPS_DROPZONE_MAX_FILES_PER_TICK`, else 100."""
    return max(1, int(_number("BULKOPS_DROPZONE_MAX_FILES_PER_TICK", 100, int)))


def dropzone_max_bytes_per_tick() -> int:
    """Bytes one drop-folder sensor evaluation hashes at most (one file is always taken):
    `BULKOPS_DROPZONE_MAX_BYTES_PER_TICK`, else 2 GiB."""
    return int(_number("BULKOPS_DROPZONE_MAX_BYTES_PER_TICK", 2 * 1024**3, int))


def import_files_per_run() -> int:
    """Small files a drop-folder sensor puts in one shared import run: `BULKOPS_IMPORT_FILES_PER_RUN`,
    else 50; 1 gives every file its own run."""
    return max(1, int(_number("BULKOPS_IMPORT_FILES_PER_RUN", 50, int)))


def import_shared_run_max_bytes() -> int:
    """Size above which a dropped file gets a run of its own instead of sharing one:
    `BULKOPS_IMPORT_SHARED_RUN_MAX_BYTES`, else 10 MiB."""
    return int(_number("BULKOPS_IMPORT_SHARED_RUN_MAX_BYTES", 10 * 1024**2, int))


def direct_launches() -> int:
    """Runs one process launches with `dagster job launch` at once, when no webserver queues them:
    `BULKOPS_DIRECT_LAUNCHES`, else 2. The next waits (its bulk job or export stays pending) until
    an earlier one's run worker has started: each launch starts a code server and a run worker."""
    return max(1, int(_number("BULKOPS_DIRECT_LAUNCHES", 2, int)))


def preview_ttl_hours() -> float:
    """Hours a bulk job's preview plan can be executed after it was computed:
    `BULKOPS_PREVIEW_TTL_HOURS`, else 24; 0 keeps previews forever."""
    return _number("BULKOPS_PREVIEW_TTL_HOURS", 24.0, float)


def dropzone_sensors_running() -> bool:
    """Whether the drop-folder sensors start running when the code location loads:
    `BULKOPS_DROPZONE_SENSORS=stopped` starts them stopped (a sensor's default status is part of its definition)."""
    return os.environ.get("BULKOPS_DROPZONE_SENSORS", "").strip().lower() != "stopped"


def _list(name: str) -> list[str]:
    raw = os.environ.get(name, "")
    return [part for part in (p.strip() for p in raw.replace(";", ",").replace(" ", ",").split(",")) if part]


def alert_webhook_urls() -> list[str]:
    """Where failed-run alerts are POSTed as JSON: `BULKOPS_ALERT_WEBHOOK_URLS`, comma-separated; none by default."""
    return _list("BULKOPS_ALERT_WEBHOOK_URLS")


def alert_emails() -> list[str]:
    """Who gets failed-run alerts by email (through `BULKOPS_SMTP_HOST`): `BULKOPS_ALERT_EMAILS`, comma-separated."""
    return _list("BULKOPS_ALERT_EMAILS")


def dagster_ui_url() -> str:
    """The Dagster UI that alerts link runs to: `BULKOPS_DAGSTER_UI_URL`, else http://127.0.0.1:3000."""
    return os.environ.get("BULKOPS_DAGSTER_UI_URL", "http://127.0.0.1:3000").rstrip("/")
