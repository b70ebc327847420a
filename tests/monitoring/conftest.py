"""The API server fixtures of tests/api, for the monitoring endpoints."""

from tests.api.conftest import api_instance, api_servers, base_url  # noqa: F401
