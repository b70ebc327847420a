"""Hypothesis settings for the property tests: no per-example deadline (a loaded 2-core machine is
slow, not wrong), and under CI (BULKOPS_STRICT_SKIPS=1) a fixed seed per test so a run is repeatable;
a failing example is printed with the seed to reproduce it."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("BULKOPS_STRICT_SKIPS") == "1" else "dev")
