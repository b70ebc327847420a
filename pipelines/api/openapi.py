"""The published OpenAPI schema: docs/openapi.json is generated from the app and checked by a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from pipelines.api import models

DOCS_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def schema_app() -> FastAPI:
    """The app without starting it: the store opens on startup, so no database is touched."""
    from pipelines.api.app import create_app

    return create_app("sqlite://")


def render() -> str:
    schema: dict[str, Any] = models.openapi_schema(schema_app())
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_openapi(path: str | Path = DOCS_PATH) -> Path:
    """Write the schema to `path` (docs/openapi.json by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render())
    return path
