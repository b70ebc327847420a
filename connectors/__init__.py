"""Connectors talk to the world (files, documents, databases, HTTP) and know nothing of Dagster."""
