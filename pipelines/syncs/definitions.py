"""Scheduled syncs: one asset, job and schedule per connection file of the syncs folder."""

from pipelines.syncs.assets import load_definitions

defs = load_definitions()
