"""Pre-built connectors for two applicant tracking systems, as configurations of `HttpConnector`.

Greenhouse Harvest API (https://developers.greenhouse.io/harvest.html): `https://harvest.greenhouse.io/v1`,
HTTP basic auth with the API token as the username and an empty password, pages by the `Link`
header (`per_page` up to 500), incremental by `updated_after` (ISO 8601). Applications come
from `GET /v1/candidates`, each candidate's `applications` exploded to rows, so each row
carries its candidate's email (our applications need it).

Lever API (https://hire.lever.co/developer/documentation): `https://api.lever.co/v1`, HTTP
basic auth with the API key as the username, pages by the body's `next` token (`hasNext`)
passed back as `offset` (`limit` up to 100), incremental by `updated_at_start` (ms since the
epoch). Opportunities (a candidate for a posting) become applications; postings become jobs.

Each resource comes with its entity and a default field mapping (the importer's format),
which a connection's own `mapping:` replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.sync.http import HttpConnector


@dataclass(frozen=True)
class Resource:
    entity: str
    path: str
    fields: dict[str, str]
    mapping: dict[str, Any]
    cursor: str = "updated_at"
    explode: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


GREENHOUSE = "https://harvest.greenhouse.io/v1"
LEVER = "https://api.lever.co/v1"

GREENHOUSE_RESOURCES = {
    "candidates": Resource(
        "candidates",
        "/candidates",
        {
            "id": "id",
            "first_name": "first_name",
            "last_name": "last_name",
            "email": "email_addresses[0].value",
            "phone": "phone_numbers[0].value",
            "updated_at": "updated_at",
        },
        {
            "columns": {
                "id": "external_id",
                "first_name": "first_name",
                "last_name": "last_name",
                "email": "email",
                "phone": "phone",
                "updated_at": None,
            }
        },
    ),
    "applications": Resource(
        "applications",
        "/candidates",
        {
            "id": "id",
            "email": "parent.email_addresses[0].value",
            "first_name": "parent.first_name",
            "last_name": "parent.last_name",
            "job_code": "jobs[0].id",
            "job_title": "jobs[0].name",
            "stage": "current_stage.name",
            "status": "status",
            "applied_at": "applied_at",
            "updated_at": "parent.updated_at",
        },
        {
            "columns": {
                "id": "external_id",
                "email": "email",
                "first_name": "first_name",
                "last_name": "last_name",
                "job_code": "job_code",
                "job_title": "job_title",
                "stage": "stage",
                "status": None,
                "applied_at": "applied_at",
                "updated_at": None,
            },
            "defaults": {"source": "greenhouse"},
        },
        explode="applications",
    ),
    "jobs": Resource(
        "jobs",
        "/jobs",
        {"id": "id", "code": "requisition_id", "title": "name", "status": "status", "updated_at": "updated_at"},
        {"columns": {"id": "external_id", "code": "code", "title": "title", "status": "status", "updated_at": None}},
    ),
}

LEVER_RESOURCES = {
    "opportunities": Resource(
        "applications",
        "/opportunities",
        {
            "id": "id",
            "name": "name",
            "email": "emails[0]",
            "phone": "phones[0].value",
            "job_code": "applications[0].posting",
            "stage": "stage.text",
            "source": "sources[0]",
            "created_at": "createdAt",
            "updated_at": "updatedAt",
        },
        {
            "columns": {
                "id": "external_id",
                "name": "full_name",
                "email": "email",
                "phone": "phone",
                "job_code": "job_code",
                "stage": "stage",
                "source": "source",
                "created_at": None,
                "updated_at": None,
            }
        },
        params={"expand": ["applications", "stage"]},
    ),
    "postings": Resource(
        "jobs",
        "/postings",
        {
            "id": "id",
            "title": "text",
            "status": "state",
            "location": "categories.location",
            "updated_at": "updatedAt",
        },
        {
            "columns": {
                "id": "external_id",
                "title": "title",
                "status": "status",
                "location": "location",
                "updated_at": None,
            }
        },
        params={},
    ),
}

SYSTEMS = {"greenhouse": GREENHOUSE_RESOURCES, "lever": LEVER_RESOURCES}


def resource(system: str, name: str) -> Resource:
    found = SYSTEMS[system]
    if name not in found:
        raise KeyError(f"{system} has no resource {name!r}: one of {', '.join(found)}")
    return found[name]


def greenhouse(
    resource_name: str, token: str, *, base_url: str = GREENHOUSE, name: str = "greenhouse", **kw: Any
) -> HttpConnector:
    r = resource("greenhouse", resource_name)
    return HttpConnector(
        base_url.rstrip("/") + r.path,
        key="id",
        cursor="updated_at",
        name=name,
        username=token,
        password="",
        pagination={"style": "link", "page_size_param": "per_page", "page_size": 500},
        fields=r.fields,
        explode=r.explode,
        params=r.params,
        since_param="updated_after",
        **kw,
    )


def lever(resource_name: str, token: str, *, base_url: str = LEVER, name: str = "lever", **kw: Any) -> HttpConnector:
    r = resource("lever", resource_name)
    return HttpConnector(
        base_url.rstrip("/") + r.path,
        key="id",
        cursor="updated_at",
        name=name,
        username=token,
        password="",
        pagination={
            "style": "cursor",
            "next_field": "next",
            "has_more_field": "hasNext",
            "cursor_param": "offset",
            "page_size_param": "limit",
            "page_size": 100,
        },
        records="data",
        fields=r.fields,
        params=r.params,
        since_param="updated_at_start",
        **kw,
    )
