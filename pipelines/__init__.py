"""The Dagster graph: one subpackage per capability, assembled by `pipelines.definitions`."""
