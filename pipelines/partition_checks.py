"""Per-partition asset checks: a file's or a document's outcome on its own partition."""

from __future__ import annotations

import warnings

import dagster as dg


def partition_check(
    name: str, *, asset: str | dg.AssetKey, partitions_def: dg.PartitionsDefinition, description: str
) -> dg.AssetCheckSpec:
    """An asset check evaluated per partition of ASSET.

    Dagster 1.13 marks partitioned checks a preview feature and warns each time the code location
    loads, which every `bulkops` command and run worker prints: the choice is made here, once, so
    the warning is silenced here (the feature's tests are in tests/imports and tests/documents).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=partitions_def, description=description)
