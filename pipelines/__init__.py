"""The Dagster graph: one subpackage per capability, assembled by `pipelines.definitions`."""

# first, so that Arrow's allocator is chosen before anything imports pyarrow (`connectors/__init__.py`)
import connectors  # noqa: F401
