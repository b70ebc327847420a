"""The bulk-job HTTP API: FastAPI app, bearer tokens, wire format."""
